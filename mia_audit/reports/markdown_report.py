"""summary.md: a short Markdown summary for `$GITHUB_STEP_SUMMARY` (docs/reports.md).

Plain string building, no templates. Every string that comes from the user (policy name, attack
ids, paths, notes) goes through `escape` so it can neither break a table nor inject HTML. The
whole file stays under `MAX_BYTES` (GitHub's step summary limit): the details are cut first.
"""

from __future__ import annotations

from collections.abc import Sequence

from mia_audit.evaluation.metrics import fpr_key
from mia_audit.reports import register_format
from mia_audit.result import (
    AttackResult,
    Condition,
    Interval,
    ReferenceCalibration,
    Result,
    failed_conditions_text,
    strongest_attack,
    worst_attack,
)

#: GitHub refuses step summaries of 1 MiB or more.
MAX_BYTES = 1024 * 1024

#: The FPRs of the per-attack table: (result.json key, column heading).
#: The FPRs of the TPR columns, with their headings.
TPR_COLUMNS = ((0.05, "5 %"), (0.01, "1 %"), (0.001, "0.1 %"))

EXIT_MEANINGS = {
    0: "every gate condition holds",
    1: "a gate condition failed",
    2: "the policy, the inputs or the command line are invalid",
    3: "the audit could not complete",
}

TRUNCATED_NOTE = "*Details truncated to keep this summary under 1 MiB; see result.json.*"

# HTML-significant characters become entities; Markdown punctuation gets a backslash.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", '"': "&quot;"}
_MARKDOWN = set("\\`*_[]~#!")


def escape(text: str) -> str:
    """Make `text` inert inside a Markdown paragraph or table cell (one line, no HTML)."""
    out = []
    for char in text:
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char in _MARKDOWN:
            out.append("\\" + char)
        elif char.isspace() or ord(char) < 32 or 0x7F <= ord(char) < 0xA0:
            out.append(" ")  # newlines, tabs, line separators, control characters
        else:
            out.append(char)
    return "".join(out)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A GitHub table; `align` has one letter per column, l (left) or r (right)."""
    rule = [":--" if a == "l" else "--:" for a in align]
    return [_row(header), _row(rule), *(_row(r) for r in rows)]


def verdict_lines(result: Result) -> list[str]:
    verdict = "PASS" if result.passed else "FAIL"
    failed = sum(not c.passed for c in result.gate.conditions)
    waived = sum(c.waived for c in result.gate.conditions)
    total = len(result.gate.conditions)
    meaning = EXIT_MEANINGS.get(result.exit_code, "unknown exit code")
    counts = "no gate conditions set"
    if total:
        counts = f"{total - failed} of {total} gate conditions hold"
    if waived:
        counts += f", {waived} failure{'s' if waived > 1 else ''} waived"
    lines = [
        f"## mia-audit: {verdict} — {escape(result.policy.name)}",
        "",
        f"**{verdict}**: {counts}. Exit code {result.exit_code} ({meaning}).",
    ]
    deciding = failed_conditions_text(result)
    if deciding:  # the deciding attack of each failed condition, before any other figure
        lines += ["", "**Failed:** " + "; ".join(escape(line) for line in deciding) + "."]
    return lines


def metric_name(condition: Condition) -> str:
    """The condition's metric in words, e.g. "TPR at FPR 0.05 (upper CI bound)"; not escaped."""
    if condition.metric.startswith("tpr_at_fpr") and condition.fpr is not None:
        label = f"TPR at FPR {condition.fpr:.4g}"
        if condition.metric == "tpr_at_fpr_increase":
            label += " increase over baseline"
    else:
        label = METRIC_LABELS.get(condition.metric, condition.metric)
    if condition.statistic == "upper":
        label += " (upper CI bound)"
    return label


#: Metrics in words (TPR at FPR is spelled out with its FPR).
METRIC_LABELS = {
    "auc": "AUC",
    "advantage": "attacker advantage",
    "epsilon_lower_bound": "ε lower bound",
    "dp_claim": "ε lower bound vs the DP claim",
    "dp_claim_accounting": "DP recipe's accountant ε vs the claim",
    "class_auc": "AUC within a class",
    "auc_increase": "AUC increase over baseline",
}


