"""The Python API on the real digits target: the same figures as the console script.

A notebook user holds a `torch.nn.Module` and arrays; `mia_audit.audit` must give them exactly
what `mia-audit run` gives for the same model, data and settings, and refuse the same mistakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
import yaml

import mia_audit
from mia_audit.errors import EXIT_INVALID, InputError, PolicyError
from mia_audit.result import Result
from tests.conftest import RunCli

ATTACKS: list[Any] = [
    "loss",
    "confidence",
    {"name": "logit_margin", "queries": 2},
    "class_threshold",
    {"name": "learned", "model": "logistic_regression"},
]
PREPROCESSING = {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]}
GATE = {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]}
#: Figures that must agree exactly between the console script and the API.
FIGURES = ("auc", "tpr_at_fpr", "auc_ci", "tpr_at_fpr_ci", "advantage", "balanced_accuracy")


def arrays(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(folder / name) as archive:
        return archive["x"], archive["y"], archive["ids"]


def target_module(folder: Path) -> torch.nn.Module:
    module: torch.nn.Module = torchvision.models.resnet18(num_classes=10)
    module.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
    return module


@pytest.fixture(scope="module")
def cli_result(folder: Path, run_cli: RunCli) -> dict[str, Any]:
    policy = {
        "version": 1,
        "name": "api-vs-cli",
        "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": PREPROCESSING,
        "attacks": ATTACKS,
        "gate": GATE,
        "outputs": {"dir": "out-cli", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    (folder / "api.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    completed = run_cli("run", folder / "api.yaml", "-q")
    assert completed.returncode == 1, completed.stderr  # the leaking target fails this gate
    return dict(json.loads((folder / "out-cli" / "result.json").read_text()))


@pytest.fixture(scope="module")
def outcome(folder: Path) -> mia_audit.AuditResult:
    images, labels, _ = arrays(folder, "non_members.npz")
    return mia_audit.audit(
        target_module(folder),
        members=arrays(folder, "members.npz"),
        non_members=(torch.from_numpy(images), torch.from_numpy(labels)),  # tensors work too
        preprocessing=PREPROCESSING,
        attacks=ATTACKS,
        gate=GATE,
        architecture="resnet18",
        name="api-vs-cli",
        sections={"runtime": {"device": "cpu", "seed": 0, "cache_dir": str(folder / ".api-cache")}},
    )


def test_the_api_gives_the_console_scripts_figures(
    outcome: mia_audit.AuditResult, cli_result: dict[str, Any]
) -> None:
    api = json.loads(outcome.to_json())
    assert (outcome.exit_code, outcome.passed) == (cli_result["exit_code"], False) == (1, False)
    assert [a["id"] for a in api["attacks"]] == [a["id"] for a in cli_result["attacks"]]
    for mine, theirs in zip(api["attacks"], cli_result["attacks"], strict=True):
        for figure in FIGURES:
            assert mine[figure] == theirs[figure], (mine["id"], figure)
        assert mine["epsilon_lower_bound"]["value"] == theirs["epsilon_lower_bound"]["value"]
    assert api["gate"]["conditions"] == cli_result["gate"]["conditions"]
    assert api["target"]["accuracy"] == cli_result["target"]["accuracy"]
    assert api["target"]["format"] == "torch.nn.Module"
    assert api["data"]["sources"]["members"]["path"] == "python:members"


def test_per_sample_scores_come_with_the_samples(outcome: mia_audit.AuditResult) -> None:
    from mia_audit.evaluation.metrics import auc

    n = len(outcome.is_member)
    assert n == 400 and outcome.is_member[:200].all() and not outcome.is_member[200:].any()
    assert len(outcome.labels) == len(outcome.ids) == n
    assert set(outcome.scores) == {a.id for a in outcome.attacks}
    for attack in outcome.attacks:
        scores = outcome.scores[attack.id]
        assert scores.shape == (n,)
        assert auc(outcome.is_member, scores) == attack.auc  # the scores behind the figure


def test_reports_from_python(outcome: mia_audit.AuditResult, tmp_path: Path) -> None:
    written = Result.model_validate_json(outcome.to_json())
    assert written.sha256  # the JSON carries its content hash; the in-memory result does not
    assert written.model_copy(update={"sha256": None}) == outcome.result
    page = outcome.to_html()
    assert page.startswith("<!DOCTYPE html>") and "api-vs-cli" in page
    frame = outcome._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in frame
    files = outcome.write(tmp_path / "reports")
    assert sorted(p.name for p in files) == ["report.html", "result.json", "summary.md"]
    assert outcome.attack("loss").auc > 0.6


def test_audit_policy_runs_a_policy_file(folder: Path, cli_result: dict[str, Any]) -> None:
    from_file = mia_audit.audit_policy(folder / "api.yaml")
    assert from_file.result.attacks[0].auc == cli_result["attacks"][0]["auc"]
    assert from_file.exit_code == 1


def test_an_onnx_path_is_a_model_too(folder: Path, outcome: mia_audit.AuditResult) -> None:
    onnx = mia_audit.audit(
        folder / "target.onnx",
        members=arrays(folder, "members.npz"),
        non_members=arrays(folder, "non_members.npz"),
        preprocessing=PREPROCESSING,
        attacks=["loss"],
        gate={"max_auc": 0.6},
        sections={"runtime": {"device": "cpu"}},
    )
    assert onnx.attack("loss").auc == pytest.approx(outcome.attack("loss").auc, abs=1e-4)


def test_the_api_refuses_what_the_cli_refuses(folder: Path) -> None:
    members = arrays(folder, "members.npz")
    with pytest.raises(InputError, match="look swapped") as swapped:
        mia_audit.audit(
            target_module(folder),
            members=arrays(folder, "non_members.npz"),
            non_members=members,
            preprocessing=PREPROCESSING,
            attacks=["loss"],
            gate={"max_auc": 0.6},
            sections={"runtime": {"device": "cpu"}},
        )
    assert swapped.value.exit_code == EXIT_INVALID
    with pytest.raises(PolicyError, match="gate: has no conditions"):
        mia_audit.audit(
            target_module(folder),
            members=members,
            non_members=arrays(folder, "non_members.npz"),
            preprocessing="none",
            gate={},
        )
    with pytest.raises(InputError, match=r"give a torch\.nn\.Module or the path"):
        mia_audit.audit(
            object(),  # type: ignore[arg-type]
            members=members,
            non_members=arrays(folder, "non_members.npz"),
            preprocessing=PREPROCESSING,
            gate={"max_auc": 0.6},
            sections={"runtime": {"device": "cpu"}},
        )
