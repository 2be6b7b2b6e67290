"""The GitHub Action's audit step (`action.yml` runs `python -m mia_audit.action`).

It runs `mia-audit run` in a child process (same Python, same exit codes), then tells GitHub
about the result: the Markdown summary goes to `$GITHUB_STEP_SUMMARY`, the step outputs to
`$GITHUB_OUTPUT`, a failure becomes an error annotation, and the step exits with the audit's
exit code. Inputs arrive only as environment variables that action.yml sets from its inputs,
never spliced into a script:

    MIA_POLICY       the policy file (required)
    MIA_OUTPUT_DIR   where the reports go (default mia-report)
    MIA_DEVICE       auto, cpu or cuda (default: the policy's runtime.device)
    MIA_MAX_AUC      a gate floor: the policy must have gate.max_auc at most this
    MIA_MAX_TPR_AT_FPR  gate floors FPR:MAX (several separated by spaces, commas or lines)

Relative paths resolve against `$GITHUB_WORKSPACE` (the checkout). Numbers are read from the
result.json this run wrote, and only when the run exited 0 or 1: a run that exits 2 or 3 leaves
older reports in place, and those must not be reported as this run's.
"""

from __future__ import annotations

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
from mia_audit.result import Result, strongest_attack

#: Formats the action needs besides the policy's own: numbers, step summary, the artifact.
ACTION_FORMATS = ("json", "html", "markdown")
DEFAULT_OUTPUT_DIR = "mia-report"


@dataclass(frozen=True)
class ActionInputs:
    policy: Path
    output_dir: Path
    device: str | None
    #: The gate floor from the workflow file (`mia-audit run --floor-*`), checked by the CLI.
    floor_max_auc: str | None = None
    floor_max_tpr_at_fpr: tuple[str, ...] = ()


def read_inputs(env: Mapping[str, str]) -> ActionInputs:
    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    policy = env.get("MIA_POLICY", "").strip()
    if not policy:
        raise ValueError("the `policy` input is required (path to the policy YAML)")
    output_dir = env.get("MIA_OUTPUT_DIR", "").strip() or DEFAULT_OUTPUT_DIR
    device = env.get("MIA_DEVICE", "").strip() or None
    max_auc = env.get("MIA_MAX_AUC", "").strip() or None
    max_tpr = tuple(env.get("MIA_MAX_TPR_AT_FPR", "").replace(",", " ").split())
    return ActionInputs(workspace / policy, workspace / output_dir, device, max_auc, max_tpr)


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
    if inputs.floor_max_auc:
        command += ["--floor-max-auc", inputs.floor_max_auc]
    for floor in inputs.floor_max_tpr_at_fpr:
        command += ["--floor-max-tpr-at-fpr", floor]
    return command


def run_audit(command: Sequence[str], cwd: Path) -> int:
    """The audit's exit code; a child killed by a signal counts as "could not complete".

    The child's output is fenced by `::stop-commands::<token>` ... `::<token>::`: the runner
    then reads none of it as a workflow command, whatever a policy or data file made it print
    (the CLI escapes names too; this holds even for a library's message). The token is fresh
    and random, and the child never sees it, so nothing it prints can end the fence early.
    """
    token = f"mia-audit-{secrets.token_hex(16)}"
    print(f"::stop-commands::{token}", flush=True)
    try:
        code = subprocess.run(command, cwd=cwd, check=False).returncode
    finally:
        sys.stderr.flush()
        print(f"::{token}::", flush=True)
    return code if code >= 0 else EXIT_INCOMPLETE


def fresh_result(code: int, out_dir: Path) -> Result | None:
    """This run's result, or None when it wrote none (exit 2 or 3 leaves older files alone)."""
    path = out_dir / "result.json"
    if code not in (EXIT_PASS, EXIT_GATE_FAILED) or not path.is_file():
        return None
    return Result.model_validate_json(path.read_bytes())


def step_outputs(code: int, out_dir: Path, result: Result | None) -> dict[str, str]:
    """The step's outputs: empty strings where this run produced no value."""
    outputs = dict.fromkeys(
        ("result-json", "report-html", "strongest-attack", "auc", "tpr-at-fpr"), ""
    )
    outputs |= {"passed": str(code == EXIT_PASS).lower(), "exit-code": str(code)}
    if result is None:
        return outputs
    outputs["result-json"] = str(out_dir / "result.json")
    if (out_dir / "report.html").is_file():
        outputs["report-html"] = str(out_dir / "report.html")
    if result.attacks:
        best = strongest_attack(result)
        tpr = best.tpr_at_fpr.get("0.05")
        outputs |= {"strongest-attack": best.id, "auc": f"{best.auc:.6g}"}
        outputs["tpr-at-fpr"] = "" if tpr is None else f"{tpr:.6g}"
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


def summary_markdown(code: int, out_dir: Path) -> str:
    """summary.md of this run, or a short note when the run wrote no report."""
    summary = out_dir / "summary.md"
    if code in (EXIT_PASS, EXIT_GATE_FAILED) and summary.is_file():
        return summary.read_text(encoding="utf-8")
    from mia_audit.reports.markdown_report import EXIT_MEANINGS

    meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
    return (
        f"## mia-audit: ERROR\n\n**Exit code {code}** ({meaning}). No report was written; "
        "the step log shows the error.\n"
    )


def annotation(code: int, result: Result | None) -> str | None:
    """A workflow command that shows a failed gate or a failed run on the run's page."""
    if code == EXIT_PASS:
        return None
    if result is not None:
        failed = [
            f"{c.description}: {c.value:.4f} ({c.attack})"
            for c in result.gate.conditions
            if not c.passed
        ]
        message = f"privacy gate failed for {result.policy.name}: " + "; ".join(failed)
    else:
        from mia_audit.reports.markdown_report import EXIT_MEANINGS

        meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
        message = f"mia-audit exited {code}: {meaning}; the log above says why"
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::error title=mia-audit::{printable(escaped)}"


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        inputs = read_inputs(env)
    except ValueError as error:
        print(printable(f"error: {error}"), file=sys.stderr)
        return EXIT_INVALID
    workspace = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    code = run_audit(audit_command(inputs, report_formats(inputs.policy)), workspace)
    result = fresh_result(code, inputs.output_dir)
    _append(env.get("GITHUB_OUTPUT"), output_lines(step_outputs(code, inputs.output_dir, result)))
    _append(env.get("GITHUB_STEP_SUMMARY"), summary_markdown(code, inputs.output_dir))
    command = annotation(code, result)
    if command:
        print(command, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