def interval_text(interval: Interval | None, digits: int = 4) -> str:
    """The interval as "[low, high]", or "" when there is none."""
    if interval is None:
        return ""
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def value_cell(condition: Condition) -> str:
    """The compared value, with what it came from: the baseline delta, or the point and CI."""
    value = f"{condition.value:.4f}"
    if condition.baseline_value is not None and condition.current_value is not None:
        return (
            f"{condition.value:+.4f} ({condition.baseline_value:.4f} → "
            f"{condition.current_value:.4f})"
        )
    ci = interval_text(condition.ci)
    if condition.statistic == "upper" and condition.point is not None:
        return f"{value} (point {condition.point:.4f}{', CI ' + ci if ci else ''})"
    return f"{value} {ci}" if ci else value


def pass_cell(condition: Condition) -> str:
    """Pass or fail; a waived failure with its expiry and reason; a lapsed waiver's date."""
    if condition.passed:
        return "✅ pass"
    if condition.waived:
        return f"⚠️ waived until {condition.waiver_expires}: {escape(condition.waiver_reason or '')}"
    if condition.waiver_expired:
        return f"❌ fail (waiver expired {condition.waiver_expires})"
    return "❌ fail"


def conditions_lines(result: Result) -> list[str]:
    conditions = result.gate.conditions
    if not conditions:
        return ["### Gate conditions", "", "No gate conditions were set."]
    rows = [
        [
            escape(metric_name(c)),
            escape(c.attack) + (f", {escape(c.slice)}" if c.slice else ""),
            value_cell(c),
            f"{c.threshold:.4g}",
            pass_cell(c),
        ]
        for c in conditions
    ]
    header = ["Metric", "Attack", "Value", "Threshold", "Pass"]
    notes = [f"- {escape(metric_name(c))}: {escape(c.note)}" for c in conditions if c.note]
    table = ["### Gate conditions", "", *_table(header, rows, "llrrl")]
    return [*table, "", *notes] if notes else table


def tpr_cell(attack: AttackResult, fpr: float) -> str:
    key = fpr_key(fpr)
    if attack.tpr_at_fpr_supported.get(key) is False:
        return "unsupported"
    value = attack.tpr_at_fpr.get(key)
    if value is None:
        return "n/a"
    ci = interval_text(attack.tpr_at_fpr_ci.get(key), 3)
    return f"{value:.4f} {ci}" if ci else f"{value:.4f}"


def auc_cell(attack: AttackResult) -> str:
    ci = interval_text(attack.auc_ci, 3)
    return f"{attack.auc:.4f} {ci}" if ci else f"{attack.auc:.4f}"


def epsilon_cell(attack: AttackResult) -> str:
    bound = attack.epsilon_lower_bound
    return "n/a" if bound is None else f"{bound.value:.3f}"


def intervals_note(result: Result) -> list[str]:
    """How the intervals and the ε bound were computed (when they were)."""
    first = next((a for a in result.attacks if a.ci_level is not None), None)
    if first is None:
        return []
    level = f"{100 * (first.ci_level or 0):g} %"
    text = (
        f"Brackets: {level} stratified bootstrap CIs ({first.ci_resamples} resamples, "
        f"seed {result.seed})."
    )
    bound = first.epsilon_lower_bound
    if bound is not None:
        text += (
            f" ε lower bound: Clopper-Pearson at {level}, δ = {bound.delta:g}, threshold "
            "chosen on one half of the audit set and evaluated on the other."
        )
    return ["", text]


