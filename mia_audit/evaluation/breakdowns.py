"""From membership scores to the numbers in the result (pure numpy on top of `metrics`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mia_audit.evaluation import metrics
from mia_audit.result import ClassBreakdown, Histogram, Roc, VulnerableSample

#: FPRs every attack reports, beside the ones the gate asks for.
STANDARD_FPRS = (0.05, 0.01, 0.001, 0.0)
HISTOGRAM_BINS = 40
MOST_VULNERABLE = 20


def report_fprs(extra: Sequence[float] = ()) -> list[float]:
    return sorted(set(STANDARD_FPRS) | set(extra), reverse=True)


def downsampled_roc(is_member: np.ndarray, scores: np.ndarray) -> Roc:
    roc = metrics.downsample_roc(metrics.roc_curve(is_member, scores))
    return Roc(fpr=[float(v) for v in roc.fpr], tpr=[float(v) for v in roc.tpr])


def score_histogram(is_member: np.ndarray, scores: np.ndarray) -> Histogram:
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    members, _ = np.histogram(scores[is_member], bins=edges)
    non_members, _ = np.histogram(scores[~is_member], bins=edges)
    return Histogram(
        bin_edges=[float(e) for e in edges],
        members=[int(c) for c in members],
        non_members=[int(c) for c in non_members],
    )


def per_class(
    is_member: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None,
    fprs: Sequence[float],
) -> list[ClassBreakdown]:
    rows = []
    for label in np.unique(labels):
        in_class = labels == label
        members = is_member[in_class]
        both = bool(members.any() and not members.all())
        tprs = metrics.tpr_at_fprs(members, scores[in_class], fprs) if both else {}
        name = class_names[label] if class_names and label < len(class_names) else None
        rows.append(
            ClassBreakdown(
                label=int(label),
                name=name,
                n_members=int(members.sum()),
                n_non_members=int((~members).sum()),
                auc=metrics.auc(members, scores[in_class]) if both else None,
                tpr_at_fpr={metrics.fpr_key(f): tprs.get(f) for f in fprs},
            )
        )
    return rows


def most_vulnerable(
    is_member: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    limit: int = MOST_VULNERABLE,
) -> list[VulnerableSample]:
    """The members the attack singles out most confidently (highest scores)."""
    member_index = np.flatnonzero(is_member)
    order = member_index[np.argsort(-scores[member_index], kind="stable")][:limit]
    non_member_scores = np.sort(scores[~is_member])
    below = np.searchsorted(non_member_scores, scores[order], side="left")
    fraction = below / max(len(non_member_scores), 1)
    return [
        VulnerableSample(
            id=str(ids[i]), label=int(labels[i]), score=float(scores[i]), non_members_below=float(f)
        )
        for i, f in zip(order, fraction, strict=True)
    ]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=-1) == labels).mean()) if len(labels) else float("nan")
