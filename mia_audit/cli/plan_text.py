"""What `mia-audit plan` prints: the run's work, the measured throughput, the estimate."""

from __future__ import annotations

from pathlib import Path

from mia_audit.pipeline.plan import HOSTED_RUNNER_MINUTES, RunPlan
from mia_audit.reports.text import duration_text, plural, printable


def plan_text(plan: RunPlan, policy_path: Path) -> str:
    """`mia-audit plan`: what the run will do, the measured throughput, the estimate."""
    lines = [
        f"plan for {plan.name} ({policy_path}) on {plan.device}",
        f"data: {plan.n_members} members, {plan.n_non_members} non-members, "
        f"{plan.n_population} population",
        f"attacks: {', '.join(plan.attacks)}",
        f"target: {plural(plan.target_views, 'view')} of the audit set "
        f"({plan.target_views_cached} cached); {plan.target_images} images to score",
    ]
    survey = plan.references
    if survey is not None:
        sets = ", ".join(f"{count} {mode} ({cached} cached)" for mode, count, cached in survey.sets)
        lines.append(
            f"reference models: {survey.models} ({sets}): {survey.to_train} to train "
            f"({survey.training_images} training images), {survey.cached} in the cache"
        )
    speed = plan.throughput
    measured = f"measured on {plan.device}: target inference {speed.inference:.0f} images/s"
    if speed.training is not None:
        measured += f", reference training {speed.training:.1f} images/s (one model)"
    if speed.reference_inference is not None:
        measured += f", reference inference {speed.reference_inference:.0f} images/s"
    lines.append(measured)
    lines.append("estimate:")
    width = max(len(phase.name) for phase in plan.phases)
    for phase in plan.phases:
        lines.append(f"  {phase.name:<{width}}  {duration_text(phase.seconds):>7}  {phase.detail}")
    lines.append(f"  {'total':<{width}}  {duration_text(plan.seconds):>7}")
    lines.append(f"cache: about {_size_text(plan.cache_bytes)} more in {plan.cache_dir}")
    minutes = plan.seconds / 60
    if plan.max_minutes is not None:
        verdict = "within" if minutes <= plan.max_minutes else "OVER"
        lines.append(
            f"runtime.max_minutes: {plan.max_minutes:g}; the estimate is {verdict} it"
            + ("" if minutes <= plan.max_minutes else ": `mia-audit run` will refuse (exit 2)")
        )
    if minutes > HOSTED_RUNNER_MINUTES:
        lines.append(
            f"longer than a GitHub-hosted runner's {HOSTED_RUNNER_MINUTES // 60}-hour job limit: "
            "use a GPU runner, fewer reference models or epochs, or a smaller data.max_per_side"
        )
    return "\n".join(printable(line) for line in lines)


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
