"""The GitHub Action's steps (`action.yml` runs `python -m mia_audit.cli.action`).

`python -m mia_audit.cli.action resolve` (before the audit) writes the step outputs that the
cache steps need: `cache-dir`, the policy's resolved `runtime.cache_dir` (the folder
`actions/cache` must save), and `cache-key`, a key prefix for it. Without an argument it runs
`mia-audit run` in a child process (same Python, same exit codes), then tells GitHub about the
result: the Markdown summary goes to `$GITHUB_STEP_SUMMARY`, the step outputs to
`$GITHUB_OUTPUT`, a failure becomes an error annotation, and the step exits with the audit's
exit code. On exit 2 or 3 the child's one-line error (the `error:` lines of its stderr) goes
into the summary, the annotation and the `error` output. Inputs arrive only as environment
variables that action.yml sets from its inputs, never spliced into a script:

    MIA_POLICY       the policy file (required)
    MIA_OUTPUT_DIR   where the reports go (default mia-report)
    MIA_DEVICE       auto, cpu, cuda or gpu (default: the policy's runtime.device)
    MIA_BASELINE     a previous result.json for the *_increase conditions (`--baseline`)
    MIA_FLOOR        a floor policy (docs/floor.md): the policy may only be stricter
    MIA_MAX_AUC      a gate floor: the policy must have gate.max_auc at most this
    MIA_MAX_TPR_AT_FPR  gate floors FPR:MAX (several separated by spaces, commas or lines)

Relative paths resolve against `$GITHUB_WORKSPACE` (the checkout); keep the floor file outside
what the pull request can change (e.g. a checkout of another repository at a pinned commit).
Numbers are read from the result.json this run wrote, and only when the run exited 0 or 1: a run
that exits 2 or 3 leaves older reports in place, and those must not be reported as this run's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mia_audit.errors import EXIT_GATE_FAILED, EXIT_INCOMPLETE, EXIT_INVALID, EXIT_PASS
from mia_audit.reports.text import printable
from mia_audit.result import Result, failed_conditions_text, strongest_attack, worst_attack

#: Formats the action needs besides the policy's own: numbers, step summary, the artifact.
ACTION_FORMATS = ("json", "html", "markdown")
DEFAULT_OUTPUT_DIR = "mia-report"
#: The FPR of the `tpr-at-fpr` and `max-tpr-at-fpr` outputs.
OUTPUT_FPR = "0.05"
#: Step outputs, in the order they are written (action.yml declares each).
OUTPUT_NAMES = (
    "passed",
    "exit-code",
    "result-json",
    "report-html",
    "strongest-attack",
    "auc",
    "tpr-at-fpr",
    "max-auc",
    "max-auc-attack",
    "max-tpr-at-fpr",
    "max-tpr-at-fpr-attack",
    "error",
)


@dataclass(frozen=True)
class ActionInputs:
    policy: Path
    output_dir: Path
    device: str | None
    #: The gate floor from the workflow file (`mia-audit run --floor-*`), checked by the CLI.
    floor_max_auc: str | None = None
    floor_max_tpr_at_fpr: tuple[str, ...] = ()
    baseline: Path | None = None
    #: The floor policy file (`mia-audit run --floor`).
    floor: Path | None = None


def read_inputs(env: Mapping[str, str]) -> ActionInputs:
    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    policy = env.get("MIA_POLICY", "").strip()
    if not policy:
        raise ValueError("the `policy` input is required (path to the policy YAML)")
    output_dir = env.get("MIA_OUTPUT_DIR", "").strip() or DEFAULT_OUTPUT_DIR
    device = env.get("MIA_DEVICE", "").strip() or None
    max_auc = env.get("MIA_MAX_AUC", "").strip() or None
    max_tpr = tuple(env.get("MIA_MAX_TPR_AT_FPR", "").replace(",", " ").split())
    baseline = env.get("MIA_BASELINE", "").strip()
    floor = env.get("MIA_FLOOR", "").strip()
    return ActionInputs(
        workspace / policy,
        workspace / output_dir,
        device,
        max_auc,
        max_tpr,
        workspace / baseline if baseline else None,
        workspace / floor if floor else None,
    )


def report_formats(policy: Path) -> list[str]:
    """The policy's formats plus those the action needs; the action's alone if it is invalid
    (the run then exits 2 and says why)."""
    from mia_audit.errors import MiaAuditError
    from mia_audit.policy.loading import load_policy

    try:
        own = list(load_policy(policy).policy.outputs.formats)
    except MiaAuditError:
        own = []
    return [*own, *(name for name in ACTION_FORMATS if name not in own)]


def audit_command(inputs: ActionInputs, formats: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "mia_audit", "run", str(inputs.policy)]
    command += ["--output-dir", str(inputs.output_dir)]
    for name in formats:
        command += ["--format", name]
    if inputs.device:
        command += ["--device", inputs.device]
    if inputs.baseline is not None:
        command += ["--baseline", str(inputs.baseline)]
    if inputs.floor is not None:
        command += ["--floor", str(inputs.floor)]
    if inputs.floor_max_auc:
        command += ["--floor-max-auc", inputs.floor_max_auc]
    for floor in inputs.floor_max_tpr_at_fpr:
        command += ["--floor-max-tpr-at-fpr", floor]
    return command


@dataclass(frozen=True)
class AuditRun:
    """The child's exit code and the `error:` lines it printed (its one-line errors)."""

    code: int
    errors: tuple[str, ...] = ()


