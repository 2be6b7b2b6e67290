"""The HTML report's plots: matplotlib figures rendered to SVG text for inlining.

matplotlib is imported inside the functions only, so importing this module (and `mia-audit
--help`) stays fast. Figures are built with the object-oriented API (`Figure`, never pyplot):
no GUI backend is selected and no global backend state changes, so rendering a report inside
another program leaves its matplotlib setup alone. Output is deterministic for the same input:
`svg.hashsalt` is fixed (per figure, so the ids of two figures in one page never collide) and the
SVG metadata (date, creator) is dropped. Text stays text (`svg.fonttype: none`); text that comes
from the user (attack ids) is never parsed as mathtext, so a `$` in an id is shown as written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The log-log ROC's axis range: down to FPR 1e-5, where the LiRA paper reads its figures.
LOG_FLOOR = 1e-5

MEMBER_COLOR = "#c2410c"
NON_MEMBER_COLOR = "#1d4ed8"
CHANCE_COLOR = "#6b7280"

#: Line styles cycle after the ten colours, so up to 40 attacks stay distinguishable.
_LINESTYLES = ("-", "--", "-.", ":")

#: SVG metadata keys matplotlib fills in by default; None drops each one.
_NO_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Curve:
    """One attack's ROC: `fpr`/`tpr` as in result.json; `strong` draws it thicker."""

    label: str
    fpr: Sequence[float]
    tpr: Sequence[float]
    strong: bool = False


def _rc(name: str) -> dict[Any, Any]:
    return {
        "svg.hashsalt": f"mia-audit-{name}",
        "svg.fonttype": "none",
        "svg.image_inline": True,
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e5e7eb",
        "grid.linewidth": 0.6,
        "axes.axisbelow": True,
    }


