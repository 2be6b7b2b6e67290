"""report.html: one self-contained page a person reads in a minute (docs/reports.md).

No network, no JavaScript: CSS is inline, plots are inline SVG drawn by matplotlib (see
`plots`). The Jinja2 template (templates/report.html.j2) escapes every value (autoescape on);
the only markup passed through unescaped is the SVG that matplotlib wrote, in which matplotlib
escapes text itself. This module turns a `Result` into plain rows of formatted strings, so the
template only lays them out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from mia_audit.reports import register_format
from mia_audit.reports._templates import environment
from mia_audit.reports.markdown_report import (
    EXIT_MEANINGS,
    TPR_COLUMNS,
    epsilon_cell,
    interval_text,
    intervals_note,
    metric_name,
)
from mia_audit.result import (
    AttackResult,
    ClassBreakdown,
    Condition,
    ReferenceCalibration,
    Result,
    failed_conditions_text,
    strongest_attack,
)

TEMPLATE = "report.html.j2"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


@dataclass(frozen=True)
class ConditionRow:
    metric: str
    attack: str
    value: str
    detail: str  # the CI, the point estimate behind an upper bound, or baseline -> now
    threshold: str
    status: str  # pass, fail, waived or expired (a failure whose waiver has lapsed)
    waiver: str
    note: str
    per_attack: list[tuple[str, str]]


@dataclass(frozen=True)
class Cell:
    """A number with its interval underneath; `muted` when the number means little."""

    text: str
    ci: str = ""
    muted: bool = False


@dataclass(frozen=True)
class AttackRow:
    id: str
    name: str
    summary: str
    parameters: str
    auc: Cell
    tprs: list[Cell]
    advantage: str
    balanced_accuracy: str
    epsilon: str
    seconds: str
    strongest: bool


@dataclass(frozen=True)
class ClassRow:
    label: int
    name: str
    n_members: int
    n_non_members: int
    auc: Cell
    tpr: str
    best_auc: str
    best_attack: str


@dataclass(frozen=True)
class SampleRow:
    id: str
    label: str
    score: str
    non_members_below: str


# --- rows -----------------------------------------------------------------------------------


def condition_status(condition: Condition) -> tuple[str, str]:
    """(status, waiver text): a failure can be waived until a date, or its waiver lapsed."""
    if condition.passed:
        return "pass", ""
    if condition.waived:
        return "waived", f"until {condition.waiver_expires}: {condition.waiver_reason or ''}"
    if condition.waiver_expired:
        return "expired", f"waiver expired {condition.waiver_expires}"
    return "fail", ""


def value_texts(condition: Condition) -> tuple[str, str]:
    """(value, detail): a baseline delta with before -> after, or a value with its CI."""
    if condition.baseline_value is not None and condition.current_value is not None:
        change = f"{condition.baseline_value:.4f} → {condition.current_value:.4f}"
        return f"{condition.value:+.4f}", change
    ci = interval_text(condition.ci)
    if condition.statistic == "upper" and condition.point is not None:
        return number(condition.value), f"point {condition.point:.4f}" + (
            f", CI {ci}" if ci else ""
        )
    return number(condition.value), ci


def condition_rows(result: Result) -> list[ConditionRow]:
    rows = []
    for c in result.gate.conditions:
        status, waiver = condition_status(c)
        value, detail = value_texts(c)
        rows.append(
            ConditionRow(
                metric=metric_name(c),
                attack=c.attack + (f", {c.slice}" if c.slice else ""),
                value=value,
                detail=detail,
                threshold=f"{c.threshold:.4g}",
                status=status,
                waiver=waiver,
                note=c.note or "",
                per_attack=[(attack, number(value)) for attack, value in c.per_attack.items()],
            )
        )
    return rows


def tpr_cell(attack: AttackResult, fpr: float) -> Cell:
    from mia_audit.evaluation.metrics import fpr_key

    key = fpr_key(fpr)
    if attack.tpr_at_fpr_supported.get(key) is False:
        return Cell("unsupported", muted=True)
    value = attack.tpr_at_fpr.get(key)
    if value is None:
        return Cell("n/a", muted=True)
    return Cell(number(value), interval_text(attack.tpr_at_fpr_ci.get(key), 3))


def attack_rows(result: Result, strongest: AttackResult | None) -> list[AttackRow]:
    return [
        AttackRow(
            id=a.id,
            name=a.name,
            summary=a.summary,
            parameters=json.dumps(a.parameters, sort_keys=True) if a.parameters else "",
            auc=Cell(number(a.auc), interval_text(a.auc_ci, 3)),
            tprs=[tpr_cell(a, fpr) for fpr, _ in TPR_COLUMNS],
            advantage=number(a.advantage),
            balanced_accuracy=number(a.balanced_accuracy),
            epsilon=epsilon_cell(a),
            seconds=f"{a.seconds:.2f}",
            strongest=strongest is not None and a.id == strongest.id,
        )
        for a in result.attacks
    ]


def headline_tpr(attack: AttackResult) -> str:
    """The banner's TPR at 5 % FPR, flagged when too few non-members support it."""
    text = number(attack.tpr_at_fpr.get("0.05"))
    if attack.tpr_at_fpr_supported.get("0.05") is False:
        text += " (unsupported: too few non-members)"
    return text