def run_audit(command: Sequence[str], cwd: Path) -> AuditRun:
    """The audit's exit code and errors; a child killed by a signal counts as "could not
    complete".

    The child's output is fenced by `::stop-commands::<token>` ... `::<token>::`: the runner
    then reads none of it as a workflow command, whatever a policy or data file made it print
    (the CLI escapes names too; this holds even for a library's message). The token is fresh
    and random, and the child never sees it, so nothing it prints can end the fence early.
    Its stderr passes through line by line as it comes (progress stays live in the log); the
    `error:` lines are kept for the summary and the annotation.
    """
    token = f"mia-audit-{secrets.token_hex(16)}"
    errors: list[str] = []
    print(f"::stop-commands::{token}", flush=True)
    try:
        with subprocess.Popen(
            command, cwd=cwd, stderr=subprocess.PIPE, text=True, errors="replace"
        ) as child:
            assert child.stderr is not None
            for line in child.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                if line.startswith("error: "):
                    errors.append(line.rstrip("\n")[len("error: ") :])
        code = child.returncode
    finally:
        sys.stderr.flush()
        print(f"::{token}::", flush=True)
    return AuditRun(code if code >= 0 else EXIT_INCOMPLETE, tuple(errors))


def fresh_result(code: int, out_dir: Path) -> Result | None:
    """This run's result, or None when it wrote none (exit 2 or 3 leaves older files alone)."""
    path = out_dir / "result.json"
    if code not in (EXIT_PASS, EXIT_GATE_FAILED) or not path.is_file():
        return None
    return Result.model_validate_json(path.read_bytes())


def step_outputs(
    code: int, out_dir: Path, result: Result | None, errors: Sequence[str] = ()
) -> dict[str, str]:
    """The step's outputs: empty strings where this run produced no value.

    `auc` and `tpr-at-fpr` are the strongest attack's (highest TPR at 5 % FPR); `max-auc` and
    `max-tpr-at-fpr` the worst figure over all attacks, with the attack that reached it: the
    figures for a dashboard, which the strongest attack's AUC may understate.
    """
    outputs = dict.fromkeys(OUTPUT_NAMES, "")
    outputs |= {"passed": str(code == EXIT_PASS).lower(), "exit-code": str(code)}
    if result is None:
        outputs["error"] = errors[0] if errors else ""
        return outputs
    outputs["result-json"] = str(out_dir / "result.json")
    if (out_dir / "report.html").is_file():
        outputs["report-html"] = str(out_dir / "report.html")
    if result.attacks:
        best = strongest_attack(result)
        tpr = best.tpr_at_fpr.get(OUTPUT_FPR)
        outputs |= {"strongest-attack": best.id, "auc": f"{best.auc:.6g}"}
        outputs["tpr-at-fpr"] = "" if tpr is None else f"{tpr:.6g}"
        top_auc = worst_attack(result, "auc")
        top_tpr = worst_attack(result, "tpr_at_fpr", OUTPUT_FPR)
        if top_auc is not None:
            outputs |= {"max-auc": f"{top_auc.auc:.6g}", "max-auc-attack": top_auc.id}
        if top_tpr is not None:
            outputs["max-tpr-at-fpr"] = f"{top_tpr.tpr_at_fpr[OUTPUT_FPR]:.6g}"
            outputs["max-tpr-at-fpr-attack"] = top_tpr.id
    return outputs