@contextmanager
def _figure(name: str, width: float, height: float) -> Iterator[Figure]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_rc(name)):
        yield Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure, name: str) -> str:
    """The figure as an `<svg>` element, ready to inline in HTML."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    # Group ids (figure_1, axes_1, ...) repeat in every figure; prefix them so the page's ids
    # stay unique. Referenced ids (clip paths, markers) already differ through the hash salt.
    return svg.replace('<g id="', f'<g id="{name}-').strip()


def _style(index: int, curve: Curve) -> dict[str, Any]:
    return {
        "color": f"C{index % 10}",
        "linestyle": _LINESTYLES[(index // 10) % len(_LINESTYLES)],
        "linewidth": 2.4 if curve.strong else 1.3,
        "zorder": 3 if curve.strong else 2,
    }


def _positive(curve: Curve) -> tuple[list[float], list[float]]:
    """The points a log-log plot can show: FPR 0 or TPR 0 have no place on it (masked)."""
    points = [(f, t) for f, t in zip(curve.fpr, curve.tpr, strict=True) if f > 0 and t > 0]
    return [f for f, _ in points], [t for _, t in points]


def _draw_curves(ax: Axes, curves: Sequence[Curve], log: bool) -> None:
    for index, curve in enumerate(curves):
        fpr, tpr = _positive(curve) if log else (list(curve.fpr), list(curve.tpr))
        ax.plot(fpr, tpr, **_style(index, curve))


def _legend(figure: Figure, ax: Axes, curves: Sequence[Curve]) -> None:
    """Explicit handles and labels (an id starting with `_` must still be listed), as text."""
    handles = [*ax.get_lines()][: len(curves)]
    labels = [c.label + (" (strongest)" if c.strong else "") for c in curves]
    legend = figure.legend(handles, labels, loc="outside lower center", ncols=min(len(curves), 4))
    for text in legend.get_texts():
        text.set_parse_math(False)


def _log_panel(ax: Axes, curves: Sequence[Curve], min_fpr: float | None) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(LOG_FLOOR, 1.0)
    ax.set_ylim(LOG_FLOOR, 1.0)
    if min_fpr is not None and min_fpr > LOG_FLOOR:
        ax.axvspan(LOG_FLOOR, min_fpr, color="#f3f4f6", zorder=0, linewidth=0)
        ax.text(
            (LOG_FLOOR * min_fpr) ** 0.5, 0.3, "FPR below\n1 / non-members:\nnot measurable",
            ha="center", va="center", fontsize=8, color=CHANCE_COLOR,
        )  # fmt: skip
    _draw_curves(ax, curves, log=True)
    ax.plot([LOG_FLOOR, 1.0], [LOG_FLOOR, 1.0], color=CHANCE_COLOR, linestyle=":", lw=1)
    ax.set_xlabel("False positive rate (non-members flagged)")
    ax.set_ylabel("True positive rate (members found)")
    ax.set_title("Log-log: the low-FPR regime")


def _linear_panel(ax: Axes, curves: Sequence[Curve]) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    _draw_curves(ax, curves, log=False)
    ax.plot([0.0, 1.0], [0.0, 1.0], color=CHANCE_COLOR, linestyle=":", lw=1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("Linear")


def roc_svg(curves: Sequence[Curve], min_fpr: float | None) -> str:
    """ROC of every attack, log-log (1e-5..1) and linear, each with the chance line (dotted).

    `min_fpr` is 1 / (number of non-members): no smaller FPR can be measured, and the log panel
    shades that region so an empty left part reads as "no data", not as "no leak".
    """
    name = "roc"
    with _figure(name, 10.0, 5.2) as figure:
        log_ax, linear_ax = figure.subplots(1, 2)
        _log_panel(log_ax, curves, min_fpr)
        _linear_panel(linear_ax, curves)
        _legend(figure, log_ax, curves)
        return _svg(figure, name)


def histogram_svg(
    edges: Sequence[float], members: Sequence[int], non_members: Sequence[int], attack: str
) -> str:
    """Member vs non-member score histograms of one attack, log count axis."""
    name = "histogram"
    with _figure(name, 10.0, 3.6) as figure:
        ax = figure.add_subplot()
        ax.set_yscale("log")
        for counts, color, label in (
            (non_members, NON_MEMBER_COLOR, "non-members"),
            (members, MEMBER_COLOR, "members"),
        ):
            ax.stairs(counts, edges, color=color, linewidth=1.6, label=label)
            ax.stairs(counts, edges, color=color, alpha=0.15, fill=True, baseline=0.5)
        top = max([*members, *non_members, 1])
        ax.set_ylim(0.5, top * 2.0)
        ax.set_xlabel(f"{attack} score (higher = more likely a member)", parse_math=False)
        ax.set_ylabel("Samples (log scale)")
        ax.legend(loc="upper left")
        return _svg(figure, name)


def precision_recall(
    curve: Curve, n_members: int, n_non_members: int
) -> tuple[list[float], list[float]]:
    """Recall (= TPR) and precision = TP / (TP + FP) at each ROC point, from the ROC and the
    class sizes; points where nothing is called a member have no precision and are left out."""
    recall, precision = [], []
    for fpr, tpr in zip(curve.fpr, curve.tpr, strict=True):
        true_positives, false_positives = tpr * n_members, fpr * n_non_members
        if true_positives + false_positives > 0:
            recall.append(tpr)
            precision.append(true_positives / (true_positives + false_positives))
    return recall, precision


def precision_recall_svg(curves: Sequence[Curve], n_members: int, n_non_members: int) -> str:
    """Precision against recall for every attack; the dotted line is chance (the members'
    share of the audit set)."""
    name = "precision-recall"
    with _figure(name, 10.0, 4.2) as figure:
        ax = figure.add_subplot()
        for index, curve in enumerate(curves):
            recall, precision = precision_recall(curve, n_members, n_non_members)
            ax.plot(recall, precision, **_style(index, curve))
        base = n_members / max(1, n_members + n_non_members)
        ax.axhline(base, color=CHANCE_COLOR, linestyle=":", lw=1)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("Recall (members found)")
        ax.set_ylabel("Precision (flagged samples that are members)")
        _legend(figure, ax, curves)
        return _svg(figure, name)
