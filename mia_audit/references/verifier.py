"""Whether a reference model may be used: pure functions on its logits and rows.

A model is measured on its IN rows (those its plan trains it on) and its OUT rows (the rest of
its plan's pool, `mia_audit.references.fit.plan_rows`): every row whose logits are at hand, topped
up to `SIDE_ROWS` per side with rows drawn by a generator seeded from the model's key and run
through the model (`Probe`). A cached model must also not fit OUT rows drawn from the OS's
randomness better than the seeded ones (`hidden_training_p`). `verify_cached` gives the verdict;
the thresholds and the record are `mia_audit.references.fit`'s. Cached logits are vouched for by
the spot check (`mia_audit.models.spot_check`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mia_audit.references.fit import (
    SIDE_ROWS,
    ModelFit,
    mann_whitney_less,
    model_fit,
    per_sample_loss,
    plan_problem,
    sample,
    secret_generator,
    seeded_generator,
)

#: The model's logits and the labels of sorted rows, run through the model.
Probe = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: The labels of rows.
Labels = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Measurement:
    """A model's fit, the OUT losses behind it, and the OUT rows it did not look at."""

    fit: ModelFit
    out_losses: np.ndarray
    unseen_out: np.ndarray


@dataclass(frozen=True)
class ModelRows:
    """A model's IN and OUT rows, and its logits at hand (rows 0 .. len(at_hand)-1)."""

    in_rows: np.ndarray
    out_rows: np.ndarray
    at_hand: np.ndarray


def measure(key: str, rows: ModelRows, labels: Labels, probe: Probe) -> Measurement:
    """The model on its IN and OUT rows, topped up with a sample seeded by its key."""
    rng = seeded_generator(key)
    logits_in, labels_in, _ = _side(rows.in_rows, rows.at_hand, rng, labels, probe)
    logits_out, labels_out, unseen_out = _side(rows.out_rows, rows.at_hand, rng, labels, probe)
    fit = model_fit(logits_in, labels_in, logits_out, labels_out)
    return Measurement(fit, per_sample_loss(logits_out, labels_out), unseen_out)


def _side(
    rows: np.ndarray, at_hand: np.ndarray, rng: np.random.Generator, labels: Labels, probe: Probe
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits and labels of one side (the rows at hand, topped up), and the rows left."""
    known, rest = rows[rows < len(at_hand)], rows[rows >= len(at_hand)]
    logits, side_labels = [at_hand[known]], [labels(known)]
    extra = sample(rest, SIDE_ROWS - len(known), rng)
    if len(extra):
        extra_logits, extra_labels = probe(extra)
        logits.append(extra_logits)
        side_labels.append(extra_labels)
    return np.concatenate(logits), np.concatenate(side_labels), np.setdiff1d(rest, extra)


def hidden_training_p(
    measured: Measurement, probe: Probe, rng: np.random.Generator | None = None
) -> float | None:
    """p-value that the model fits OUT rows nobody could predict (drawn from the OS's
    randomness, or `rng`, among those the seeded sample left out) better than the seeded OUT
    rows: small when it was trained on rows its plan holds out. None when none are left."""
    rows = sample(measured.unseen_out, SIDE_ROWS, rng or secret_generator())
    if not len(rows):
        return None
    logits, labels = probe(rows)
    return mann_whitney_less(per_sample_loss(logits, labels), measured.out_losses)


@dataclass(frozen=True)
class Verdict:
    """A cached model's fit, and why it may not be used (None: it may)."""

    fit: ModelFit
    problem: str | None

    @property
    def accepted(self) -> bool:
        return self.problem is None


def verify_cached(
    key: str,
    rows: ModelRows,
    labels: Labels,
    probe: Probe,
    *,
    plan_checked: bool = False,
    rng: np.random.Generator | None = None,
) -> Verdict:
    """Whether a cached model is the model its plan describes. `plan_checked`: this run has
    already vouched for it (trained or checked it), so only its figures are measured."""
    measured = measure(key, rows, labels, probe)
    if plan_checked:
        return Verdict(measured.fit, None)
    hidden = hidden_training_p(measured, probe, rng)
    return Verdict(measured.fit, plan_problem(measured.fit, hidden))