def attacks_lines(result: Result) -> list[str]:
    if not result.attacks:
        return ["### Attacks", "", "No attacks ran."]
    with_epsilon = any(a.epsilon_lower_bound is not None for a in result.attacks)
    rows = [
        [
            escape(a.id),
            auc_cell(a),
            *(tpr_cell(a, fpr) for fpr, _ in TPR_COLUMNS),
            f"{a.advantage:.4f}",
            *([epsilon_cell(a)] if with_epsilon else []),
        ]
        for a in result.attacks
    ]
    header = ["Attack", "AUC", *(f"TPR at {label} FPR" for _, label in TPR_COLUMNS), "Advantage"]
    header += ["ε lower bound"] if with_epsilon else []
    strongest = escape(strongest_attack(result).id)
    return [
        "### Attacks",
        "",
        *_table(header, rows, "lrrrrr" + ("r" if with_epsilon else "")),
        "",
        f"Strongest attack (highest TPR at 5 % FPR): {strongest}.{_highest_auc_text(result)}",
        *intervals_note(result),
    ]


def _highest_auc_text(result: Result) -> str:
    """ " Highest AUC: <attack> (<auc>)." when another attack than the strongest has it."""
    top = worst_attack(result, "auc")
    if top is None or top.id == strongest_attack(result).id:
        return ""
    return f" Highest AUC: {escape(top.id)} ({top.auc:.4f})."


def slice_items(result: Result) -> list[str]:
    """Per attack: the strongest class and the correct/misclassified slices (details list)."""
    items = []
    for attack in result.attacks:
        classes = [row for row in attack.per_class if row.auc is not None]
        if classes:
            top = max(classes, key=lambda row: row.auc or 0.0)
            name = f" ({escape(top.name)})" if top.name else ""
            items.append(
                f"Strongest class for {escape(attack.id)}: {top.label}{name}, AUC "
                f"{top.auc:.4f} {interval_text(top.auc_ci, 3)} "
                f"({top.n_members} members, {top.n_non_members} non-members)"
            )
        parts = [
            f"{row.name} AUC "
            + ("n/a" if row.auc is None else f"{row.auc:.4f} {interval_text(row.auc_ci, 3)}")
            + f" ({row.n_members} members, {row.n_non_members} non-members)"
            for row in attack.slices
        ]
        if parts:
            items.append(f"Slices for {escape(attack.id)}: " + "; ".join(parts))
    return items


def reference_items(result: Result) -> list[str]:
    """The reference models' accuracy beside the target's, one item per set."""
    fit = result.references
    if fit is None:
        return []
    verdict = "" if fit.reproduces_target else " (does not reproduce the target's fit)"
    items = [
        f"Reference models: training accuracy {fit.train:.4f}, held-out {fit.held_out:.4f}{verdict}"
    ]
    items += [
        f"Reference models of {escape(', '.join(group.attacks))} ({group.count} {group.mode}): "
        f"training accuracy {group.train:.4f}, held-out {group.held_out:.4f}"
        for group in fit.sets
    ]
    if fit.calibration is not None:
        items += calibration_items(fit.calibration)
    return items


def calibration_items(record: ReferenceCalibration) -> list[str]:
    """The calibration pilot: what it chose, then each candidate beside the target."""
    items = [f"Calibration pilot: {escape(record.summary())}"]
    target = f"target {record.target_train_accuracy:.3f} / {record.target_held_out_accuracy:.3f}"
    for index, candidate in enumerate(record.candidates):
        mark = " (chosen)" if index == record.chosen else ""
        items.append(
            f"Pilot candidate {index + 1}{mark}: {escape(candidate.recipe_text())}: training / "
            f"held-out accuracy {candidate.train_accuracy:.3f} / "
            f"{candidate.held_out_accuracy:.3f} ({target}), distance {candidate.distance:.3f}"
        )
    return items