def unsupported_note(result: Result) -> str:
    """Why a TPR is "unsupported", with the non-member count each FPR column needs."""
    from mia_audit.evaluation.metrics import fpr_key, min_negatives_for_fpr

    unsupported = [
        (fpr, label)
        for fpr, label in TPR_COLUMNS
        if any(a.tpr_at_fpr_supported.get(fpr_key(fpr)) is False for a in result.attacks)
    ]
    if not unsupported:
        return ""
    needs = ", ".join(f"{min_negatives_for_fpr(fpr):,} for {label}" for fpr, label in unsupported)
    return (
        f"unsupported: with {result.data.n_non_members:,} non-members too few of them fall "
        f"above the threshold at this FPR for the TPR to mean anything (the value is noise); "
        f"measuring it needs more non-members ({needs})."
    )


def _best_class_auc(result: Result, label: int) -> tuple[str, str]:
    scored = [
        (row.auc, attack.id)
        for attack in result.attacks
        for row in attack.per_class
        if row.label == label and row.auc is not None
    ]
    if not scored:
        return "n/a", ""
    auc, attack_id = max(scored, key=lambda item: item[0])
    return number(auc), attack_id


def class_name(result: Result, row: ClassBreakdown) -> str:
    if row.name is not None:
        return row.name
    names = result.data.class_names or []
    return names[row.label] if 0 <= row.label < len(names) else ""


def class_rows(result: Result, strongest: AttackResult) -> list[ClassRow]:
    rows = []
    for row in sorted(strongest.per_class, key=lambda r: r.label):
        best_auc, best_attack = _best_class_auc(result, row.label)
        rows.append(
            ClassRow(
                label=row.label,
                name=class_name(result, row),
                n_members=row.n_members,
                n_non_members=row.n_non_members,
                auc=Cell(number(row.auc), interval_text(row.auc_ci, 3)),
                tpr=number(row.tpr_at_fpr.get("0.05")),
                best_auc=best_auc,
                best_attack=best_attack,
            )
        )
    return rows


def class_label(result: Result, label: int) -> str:
    """`3 (cat)`, or just `3` when there is no name or the name is the number."""
    names = result.data.class_names or []
    name = names[label] if 0 <= label < len(names) else ""
    return f"{label} ({name})" if name and name != str(label) else str(label)


def score_format(scores: list[float]) -> str:
    """One format for a column of scores, so the decimals line up: fixed unless tiny or huge."""
    largest = max((abs(s) for s in scores), default=0.0)
    return ".4f" if 1e-3 <= largest < 1e5 else ".4e"


def slice_rows(attack: AttackResult) -> list[tuple[str, int, int, str]]:
    """(slice, members, non-members, AUC with CI) of the correct/misclassified slices."""
    return [
        (
            row.name,
            row.n_members,
            row.n_non_members,
            " ".join(filter(None, [number(row.auc), interval_text(row.auc_ci, 3)])),
        )
        for row in attack.slices
    ]


def sample_rows(result: Result, strongest: AttackResult) -> list[SampleRow]:
    fmt = score_format([s.score for s in strongest.most_vulnerable])
    return [
        SampleRow(
            id=s.id,
            label=class_label(result, s.label),
            score=format(s.score, fmt),
            non_members_below=percent(s.non_members_below),
        )
        for s in strongest.most_vulnerable
    ]


# --- provenance -----------------------------------------------------------------------------


