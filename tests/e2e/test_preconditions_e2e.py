"""The preconditions through the console script, on the real leaking digits target.

Each case is a mistake a careless or hostile user makes; before these checks every one of them
exited 0 on a target that clearly leaks (loss AUC ~0.8 against a gate of max_auc 0.6). Now
each exits 2 with one line saying what to fix, or, where the policy relaxes a check on purpose,
runs and says so in the result's notes.
"""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
import yaml

from tests.conftest import RunCli, without_progress

#: The honest audit of the digits target fails this gate (exit 1).
GATE = {"max_auc": 0.6}


def _base(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((folder / "policy.yaml").read_text(encoding="utf-8"))
    document["attacks"] = ["loss"]
    document["gate"] = copy.deepcopy(GATE)
    document["model"]["path"] = "target.pt"
    return document


def _npz(folder: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(folder / name) as archive:
        return {key: archive[key] for key in archive.files}


def _correct_only(folder: Path, name: str) -> dict[str, np.ndarray]:
    """The samples of a data file that the target (real weights, real preprocessing)
    classifies correctly."""
    arrays = _npz(folder, name)
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
    model.eval()
    pixels = torch.from_numpy(arrays["x"]).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        predicted = model((pixels - 0.2) / 0.3).argmax(1).numpy()
    keep = predicted == arrays["y"]
    return {key: value[keep] for key, value in arrays.items() if len(value) == len(keep)}


def _write(folder: Path, name: str, arrays: dict[str, np.ndarray]) -> str:
    # allow_pickle (the default) is named so that mypy does not match the arrays against it
    np.savez(folder / name, allow_pickle=True, **arrays)
    return name


def _cases(folder: Path) -> dict[str, dict[str, Any]]:
    members, non_members = _npz(folder, "members.npz"), _npz(folder, "non_members.npz")
    population = _npz(folder, "population.npz")

    def with_members_in(arrays: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
        mixed = {key: value.copy() for key, value in arrays.items()}
        mixed["x"][:count] = members["x"][:count]
        return mixed

    files = {
        "shared_one": _write(folder, "shared_one.npz", with_members_in(non_members, 1)),
        "shared_ten": _write(folder, "shared_ten.npz", with_members_in(non_members, 10)),
        "pop_shared": _write(folder, "pop_shared.npz", with_members_in(population, 50)),
        "members_ok": _write(folder, "members_ok.npz", _correct_only(folder, "members.npz")),
        "held_out_ok": _write(folder, "held_out_ok.npz", _correct_only(folder, "non_members.npz")),
    }
    data = _base(folder)["data"]
    far = (date.today() + timedelta(days=800)).isoformat()
    return {
        "honest": {},
        "swapped": {"data": {**data, "members": "non_members.npz", "non_members": "members.npz"}},
        # Only samples the target gets right: both sides are classified perfectly, so only
        # the attacks can tell that the sides are swapped.
        "correct_only": {
            "data": {**data, "members": files["members_ok"], "non_members": files["held_out_ok"]},
            "gate": {"max_auc": 0.55},
        },
        "swapped_correct_only": {
            "data": {**data, "members": files["held_out_ok"], "non_members": files["members_ok"]},
            "gate": {"max_auc": 0.55},
        },
        "same_file": {"data": {**data, "non_members": "members.npz"}},
        "shared_one": {"data": {**data, "non_members": files["shared_one"]}},
        "shared_ten": {"data": {**data, "non_members": files["shared_ten"]}},
        "population_shared": {"data": {**data, "population": files["pop_shared"]}},
        "no_preprocessing": {"preprocessing": None},
        "preprocessing_none": {"preprocessing": "none"},
        "std_off_100x": {"preprocessing": {"mean": [0.2] * 3, "std": [30.0] * 3}},
        "weak_allowed": {
            "preprocessing": {"mean": [0.2] * 3, "std": [30.0] * 3},
            "preconditions": {"allow_weak_target": True},
        },
        "empty_gate": {"gate": {}},
        "no_gate": {"gate": None},
        "tiny_2": {"data": {**data, "max_per_side": 2}},
        "tiny_3": {"data": {**data, "max_per_side": 3}},
        "tiny_allowed": {
            "data": {**data, "max_per_side": 3},
            "preconditions": {"allow_small_audit": True},
        },
        "waiver_too_long": {
            "gate": {
                **GATE,
                "suppressions": [{"condition": "auc", "reason": "accepted", "expires": far}],
            }
        },
    }


@pytest.fixture(scope="module")
def runs(folder: Path, run_cli: RunCli) -> dict[str, tuple[int, str, dict[str, Any] | None]]:
    """Every case run once through the console script: (exit code, stderr, result or None)."""
    jobs = {}
    for name, change in _cases(folder).items():
        document = _base(folder)
        for key, value in change.items():
            if value is None:
                document.pop(key)
            else:
                document[key] = value
        document["outputs"] = {"dir": f"out-{name}", "formats": ["json"]}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        jobs[name] = path

    def run(name: str) -> tuple[int, str, dict[str, Any] | None]:
        completed = run_cli("run", jobs[name], "-q")
        result_path = folder / f"out-{name}" / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        return completed.returncode, completed.stderr, result

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


REFUSED = {
    "swapped": "data: members and non-members look swapped: the target classifies the members",
    "swapped_correct_only": "attack 'loss' scores the members below the non-members (AUC 0.4",
    "same_file": "data.non_members: is the same file as data.members",
    "shared_ten": "data.non_members: 10 of its 200 images also appear in data.members",
    "population_shared": "data.population: 50 of its",
    "no_preprocessing": "preprocessing: required key is missing; give the mean and std",
    "preprocessing_none": "preprocessing: the target classifies",
    "std_off_100x": "preprocessing: the target classifies",
    "empty_gate": "gate: has no conditions, so it would pass every model",
    "no_gate": "gate: required key is missing; add at least one condition",
    "tiny_2": "gate.max_auc: an AUC condition needs at least 46 members and 46 non-members; "
    "the audit set has 2 members and 2 non-members",
    "tiny_3": "the audit set has 3 members and 3 non-members",
    "waiver_too_long": "gate.suppressions[0].expires:",
}


def test_the_honest_audit_fails_the_gate(runs: dict[str, Any]) -> None:
    code, stderr, result = runs["honest"]
    assert code == 1, stderr
    assert result is not None and result["attacks"][0]["auc"] > 0.6


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_each_mistake_is_refused_with_one_line(runs: dict[str, Any], case: str) -> None:
    code, stderr, result = runs[case]
    assert code == 2, stderr
    lines = without_progress(stderr)  # stderr is a pipe: timestamped progress lines first
    assert len(lines) == 1 and lines[0].startswith("error: ") and stderr.endswith(lines[0] + "\n")
    assert REFUSED[case] in stderr
    assert "Traceback" not in stderr
    assert result is None  # nothing written


def test_a_swapped_audit_never_passes_where_the_honest_one_fails(runs: dict[str, Any]) -> None:
    code, stderr, result = runs["correct_only"]
    assert code == 1, stderr
    assert result["target"]["accuracy"] == {"members": 1.0, "non_members": 1.0}
    assert runs["swapped_correct_only"][0] == 2


def test_one_shared_image_is_within_the_tolerance_and_noted(runs: dict[str, Any]) -> None:
    code, stderr, result = runs["shared_one"]
    assert code == 1, stderr
    noted = result["data"]["notes"]
    assert any("1 of its 200 images also appear in data.members" in n for n in noted)
    assert not any("images also appear" in n for n in result["notes"])  # said once


def test_relaxed_checks_run_and_say_so(runs: dict[str, Any]) -> None:
    code, _, result = runs["tiny_allowed"]
    assert code in (0, 1) and result is not None
    assert any("smoke test, not evidence" in note for note in result["notes"])
    code, _, result = runs["weak_allowed"]
    assert code in (0, 1) and result is not None
    assert any("allowed by preconditions.allow_weak_target" in n for n in result["notes"])
