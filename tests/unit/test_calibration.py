"""The calibration pilot's pure parts (docs/calibration.md): the four fit figures against a
direct float64 computation, the search's promises on random fit landscapes (budget, distinct
candidates, the closest one chosen, a stop at the first match, determinism, the plan's bound),
the grid the settings derive from a recipe, and the floor's hold on a calibrating policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from mia_audit.errors import PolicyError
from mia_audit.models.settings import ModelSpec
from mia_audit.policy.floor_file import load_floor
from mia_audit.policy.floor_rules import check_against_floor
from mia_audit.policy.loading import parse_policy
from mia_audit.references.calibration import (
    LOG_ODDS_SPAN,
    Candidate,
    CandidateGrid,
    FitFigures,
    distance,
    figures_of,
    pilot_epochs_bound,
    search,
    wanted_moves,
)
from mia_audit.references.fit import model_fit
from mia_audit.references.settings import CalibrationGrid, ReferenceTraining, TrainingRecipe

GRID = CandidateGrid(
    epochs=(5, 10, 20, 40, 80), weight_decay=(0.0, 5e-4, 5e-3), augment=((), ("crop", "flip"))
)


# --- figures --------------------------------------------------------------------------------


@st.composite
def logits_and_labels(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    n, classes = draw(st.integers(1, 40)), draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 60.0]))  # 60: margins where exp underflows
    return rng.normal(size=(n, classes)) * scale, rng.integers(0, classes, size=n)


@given(logits_and_labels(), logits_and_labels())
@settings(max_examples=60, deadline=None)
def test_figures_are_accuracy_and_mean_true_class_probability(
    inside: tuple[np.ndarray, np.ndarray], outside: tuple[np.ndarray, np.ndarray]
) -> None:
    figures = figures_of(*inside, *outside)
    for (logits, labels), accuracy, confidence in (
        (inside, figures.train_accuracy, figures.train_confidence),
        (outside, figures.held_out_accuracy, figures.held_out_confidence),
    ):
        z = logits.astype(np.float64)
        rows = np.arange(len(labels))
        others = np.where(np.eye(z.shape[1], dtype=bool)[labels], -np.inf, z)
        log_odds = z[rows, labels] - logsumexp(others, axis=1)  # log p - log(1 - p)
        direct = np.clip(log_odds, -LOG_ODDS_SPAN, LOG_ODDS_SPAN) / LOG_ODDS_SPAN
        assert accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == labels))
        assert confidence == pytest.approx(direct.mean(), rel=1e-9, abs=1e-12)
        probability = softmax(z, axis=1)[rows, labels]
        assert np.all((log_odds > 0) == (probability > 0.5))  # the oracle itself is log-odds


@given(logits_and_labels(), logits_and_labels())
@settings(max_examples=30, deadline=None)
def test_a_models_fit_carries_the_same_confidences(
    inside: tuple[np.ndarray, np.ndarray], outside: tuple[np.ndarray, np.ndarray]
) -> None:
    fit = model_fit(*inside, *outside)
    figures = figures_of(*inside, *outside)
    assert fit.train_confidence == pytest.approx(figures.train_confidence, rel=1e-6, abs=1e-9)
    assert fit.held_out_confidence == pytest.approx(figures.held_out_confidence, rel=1e-6, abs=1e-9)


def test_distance_is_the_largest_gap_of_the_four() -> None:
    a = FitFigures(1.0, 0.5, 0.9, 0.4)
    b = FitFigures(0.9, 0.55, 0.6, 0.45)
    assert distance(a, b) == pytest.approx(0.3)
    assert distance(a, a) == 0.0


# --- the search -----------------------------------------------------------------------------

figure = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def landscapes(draw: Any) -> dict[Candidate, FitFigures]:
    """Random figures for every grid point (no structure at all: the worst case)."""
    values = draw(st.lists(st.tuples(figure, figure, figure, figure), min_size=30, max_size=30))
    points = [
        (e, w, a)
        for e in range(len(GRID.epochs))
        for w in range(len(GRID.weight_decay))
        for a in range(len(GRID.augment))
    ]
    return {GRID.candidate(p): FitFigures(*values[i]) for i, p in enumerate(points)}


@given(
    landscapes(),
    st.tuples(figure, figure, figure, figure),
    st.tuples(st.integers(0, 4), st.integers(0, 2), st.integers(0, 1)),
    st.floats(0.01, 0.3),
    st.integers(1, 8),
)
@settings(max_examples=150, deadline=None)
def test_the_search_keeps_its_promises(
    landscape: dict[Candidate, FitFigures],
    target_values: tuple[float, float, float, float],
    start: tuple[int, int, int],
    tolerance: float,
    max_models: int,
) -> None:
    target = FitFigures(*target_values)
    measured: list[Candidate] = []

    def measure(candidate: Candidate) -> FitFigures:
        measured.append(candidate)
        return landscape[candidate]

    outcome = search(GRID, start, measure, target, tolerance, max_models)
    tried = outcome.tried
    assert 1 <= len(tried) <= max_models
    assert [t.candidate for t in tried] == measured  # one model per candidate, none twice
    assert len({t.position for t in tried}) == len(tried)
    assert tried[0].position == start
    distances = [t.distance for t in tried]
    assert outcome.chosen == distances.index(min(distances))
    assert outcome.matched == (min(distances) <= tolerance)
    matches = [i for i, d in enumerate(distances) if d <= tolerance]
    if matches:  # it stops at the first match
        assert matches == [len(tried) - 1] and outcome.stopped == "matched"
    else:
        assert outcome.stopped in ("budget", "exhausted")
        assert outcome.stopped != "budget" or len(tried) == max_models
    again = search(GRID, start, lambda c: landscape[c], target, tolerance, max_models)
    assert again == outcome  # the same figures give the same walk
    bound = pilot_epochs_bound(GRID, start, max_models)
    assert sum(t.candidate.epochs for t in tried) <= bound


def monotone(candidate: Candidate) -> FitFigures:
    """A plausible fit: longer training fits more; regularisation fits less and narrows the
    gap; without augmentation a model memorises its samples as they are (a flip gap)."""
    length = np.log2(candidate.epochs / 5) / 4  # 0 .. 1 over the grid
    regularisation = 0.15 * len(candidate.augment) + 20 * candidate.weight_decay
    train = float(np.clip(0.5 + 0.5 * length - regularisation, 0, 1))
    held = float(np.clip(0.45 + 0.1 * length - regularisation / 3, 0, 1))
    flips = 0.0 if candidate.augment else 0.4 * (train - held)
    return FitFigures(train, held, train * 0.9, held * 0.8, flips)


@pytest.mark.parametrize("truth", [(3, 0, 0), (3, 1, 0), (4, 1, 1), (1, 1, 1), (2, 0, 0)])
def test_a_reachable_recipe_is_found_within_the_default_budget(
    truth: tuple[int, int, int],
) -> None:
    """Two steps from the default recipe (20 epochs, 5e-4, flip and crop): longer, shorter,
    without augmentation (the flip gap says so at once), both."""
    start = GRID.start(TrainingRecipe())
    target = monotone(GRID.candidate(truth))
    outcome = search(GRID, start, monotone, target, 0.02, max_models=3)
    assert outcome.matched, outcome
    assert outcome.best.distance <= 0.02


def test_a_target_beyond_the_grid_names_the_knob_that_ran_out() -> None:
    target = FitFigures(1.0, 0.6, 0.99, 0.5)  # fits more than 80 epochs without regularisation
    outcome = search(GRID, (4, 0, 0), monotone, target, 0.01, max_models=3)
    assert not outcome.matched
    assert outcome.out_of_range == ("epochs (more epochs than the grid's 80)",)


def test_the_moves_point_towards_the_target() -> None:
    target = FitFigures(1.0, 0.5, 0.95, 0.45)
    too_short = FitFigures(0.7, 0.5, 0.6, 0.45)  # fits its samples too little, generalises alike
    assert wanted_moves(too_short, target, 0.05)[0].wants == "less augmentation"
    too_long = FitFigures(1.0, 0.7, 0.99, 0.7)  # fits both sides more than the target
    assert wanted_moves(too_long, FitFigures(0.8, 0.5, 0.6, 0.45), 0.05)[0].wants == (
        "fewer epochs"
    )
    generalises_better = FitFigures(1.0, 0.7, 0.95, 0.6)
    assert wanted_moves(generalises_better, target, 0.05)[0].wants == "less augmentation"
    memorises_views = FitFigures(1.0, 0.5, 0.95, 0.6, flip_gap=0.3)  # the target saw flips
    assert (
        wanted_moves(memorises_views, FitFigures(1.0, 0.5, 0.95, 0.45, 0.0), 0.05)[0].wants
        == "more augmentation"
    )
    assert wanted_moves(target, target, 0.05) == ()


def test_the_start_is_the_grid_point_nearest_the_policys_recipe() -> None:
    recipe = TrainingRecipe(epochs=30, weight_decay=1e-4, augment=("flip",))
    assert GRID.start(recipe) == (3, 0, 1)  # 40 is nearer 30 in ratio; flip is in flip + crop
    assert GRID.start(TrainingRecipe(epochs=80, weight_decay=0.0, augment=())) == (4, 0, 0)


# --- settings -------------------------------------------------------------------------------


def test_the_grid_derives_from_the_recipe() -> None:
    grid = CalibrationGrid()
    default = TrainingRecipe()
    assert grid.epochs_of(default) == (5, 10, 15, 20, 30, 40, 60, 80)
    assert grid.weight_decays_of(default) == (0.0, 5e-4, 5e-3)
    assert grid.augments_of(default) == ((), ("crop", "flip"))
    bare = TrainingRecipe(epochs=2, weight_decay=0.0, augment=())
    assert grid.epochs_of(bare) == (1, 2, 3, 4, 6, 8)
    assert grid.weight_decays_of(bare) == (0.0, 5e-4, 5e-3)
    assert grid.augments_of(bare) == ((), ("crop", "flip"))
    chosen = CalibrationGrid(epochs=(30, 10, 10), augment=(("flip", "crop"), ("flip",)))
    assert chosen.epochs_of(default) == (10, 30)
    assert chosen.augments_of(default) == (("flip",), ("crop", "flip"))


def test_calibrating_does_not_change_a_recipes_cache_key() -> None:
    model = ModelSpec(path=Path("m.pt"), architecture="resnet18", num_classes=10)
    plain = ReferenceTraining().resolve(model, 100)
    calibrating = ReferenceTraining(calibrate=True, calibration={"max_models": 5})
    assert calibrating.resolve(model, 100).cache_key() == plain.cache_key()


# --- the floor ------------------------------------------------------------------------------

RECIPE = {"architecture": "small_cnn:small_cnn", "epochs": 8}


def calibrating_policy(**calibration: Any) -> Any:
    return parse_policy(
        {
            "version": 1,
            "name": "pr",
            "model": {"path": "m.onnx"},
            "data": {"members": "a.npz", "non_members": "b.npz"},
            "preprocessing": "none",
            "attacks": [{"name": "lira", "reference_models": 4}],
            "gate": {"max_auc": 0.6},
            "reference_training": {**RECIPE, "calibrate": True, "calibration": calibration},
        },
        base_dir=Path("/nonexistent"),
    )


def floor_problems(tmp_path: Path, policy: Any, recipe: dict[str, Any]) -> list[str]:
    path = tmp_path / "floor.yaml"
    floor = {"version": 1, "gate": {"max_auc": 0.6}, "reference_training": recipe}
    path.write_text(yaml.safe_dump(floor))
    try:
        check_against_floor(policy, load_floor(path))
    except PolicyError as error:
        return error.problems
    return []


def test_a_floors_pin_binds_the_pilots_grid(tmp_path: Path) -> None:
    found = floor_problems(tmp_path, calibrating_policy(), RECIPE)
    assert found == [
        "reference_training.calibration.epochs: the calibration pilot may try "
        "[2, 4, 6, 8, 12, 16, 24, 32], but the floor (floor.yaml) pins epochs 8; set "
        "reference_training.calibration.epochs: [8] (or calibrate: false)"
    ]
    assert floor_problems(tmp_path, calibrating_policy(epochs=[8]), RECIPE) == []


def test_a_floors_pilot_settings_may_only_be_tightened(tmp_path: Path) -> None:
    floor = {"calibrate": True, "calibration": {"tolerance": 0.03, "max_models": 4}}
    loose = calibrating_policy(tolerance=0.05, max_models=2)
    found = "\n".join(floor_problems(tmp_path, loose, floor))
    assert "reference_training.calibration.tolerance: 0.05 is above" in found
    assert "reference_training.calibration.max_models: 2 is below" in found
    tight = calibrating_policy(tolerance=0.02, max_models=6)
    assert floor_problems(tmp_path, tight, floor) == []


def test_less_than_no_augmentation_is_passed_over_for_the_knob_that_ran_out() -> None:
    """Fitting its samples too little without augmentation wants less augmentation first, which
    no grid has; the knob that ran out is the epochs, at the grid's end."""
    target = FitFigures(1.0, 0.9, 0.5, 0.3)
    best = FitFigures(1.0, 0.9, 0.3, 0.28)  # at 80 epochs, no decay, no augmentation
    outcome = search(GRID, (4, 0, 0), lambda candidate: best, target, 0.05, max_models=1)
    assert wanted_moves(best, target, 0.05)[0].wants == "less augmentation"
    assert outcome.out_of_range == ("epochs (more epochs than the grid's 80)",)