def provenance(result: Result) -> dict[str, list[tuple[str, str]]]:
    """Facts grouped under headings, each a (name, value) pair shown as written."""
    target, data, env = result.target, result.data, result.environment
    groups: dict[str, list[tuple[str, str]]] = {
        "Policy": [("path", result.policy.path), ("sha256", result.policy.sha256)],
        "Target": [
            ("path", target.path),
            ("format", target.format),
            ("sha256", target.sha256),
            ("architecture", target.architecture or ""),
            ("factory (user code)", target.factory or ""),
            ("classes", str(target.num_classes)),
            ("outputs", target.outputs_description()),
            ("engine", target.engine),
            ("precision", target.precision),
        ],
        "Data": [
            ("audit set sha256", data.sha256),
            ("members / non-members", f"{data.n_members:,} / {data.n_non_members:,}"),
            ("population", f"{data.n_population:,} ({data.population_origin or 'none'})"),
            ("image shape", " x ".join(str(n) for n in data.image_shape)),
        ],
        "Run": [
            ("seed", str(result.seed)),
            ("device", env.device + (f" ({env.gpu})" if env.gpu else "")),
            ("engine / precision", f"{env.engine} / {env.precision}"),
            ("tool", f"{result.tool.name} {result.tool.version}"),
            ("Python", env.python),
            ("platform", env.platform),
            ("CPU cores", str(env.cpu_count)),
        ],
    }
    for name, source in data.sources.items():
        groups["Data"].append(
            (f"{name}", f"{source.path} ({source.n_samples:,} samples, sha256 {source.sha256})")
        )
    if result.baseline is not None:
        base = result.baseline
        groups["Policy"] += [
            ("baseline", base.path),
            ("baseline sha256", base.sha256),
            ("baseline written by", f"{base.tool_version or '?'} (schema {base.schema_version})"),
        ]
    if result.gate.evaluated_on is not None:
        groups["Policy"].append(("suppressions checked on", f"{result.gate.evaluated_on} (UTC)"))
    groups.update(_floor_and_factories(result))
    groups["Versions"] = list(env.versions.items())
    groups["Timings"] = [(phase, f"{seconds:.2f} s") for phase, seconds in result.timings.items()]
    groups["Timings"].append(("total", f"{sum(result.timings.values()):.2f} s"))
    return {title: [(k, v) for k, v in rows if v] for title, rows in groups.items()}


def _floor_and_factories(result: Result) -> dict[str, list[tuple[str, str]]]:
    """The provenance groups only some runs have: the workflow's floor, the user's code."""
    groups: dict[str, list[tuple[str, str]]] = {}
    if result.floor is not None:
        floor = result.floor
        groups["Floor (the least the policy may audit)"] = [
            ("floor", floor.path or floor.source),
            ("floor sha256", floor.sha256),
            *(("enforced", line) for line in floor.enforced),
        ]
    if result.factories:
        groups["User code (factories the policy named)"] = [
            (
                f"{factory.field}: {factory.name}",
                f"{factory.path or 'file not found'}"
                + (f" (sha256 {factory.sha256})" if factory.sha256 else "")
                + ("" if factory.imported else ", not imported in this run"),
            )
            for factory in result.factories
        ]
    return groups


# --- plots ----------------------------------------------------------------------------------


def plot_svgs(result: Result, strongest: AttackResult) -> dict[str, Markup]:
    """The inline SVGs. Markup() marks matplotlib's output as safe: it escapes text itself."""
    from mia_audit.reports import plots

    curves = [
        plots.Curve(a.id, a.roc.fpr, a.roc.tpr, strong=a.id == strongest.id) for a in result.attacks
    ]
    n_non_members = result.data.n_non_members
    min_fpr = 1.0 / n_non_members if n_non_members else None
    hist = strongest.score_histogram
    n_members = result.data.n_members
    return {
        "roc": Markup(plots.roc_svg(curves, min_fpr)),
        "precision_recall": Markup(plots.precision_recall_svg(curves, n_members, n_non_members)),
        "histogram": Markup(
            plots.histogram_svg(hist.bin_edges, hist.members, hist.non_members, strongest.id)
        ),
    }


