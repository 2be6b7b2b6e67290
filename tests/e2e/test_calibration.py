"""`reference_training.calibrate` end to end through the console script, on the overfit digits
target (ResNet18, 8 epochs of AdamW) with a recipe guessed 4 times too short: the pilot trains
at most `max_models` candidates, climbs towards the target's epochs, picks the closest, and
records its table in result.json and the terminal summary; a second run loads every candidate
from the cache; `plan` shows the pilot's phase; a tolerance no candidate can
meet is a note naming the distance and the key to change, and under
`preconditions.reference_fit: error` an exit 2 before the reference models train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    BASE_POLICY,
    RunCli,
    merged_policy,
    policy_file,
    without_progress,
    write_small_population,
)

MAX_MODELS = 3
#: The target's recipe (mia_audit.demo) but for its epochs: 2 where the target had 8. The
#: pilot's grid is 1, 2, 3, 4, 6 and 8 epochs; it starts at the guess.
GUESS = {
    "epochs": 2,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 0.001,
    "weight_decay": 0.0,
    "augment": [],
    "threads": 2,  # as tests/e2e/test_e2e_reference.py: the thread count the recipe fits at
}
#: LiRA on reference models whose recipe the pilot calibrates.
AUDIT = merged_policy(
    BASE_POLICY,
    data={"population": "population_small.npz"},
    attacks=["loss", {"name": "lira", "reference_models": 2, "mode": "online"}],
    reference_training={
        **GUESS,
        "calibrate": True,
        "calibration": {"max_models": MAX_MODELS},
    },
)


@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    """The digits target with a 400-sample population (200 samples per reference model)."""
    write_small_population(folder, 400)
    return folder


def calibration_of(folder: Path, name: str) -> dict[str, Any]:
    result = json.loads((folder / f"out-{name}" / "result.json").read_text())
    calibration: dict[str, Any] = result["references"]["calibration"]
    return calibration


@pytest.fixture(scope="module")
def runs(folder: Path, run_cli: RunCli) -> list[tuple[Any, dict[str, Any]]]:
    """The calibrating audit twice: the second finds every candidate in the cache."""
    policy = policy_file(folder, "calibrated", AUDIT)
    outcomes = []
    for _ in range(2):
        completed = run_cli("run", policy)
        assert completed.returncode in (0, 1), completed.stdout + completed.stderr
        outcomes.append((completed, calibration_of(folder, "calibrated")))
    return outcomes


def test_the_pilot_picks_the_closest_of_at_most_max_models(
    runs: list[tuple[Any, dict[str, Any]]],
) -> None:
    completed, calibration = runs[0]
    candidates = calibration["candidates"]
    assert 1 <= len(candidates) <= MAX_MODELS
    assert calibration["max_models"] == MAX_MODELS
    assert all(candidate["trained"] for candidate in candidates)
    recipes = [(c["epochs"], c["weight_decay"], tuple(c["augment"])) for c in candidates]
    assert len(set(recipes)) == len(recipes), "a recipe was tried twice"
    distances = [candidate["distance"] for candidate in candidates]
    assert distances[calibration["chosen"]] == min(distances)
    assert calibration["matched"] == (min(distances) <= calibration["tolerance"])
    assert calibration["stopped"] in ("matched", "budget", "exhausted")
    assert 0.9 < calibration["target_train_accuracy"] <= 1.0
    chosen = candidates[calibration["chosen"]]
    summary = [line for line in completed.stdout.splitlines() if "calibration pilot" in line]
    assert summary and f"epochs {chosen['epochs']}" in summary[0], completed.stdout


def test_the_pilot_starts_at_the_guess_and_climbs_towards_the_targets_epochs(
    runs: list[tuple[Any, dict[str, Any]]],
) -> None:
    calibration = runs[0][1]
    candidates = calibration["candidates"]
    first = candidates[0]
    assert (first["epochs"], first["weight_decay"], first["augment"]) == (2, 0.0, [])
    assert first["train_confidence"] < calibration["target_train_confidence"]
    assert candidates[1]["epochs"] > 2, candidates
    chosen = candidates[calibration["chosen"]]
    assert chosen["epochs"] >= 4 and chosen["distance"] < first["distance"], candidates


def test_a_second_run_loads_from_the_cache_every_candidate_it_can_vouch_for(
    runs: list[tuple[Any, dict[str, Any]]],
) -> None:
    """A candidate trains again only when the cache verifier could not vouch for its model (one
    that fits its samples no better than held-out ones, as 2 epochs do, cannot be told from a
    swapped file); the chosen one, and the run's other reference model, come from the cache."""
    (_, first), (second_run, second) = runs
    keys = ("epochs", "weight_decay", "augment", "distance")
    assert [{k: c[k] for k in keys} for c in second["candidates"]] == [
        {k: c[k] for k in keys} for c in first["candidates"]
    ]
    assert second["chosen"] == first["chosen"]
    assert not second["candidates"][second["chosen"]]["trained"]
    for candidate in second["candidates"]:
        prefix = f"calibration pilot (epochs {candidate['epochs']}, weight_decay 0, augment [])"
        refused = f"{prefix}: cache: reference model"
        assert candidate["trained"] == (refused in second_run.stdout + second_run.stderr), (
            candidate,
            second_run.stderr,
        )
    assert "note: reference models: 0 trained, 2 reused from the cache" in second_run.stderr


def test_plan_shows_the_pilots_phase(folder: Path, run_cli: RunCli) -> None:
    completed = run_cli("plan", policy_file(folder, "planned", AUDIT))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    pilot = [line for line in completed.stdout.splitlines() if "calibration pilot" in line]
    assert pilot and f"at most {MAX_MODELS} models" in pilot[0], completed.stdout


def unreachable(name: str, folder: Path, **sections: Any) -> Path:
    """A calibrating policy whose tolerance no candidate meets, with one candidate."""
    training = {
        **GUESS,
        "calibrate": True,
        "calibration": {"max_models": 1, "tolerance": 1e-6},
    }
    return policy_file(folder, name, AUDIT, reference_training=training, **sections)


def test_a_miss_is_a_note_naming_the_distance_and_the_key(folder: Path, run_cli: RunCli) -> None:
    completed = run_cli("run", unreachable("missed", folder))
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    result = json.loads((folder / "out-missed" / "result.json").read_text())
    calibration = result["references"]["calibration"]
    assert not calibration["matched"] and len(calibration["candidates"]) == 1
    notes = [note for note in result["notes"] if "reference_training.calibrate" in note]
    assert len(notes) == 1, result["notes"]
    best = calibration["candidates"][calibration["chosen"]]
    assert f"is {best['distance']:.3f} away" in notes[0]
    assert "the budget (max_models 1) was spent: raise reference_training.calibration." in notes[0]
    assert notes[0].endswith("the audit goes on with the best candidate")


def test_a_miss_under_reference_fit_error_exits_2(folder: Path, run_cli: RunCli) -> None:
    policy = unreachable("strict", folder, preconditions={"reference_fit": "error"})
    completed = run_cli("run", policy)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = without_progress(completed.stderr)
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], lines
    assert "no candidate recipe came within the tolerance" in errors[0]
    assert "preconditions.reference_fit: error stops the audit here" in errors[0]
    assert "Traceback" not in completed.stderr
    assert not (folder / "out-strict").exists()
