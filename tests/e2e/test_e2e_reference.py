"""LiRA, RMIA and shadow models end to end through `mia-audit run` on the overfit digits target,
with a few reference models trained with the target's own recipe: they beat chance, a second
run trains nothing, and missing data or a missing reference architecture exit 2 with a message
saying what to add.

The cache is never a source of truth: swapped model files (with consistent integrity records)
and a truncated one are refused and retrained, giving the honest result, and the run after is
clean. A recipe too short to reproduce the target's fit is named (`reference_training.epochs`),
and `preconditions.reference_fit: error` makes it exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mia_audit.store.cache import model_store
from tests.conftest import (
    BASE_POLICY,
    DROP,
    RunCli,
    merged_policy,
    notes_besides_outputs,
    policy_file,
    without_keys,
    without_progress,
    write_small_population,
)

#: The target's own recipe (mia_audit.demo: ResNet18, AdamW, no augmentation); the architecture
#: defaults to model.architecture.
RECIPE = {
    "epochs": 8,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 0.001,
    "weight_decay": 0.0,
    "augment": [],
    # The thread count these tests were written for (torch's default on a 2-core machine): at
    # one thread a model of this recipe can fit its samples too little to be vouched for.
    "threads": 2,
}
ATTACKS: list[Any] = [
    "loss",
    {"name": "lira", "reference_models": 2, "mode": "online"},
    {"name": "lira", "id": "lira_offline", "reference_models": 4, "mode": "offline"},
    {"name": "rmia", "reference_models": 4},
    {"name": "shadow", "shadow_models": 4},
]
REFERENCE_ATTACKS = ("lira", "lira_offline", "rmia", "shadow")


#: The reference attacks on a 400-sample population.
AUDIT = merged_policy(
    BASE_POLICY,
    data={"population": "population_small.npz"},
    attacks=ATTACKS,
    reference_training=RECIPE,
)


@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    """The digits target with a 400-sample population (enough for 4 shadow models' halves)."""
    write_small_population(folder, 400)
    return folder


@pytest.fixture(scope="module")
def runs(folder: Path, run_cli: RunCli) -> list[tuple[int, str, dict[str, Any]]]:
    """The same audit twice: the second finds every model and logit in the cache."""
    policy = policy_file(folder, "reference", AUDIT)
    outcomes = []
    for _ in range(2):
        completed = run_cli("run", policy)
        assert "Traceback" not in completed.stderr, completed.stderr
        result = json.loads((folder / "out-reference" / "result.json").read_text())
        outcomes.append((completed.returncode, completed.stdout + completed.stderr, result))
    return outcomes


def test_reference_attacks_beat_chance(runs: list[tuple[int, str, dict[str, Any]]]) -> None:
    code, output, result = runs[0]
    assert code == 0, output
    attacks = {attack["id"]: attack for attack in result["attacks"]}
    for label in REFERENCE_ATTACKS:
        assert attacks[label]["auc"] > 0.55, (label, attacks[label]["auc"])
    assert attacks["lira"]["parameters"]["variance_used"] == "global"
    assert attacks["lira_offline"]["parameters"]["reference_models"] == 4
    assert 0 <= attacks["rmia"]["parameters"]["offline_a_used"] <= 1
    assert attacks["shadow"]["parameters"]["shadow_models"] == 4
    assert "reference models" in result["timings"]
    assert "reference models: 6 trained" in output  # 2 online + 4 offline, shared by 3 attacks


def test_second_run_trains_nothing(runs: list[tuple[int, str, dict[str, Any]]]) -> None:
    (_, _, first), (code, output, second) = runs
    assert code == 0, output
    assert "reference models: 0 trained, 6 reused from the cache" in output
    words = output.lower().replace("reference_training", "").replace("training accuracy", "")
    assert "training" not in words
    for before, after in zip(first["attacks"], second["attacks"], strict=True):
        assert before["auc"] == after["auc"]


def test_no_population_and_too_few_non_members_exits_2(folder: Path, run_cli: RunCli) -> None:
    attacks = [{"name": "lira", "mode": "offline"}]
    policy = policy_file(folder, "no-population", AUDIT, data={"population": DROP}, attacks=attacks)
    completed = run_cli("run", policy)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    message = completed.stderr
    assert "population samples" in message and "no data.population" in message
    assert "Traceback" not in message


def test_too_small_a_population_exits_2(folder: Path, run_cli: RunCli) -> None:
    recipe = {**RECIPE, "train_size": 300}
    policy = policy_file(folder, "small-population", AUDIT, reference_training=recipe)
    completed = run_cli("run", policy)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "data.population" in completed.stderr and "'shadow' needs 600" in completed.stderr


def test_onnx_target_without_reference_architecture_exits_2(folder: Path, run_cli: RunCli) -> None:
    policy = policy_file(
        folder,
        "onnx",
        AUDIT,
        model={"path": "target.onnx", "architecture": DROP, "num_classes": DROP},
        attacks=["loss", {"name": "rmia", "reference_models": 2}],
    )
    for command in ("validate", "run"):
        completed = run_cli(command, policy)
        assert completed.returncode == 2, completed.stdout + completed.stderr
        assert "reference_training.architecture" in completed.stderr
        assert "'rmia' trains reference models" in completed.stderr


# --- the cache is a speed-up, never a source of truth -------------------------------------------

#: Keys of result.json that legitimately differ between runs (and the notes these tests read).
VARYING = frozenset({"seconds", "timings", "evaluated_on", "notes", "path", "dir"})



def without_varying(value: Any) -> Any:
    return without_keys(value, VARYING)


def same_audit(result: dict[str, Any], other: dict[str, Any]) -> bool:
    """Equal but for what must vary; result.json's own sha256 covers the timings and notes."""
    first, second = ({k: v for k, v in r.items() if k != "sha256"} for r in (result, other))
    return bool(without_varying(first) == without_varying(second))


def model_keys(result: dict[str, Any], mode: str) -> list[str]:
    """The keys of the reference models of a mode, as result.json records them."""
    (group,) = [group for group in result["references"]["sets"] if group["mode"] == mode]
    return [model["key"] for model in group["models"]]


@pytest.fixture(scope="module")
def tampered(
    folder: Path,
    runs: list[tuple[int, str, dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
    run_cli: RunCli,
) -> list[tuple[int, str, dict[str, Any]]]:
    """A copy of the audited folder whose cache was tampered with, audited twice: the online
    pair of models swapped and two offline models swapped (integrity records rewritten to
    match, logits removed, so only the models' behaviour can tell), a third offline model
    truncated."""
    copy = tmp_path_factory.mktemp("tampered") / "t"
    shutil.copytree(folder, copy)
    honest = runs[0][2]
    online, offline = model_keys(honest, "online"), model_keys(honest, "offline")
    models = model_store(copy / ".mia-cache")
    for first, second in ((online[0], online[1]), (offline[0], offline[1])):
        one, other = models.get(first), models.get(second)
        assert one is not None and other is not None
        models.put(first, other)
        models.put(second, one)
    path = models.path(offline[2])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    shutil.rmtree(copy / ".mia-cache" / "logits")
    policy = copy / "reference.yaml"
    outcomes = []
    for _ in range(2):
        completed = run_cli("run", policy)
        assert "Traceback" not in completed.stderr, completed.stderr
        result = json.loads((copy / "out-reference" / "result.json").read_text())
        outcomes.append((completed.returncode, completed.stderr, result))
    return outcomes


def test_swapped_and_damaged_models_are_retrained_and_give_the_honest_result(
    runs: list[tuple[int, str, dict[str, Any]]],
    tampered: list[tuple[int, str, dict[str, Any]]],
) -> None:
    honest_code, _, honest = runs[0]
    code, stderr, result = tampered[0]
    assert code == honest_code
    online, offline = model_keys(honest, "online"), model_keys(honest, "offline")
    notes = [line.removeprefix("note: ") for line in without_progress(stderr) if "cache:" in line]
    assert notes_besides_outputs(result) == notes and len(notes) == 5, stderr
    for key in (*online, *offline[:2]):
        (note,) = [note for note in notes if f"reference model {key[:12]} " in note]
        assert note.startswith(
            f"cache: reference model {key[:12]} does not fit its own training samples better "
            "than held-out ones (one-sided Mann-Whitney p = "
        )
        assert "not the model its plan describes" in note and "not used, retrained" in note
    (truncated,) = [note for note in notes if f"reference model {offline[2][:12]} " in note]
    assert "does not match its integrity record (sha256 differs" in truncated
    assert "reference models: 5 trained, 1 reused from the cache" in stderr
    assert same_audit(result, honest)  # the honest audit, exactly


def test_the_run_after_the_tampered_one_is_clean(
    runs: list[tuple[int, str, dict[str, Any]]],
    tampered: list[tuple[int, str, dict[str, Any]]],
) -> None:
    code, stderr, result = tampered[1]
    assert code == runs[0][0]
    assert (
        not any("cache:" in line for line in without_progress(stderr))
        and notes_besides_outputs(result) == []
    )
    assert "reference models: 0 trained, 6 reused from the cache" in stderr
    assert same_audit(result, runs[0][2])


def test_reference_models_fit_is_recorded_beside_the_targets(
    runs: list[tuple[int, str, dict[str, Any]]],
) -> None:
    _, output, result = runs[0]
    fit = result["references"]
    assert fit["target_members"] == result["target"]["accuracy"]["members"]
    assert fit["reproduces_target"] and fit["train"] >= fit["target_members"] - 0.1
    assert "reference_training:" not in output
    sets = {group["mode"]: group for group in fit["sets"]}
    assert sets["online"]["attacks"] == ["lira"] and sets["online"]["count"] == 2
    assert sorted(sets["offline"]["attacks"]) == ["lira_offline", "rmia", "shadow"]
    for group in fit["sets"]:
        assert len(group["models"]) == group["count"]
        for model in group["models"]:
            assert 0 <= model["held_out"] <= model["train"] <= 1 and model["n_train"] > 100


@pytest.fixture(scope="module")
def short_recipe(folder: Path, run_cli: RunCli) -> dict[str, tuple[int, str, Path]]:
    """One epoch of the target's recipe, with the precondition warning and as an error."""
    recipe = {**RECIPE, "epochs": 1}
    attacks = ["loss", {"name": "lira", "reference_models": 2, "mode": "online"}]
    outcomes = {}
    for on_failure in ("warn", "error"):
        name = f"short-{on_failure}"
        policy = policy_file(
            folder,
            name,
            AUDIT,
            attacks=attacks,
            reference_training=recipe,
            preconditions={"reference_fit": on_failure},
        )
        completed = run_cli("run", policy)
        outcomes[on_failure] = (
            completed.returncode,
            completed.stdout + completed.stderr,
            folder / f"out-{name}",
        )
    return outcomes


def test_a_too_short_recipe_is_named(short_recipe: dict[str, tuple[int, str, Path]]) -> None:
    code, output, out_dir = short_recipe["warn"]
    assert code == 0, output  # the gate (max AUC 0.99) holds; the warning does not change it
    result = json.loads((out_dir / "result.json").read_text())
    fit = result["references"]
    assert not fit["reproduces_target"] and fit["train"] < fit["target_members"] - 0.1
    (warning,) = [note for note in result["notes"] if note.startswith("reference_training:")]
    assert f"note: {warning}" in output
    assert warning.startswith(
        "reference_training: the reference models fit their own training samples far less "
        f"than the target fits its members (training accuracy {fit['train']:.3f} vs "
        f"{fit['target_members']:.3f}, more than 0.1 below), so the reference attacks (lira) "
        "understate the risk; train them like the target: raise reference_training.epochs "
        "(now 1)"
    )
    assert "reference models: training accuracy" in output and "below the target's" in output


def test_a_too_short_recipe_exits_2_when_the_policy_says_so(
    short_recipe: dict[str, tuple[int, str, Path]],
) -> None:
    code, output, out_dir = short_recipe["error"]
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: reference_training: ")
    assert "raise reference_training.epochs (now 1)" in errors[0]
    assert errors[0].endswith(
        "preconditions.reference_fit: error stops the audit here (warn lets it run with this "
        "warning)"
    )
    assert not out_dir.exists() or not any(out_dir.iterdir())  # no report
