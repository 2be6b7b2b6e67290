"""The verifier on arrays, without training: a model whose logits fit its IN rows is accepted,
one in another model's slot (it fits the OUT rows) is refused, one trained on held-out rows
beyond the seeded sample is refused by the secret draw, and the figures are scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from mia_audit.references.fit import SIDE_ROWS, per_sample_loss, sample, seeded_generator
from mia_audit.references.verifier import ModelRows, measure, verify_cached

KEY = "ab" * 32
CLASSES = 4
N_ROWS = 2000
RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, CLASSES, N_ROWS)


def logits_fitting(fitted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N_ROWS, C) logits: rows in `fitted` put 4 more on their label than noise does, the
    rest are noise (about chance)."""
    logits = rng.normal(0.0, 1.0, (N_ROWS, CLASSES))
    logits[fitted, LABELS[fitted]] += 4.0
    return logits


class TableModel:
    """A "model" that answers from a table of logits, and records the rows it was asked for."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.asked: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.asked.append(rows)
        return self.table[rows], LABELS[rows]


def labels(rows: np.ndarray) -> np.ndarray:
    return np.asarray(LABELS[rows])


IN_ROWS = np.arange(0, N_ROWS, 2)
OUT_ROWS = np.arange(1, N_ROWS, 2)


def rows_with(table: np.ndarray, at_hand: int = 100) -> ModelRows:
    return ModelRows(IN_ROWS, OUT_ROWS, table[:at_hand])


def test_a_model_that_fits_its_plan_is_accepted_with_its_figures() -> None:
    table = logits_fitting(IN_ROWS, np.random.default_rng(0))
    model = TableModel(table)
    verdict = verify_cached(KEY, rows_with(table), labels, model)
    assert verdict.accepted and verdict.problem is None
    fit = verdict.fit
    assert fit.fits_plan and fit.p_value < 1e-20
    assert fit.n_train == fit.n_held_out == SIDE_ROWS
    assert fit.train_accuracy > 0.9 and fit.held_out_accuracy < 0.5
    # rows at hand are not asked for again; what is asked for is sorted and beyond them
    asked = np.concatenate(model.asked)
    assert (asked >= 100).all() and all((np.diff(r) > 0).all() for r in model.asked)


def test_a_model_in_another_slot_is_refused() -> None:
    table = logits_fitting(OUT_ROWS, np.random.default_rng(1))  # trained on the complement
    verdict = verify_cached(KEY, rows_with(table), labels, TableModel(table))
    assert not verdict.accepted and not verdict.fit.fits_plan
    assert verdict.problem is not None
    assert verdict.problem.startswith(
        "does not fit its own training samples better than held-out ones (one-sided "
        f"Mann-Whitney p = {verdict.fit.p_value:.2g} on {SIDE_ROWS} + {SIDE_ROWS} samples)"
    )


def test_a_model_trained_on_held_out_rows_beyond_the_seeded_sample_is_refused() -> None:
    """Whoever wrote the cache can compute the seeded sample: a model that fits IN rows and
    every OUT row except those passes the seeded figures, and the secret draw refuses it."""
    rng = seeded_generator(KEY)
    in_known, in_rest = IN_ROWS[IN_ROWS < 100], IN_ROWS[IN_ROWS >= 100]
    out_known, out_rest = OUT_ROWS[OUT_ROWS < 100], OUT_ROWS[OUT_ROWS >= 100]
    sample(in_rest, SIDE_ROWS - len(in_known), rng)
    measured_out = np.concatenate([out_known, sample(out_rest, SIDE_ROWS - len(out_known), rng)])
    hidden = np.setdiff1d(OUT_ROWS, measured_out)
    table = logits_fitting(np.concatenate([IN_ROWS, hidden]), np.random.default_rng(2))
    verdict = verify_cached(
        KEY, ModelRows(IN_ROWS, OUT_ROWS, table[:100]), labels, TableModel(table)
    )
    assert verdict.fit.fits_plan  # the seeded figures alone would accept it
    assert verdict.problem is not None and "fits samples its plan holds out" in verdict.problem
    assert verdict.problem.endswith("trained on more than its plan says")


def test_a_model_this_run_vouched_for_keeps_its_figures_without_the_secret_draw() -> None:
    table = logits_fitting(OUT_ROWS, np.random.default_rng(3))
    model = TableModel(table)
    verdict = verify_cached(KEY, rows_with(table), labels, model, plan_checked=True)
    assert verdict.accepted and not verdict.fit.fits_plan
    assert len(model.asked) == 2  # the two top-ups, no secret draw


@pytest.mark.parametrize("at_hand", [0, 100, N_ROWS])
def test_the_figures_are_the_seeded_sample_s_and_scipy_s(at_hand: int) -> None:
    table = logits_fitting(IN_ROWS[: N_ROWS // 4], np.random.default_rng(4))
    measured = measure(KEY, rows_with(table, at_hand), labels, TableModel(table))
    again = measure(KEY, rows_with(table, at_hand), labels, TableModel(table))
    assert measured.fit == again.fit  # seeded by the key: the same in every run
    rng = seeded_generator(KEY)
    sides = []
    for side in (IN_ROWS, OUT_ROWS):
        known, rest = side[side < at_hand], side[side >= at_hand]
        sides.append(np.sort(np.concatenate([known, sample(rest, SIDE_ROWS - len(known), rng)])))
    loss_in, loss_out = (per_sample_loss(table[rows], LABELS[rows]) for rows in sides)
    expected = mannwhitneyu(loss_in, loss_out, alternative="less", method="asymptotic").pvalue
    assert measured.fit.p_value == pytest.approx(expected, rel=1e-9)
    accuracy_in = (table[sides[0]].argmax(axis=1) == LABELS[sides[0]]).mean()
    assert measured.fit.train_accuracy == pytest.approx(accuracy_in)
    np.testing.assert_allclose(np.sort(measured.out_losses), np.sort(loss_out))
    assert len(np.intersect1d(measured.unseen_out, sides[1])) == 0
    assert len(measured.unseen_out) == len(OUT_ROWS) - len(sides[1])