def reference_rows(result: Result) -> dict[str, Any] | None:
    """The reference models' fit beside the target's (None without reference attacks)."""
    fit = result.references
    if fit is None:
        return None
    models = {model.key: model for group in fit.sets for model in group.models}
    return {
        "train": percent(fit.train),
        "held_out": percent(fit.held_out),
        "target_members": percent(fit.target_members),
        "target_non_members": percent(fit.target_non_members),
        "max_shortfall": f"{100 * fit.max_shortfall:.0f} points",
        "reproduces": fit.reproduces_target,
        "sets": [
            {
                "attacks": ", ".join(group.attacks),
                "mode": group.mode,
                "count": group.count,
                "train": percent(group.train),
                "held_out": percent(group.held_out),
                "gap": f"{100 * (group.train - group.held_out):.1f} points",
            }
            for group in fit.sets
        ],
        "models": [
            {
                "key": model.key[:16],
                "train": percent(model.train),
                "held_out": percent(model.held_out),
                "samples": f"{model.n_train} / {model.n_held_out}",
            }
            for model in models.values()
        ],
        "calibration": calibration_rows(fit.calibration),
    }


def calibration_rows(record: ReferenceCalibration | None) -> dict[str, Any] | None:
    """The calibration pilot's table: the target's figures, then each candidate's."""
    if record is None:
        return None
    return {
        "summary": record.summary(),
        "target": [
            percent(record.target_train_accuracy),
            percent(record.target_held_out_accuracy),
            f"{record.target_train_confidence:.3f}",
            f"{record.target_held_out_confidence:.3f}",
            f"{record.target_flip_gap:.3f}",
        ],
        "candidates": [
            {
                "recipe": candidate.recipe_text(),
                "chosen": index == record.chosen,
                "figures": [
                    percent(candidate.train_accuracy),
                    percent(candidate.held_out_accuracy),
                    f"{candidate.train_confidence:.3f}",
                    f"{candidate.held_out_confidence:.3f}",
                    f"{candidate.flip_gap:.3f}",
                ],
                "distance": f"{candidate.distance:.3f}",
                "source": "trained" if candidate.trained else "cache",
                "seconds": f"{candidate.seconds:.1f} s",
            }
            for index, candidate in enumerate(record.candidates)
        ],
        "miss": record.miss_reason(),
    }


# --- the page -------------------------------------------------------------------------------


def verdict(result: Result) -> dict[str, Any]:
    failed = sum(not c.passed for c in result.gate.conditions)
    waived = sum(c.waived for c in result.gate.conditions)
    total = len(result.gate.conditions)
    counts = (
        f"{total - failed} of {total} gate conditions hold" if total else "no gate conditions set"
    )
    if waived:
        counts += f", {waived} failure{'s' if waived > 1 else ''} waived"
    return {
        "passed": result.passed,
        "word": "PASS" if result.passed else "FAIL",
        "counts": counts,
        "exit_code": result.exit_code,
        "exit_meaning": EXIT_MEANINGS.get(result.exit_code, "unknown exit code"),
    }


def report_context(result: Result) -> dict[str, Any]:
    strongest = strongest_attack(result) if result.attacks else None
    accuracy = result.target.accuracy
    context: dict[str, Any] = {
        "result": result,
        "verdict": verdict(result),
        "notes": [*result.data.notes, *result.notes],
        "conditions": condition_rows(result),
        "tpr_headings": [label for _, label in TPR_COLUMNS],
        "attacks": attack_rows(result, strongest),
        "unsupported_note": unsupported_note(result),
        "intervals_note": " ".join(intervals_note(result)).strip(),
        "with_epsilon": any(a.epsilon_lower_bound is not None for a in result.attacks),
        "slices": [],
        "strongest": strongest,
        "failed": failed_conditions_text(result),
        "strongest_tpr": headline_tpr(strongest) if strongest else "n/a",
        "accuracy": {
            "members": percent(accuracy.members),
            "non_members": percent(accuracy.non_members),
            "gap": f"{100 * (accuracy.members - accuracy.non_members):.1f} points",
        },
        "references": reference_rows(result),
        "provenance": provenance(result),
        "policy_document": json.dumps(result.policy.document, indent=2, ensure_ascii=False),
        "classes": [],
        "class_names_differ": False,
        "samples": [],
        "plots": {},
    }
    if strongest is not None:
        context["classes"] = class_rows(result, strongest)
        context["class_names_differ"] = any(
            r.name not in ("", str(r.label)) for r in context["classes"]
        )
        context["samples"] = sample_rows(result, strongest)
        context["slices"] = slice_rows(strongest)
        context["plots"] = plot_svgs(result, strongest)
    return context


@register_format("html", "report.html")
def render_html(result: Result) -> bytes:
    template = environment().get_template(TEMPLATE)
    return template.render(report_context(result)).encode("utf-8")