def details_items(result: Result) -> list[str]:
    """One Markdown list item per fact, so the list can be cut at any item."""
    target, data, env = result.target, result.data, result.environment
    items = [
        f"Target accuracy: members {target.accuracy.members:.4f}, "
        f"non-members {target.accuracy.non_members:.4f}",
        f"Target outputs: {escape(target.outputs_description())}",
        *reference_items(result),
        f"Data: {data.n_members} members, {data.n_non_members} non-members, "
        f"{data.n_population} population",
        f"Audit set sha256: {escape(data.sha256)}",
        f"Target: {escape(target.path)} ({escape(target.format)}), sha256 {escape(target.sha256)}",
        f"Policy: {escape(result.policy.path)}, sha256 {escape(result.policy.sha256)}",
    ]
    items += [
        f"Data source {escape(name)}: {escape(src.path)}, {src.n_samples} samples, "
        f"sha256 {escape(src.sha256)}"
        for name, src in data.sources.items()
    ]
    gpu = f", GPU {escape(env.gpu)}" if env.gpu else ""
    if result.baseline is not None:
        base = result.baseline
        items.append(
            f"Baseline: {escape(base.path)} (schema {base.schema_version}), "
            f"sha256 {escape(base.sha256)}"
        )
    if result.gate.evaluated_on is not None:
        items.append(f"Suppressions checked against {result.gate.evaluated_on} (UTC)")
    items += slice_items(result)
    items += [
        f"Seed: {result.seed}",
        f"Device: {escape(env.device)}{gpu}, engine {escape(env.engine)}, "
        f"precision {escape(env.precision)}",
        f"Tool: {escape(result.tool.name)} {escape(result.tool.version)}, "
        f"Python {escape(env.python)}",
    ]
    items += [f"Time {escape(phase)}: {seconds:.2f} s" for phase, seconds in result.timings.items()]
    items += [f"Note: {escape(note)}" for note in [*result.data.notes, *result.notes]]
    return [f"- {item}" for item in items]


def _size(lines: Sequence[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def details_lines(items: Sequence[str], budget: int) -> list[str]:
    """The collapsible section, keeping as many items as fit in `budget` bytes."""
    opening = ["<details><summary>Run details</summary>", ""]
    closing = ["", "</details>"]
    if _size([*opening, *items, *closing]) <= budget:
        return [*opening, *items, *closing]
    kept: list[str] = []
    room = budget - _size([*opening, "", TRUNCATED_NOTE, *closing])
    for item in items:
        room -= _size([item])
        if room < 0:
            break
        kept.append(item)
    return [*opening, *kept, "", TRUNCATED_NOTE, *closing]


def _cap(text: str, limit: int) -> str:
    """Last resort when even the tables do not fit: cut at a line, then at a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = "\n\n" + TRUNCATED_NOTE.replace("Details", "Summary") + "\n"
    head = data[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    head = head.rsplit("\n", 1)[0] if "\n" in head else head
    return head + note


def factory_lines(result: Result) -> list[str]:
    """The user code the policy made the tool run: never cut, so it is always in view."""
    if not result.factories:
        return []
    lines = ["**User code named by the policy:**", ""]
    for factory in result.factories:
        where = escape(factory.path) if factory.path else "file not found"
        digest = f", sha256 {escape(factory.sha256)}" if factory.sha256 else ""
        imported = "" if factory.imported else " (not imported in this run)"
        lines.append(
            f"- {escape(factory.field)}: {escape(factory.name)} from {where}{digest}{imported}"
        )
    return [*lines, ""]


def floor_lines(result: Result) -> list[str]:
    """The floor the policy met: never cut, so a reader sees what the gate could not skip."""
    floor = result.floor
    if floor is None:
        return []
    where = escape(floor.path or floor.source)
    lines = [f"**Floor:** {where}, sha256 {escape(floor.sha256)}; the policy met:", ""]
    lines += [f"- {escape(line)}" for line in floor.enforced]
    return [*lines, ""]


@register_format("markdown", "summary.md")
def render_markdown(result: Result) -> bytes:
    body = [
        *verdict_lines(result),
        "",
        *factory_lines(result),
        *floor_lines(result),
        *conditions_lines(result),
        "",
        *attacks_lines(result),
        "",
    ]
    budget = MAX_BYTES - 1 - _size(body)
    details = details_lines(details_items(result), budget) if budget > 0 else []
    return _cap("\n".join([*body, *details]) + "\n", MAX_BYTES - 1).encode("utf-8")