def output_lines(outputs: Mapping[str, str]) -> str:
    """`$GITHUB_OUTPUT` syntax: name=value, or a heredoc when the value spans lines."""
    lines = []
    for name, value in outputs.items():
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
            lines += [f"{name}<<{delimiter}", value, delimiter]
        else:
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def summary_markdown(code: int, out_dir: Path, errors: Sequence[str] = ()) -> str:
    """summary.md of this run, or what went wrong when the run wrote no report."""
    summary = out_dir / "summary.md"
    if code in (EXIT_PASS, EXIT_GATE_FAILED) and summary.is_file():
        return summary.read_text(encoding="utf-8")
    from mia_audit.reports.markdown_report import EXIT_MEANINGS, escape

    meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
    lines = [f"## mia-audit: ERROR\n\n**Exit code {code}** ({meaning}). No report was written."]
    if errors:
        lines.append("")
        lines += [f"- `error:` {escape(line)}" for line in errors]
        lines.append("\nFix it and run again; `mia-audit validate` checks a policy locally.")
    else:
        lines.append("The step log shows why.")
    return "\n".join(lines) + "\n"


def annotation(code: int, result: Result | None, errors: Sequence[str] = ()) -> str | None:
    """A workflow command that shows a failed gate or a failed run on the run's page."""
    if code == EXIT_PASS:
        return None
    if result is not None:
        failed = failed_conditions_text(result)
        message = f"privacy gate failed for {result.policy.name}: " + "; ".join(failed)
    else:
        from mia_audit.reports.markdown_report import EXIT_MEANINGS

        meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
        reason = "; ".join(errors) if errors else "the log above says why"
        message = f"mia-audit exited {code} ({meaning}): {reason}"
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::error title=mia-audit::{printable(escaped)}"


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def resolve_outputs(env: Mapping[str, str]) -> dict[str, str]:
    """`cache-dir` (the policy's runtime.cache_dir, relative to the workspace when inside it)
    and `cache-key` (a key prefix naming the policy file); empty when the policy is invalid
    (the audit step then says why)."""
    from mia_audit.errors import MiaAuditError
    from mia_audit.policy.loading import load_policy

    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    try:
        inputs = read_inputs(env)
        cache_dir = load_policy(inputs.policy).policy.runtime.cache_dir.resolve()
    except (ValueError, MiaAuditError):
        return {"cache-dir": "", "cache-key": ""}
    shown = cache_dir.relative_to(workspace) if cache_dir.is_relative_to(workspace) else cache_dir
    policy = inputs.policy.resolve()
    named = policy.relative_to(workspace) if policy.is_relative_to(workspace) else policy
    digest = hashlib.sha256(str(named).encode("utf-8")).hexdigest()[:12]
    return {"cache-dir": str(shown), "cache-key": f"mia-audit-{digest}"}


def main(env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> int:
    env = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    if list(argv) == ["resolve"]:
        _append(env.get("GITHUB_OUTPUT"), output_lines(resolve_outputs(env)))
        return EXIT_PASS
    try:
        inputs = read_inputs(env)
    except ValueError as error:
        print(printable(f"error: {error}"), file=sys.stderr)
        return EXIT_INVALID
    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    run = run_audit(audit_command(inputs, report_formats(inputs.policy)), workspace)
    code = run.code
    result = fresh_result(code, inputs.output_dir)
    outputs = step_outputs(code, inputs.output_dir, result, run.errors)
    _append(env.get("GITHUB_OUTPUT"), output_lines(outputs))
    _append(env.get("GITHUB_STEP_SUMMARY"), summary_markdown(code, inputs.output_dir, run.errors))
    command = annotation(code, result, run.errors)
    if command:
        print(command, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
