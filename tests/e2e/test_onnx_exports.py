"""Everyday ONNX exports, audited through the console script.

`torch.onnx.export(model, torch.randn(1, 3, 32, 32), "model.onnx")` without `dynamic_axes`
fixes the batch dimension to the example's. Such a model must audit exactly like the
dynamic-batch export of the same weights (tests/conftest.py's target.onnx): same AUCs, whatever
the fixed size (1, or 7, which leaves a short last piece to pad both in the 8-image probe and in
the 400-image audit set). A model exported with its softmax is audited too, and named in the
notes.

torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; `dynamo=False` selects the
TorchScript exporter, which also fixes the batch when no dynamic_axes are given.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
import yaml

from tests.conftest import RunCli

ATTACKS = [
    "loss",
    "confidence",
    "entropy",
    {"name": "logit_margin", "id": "margin_mirror", "queries": 2},
    "class_threshold",
]
PROBABILITY_NOTE = "model outputs: detected probabilities"


def digits_model(folder: Path) -> torch.nn.Module:
    model: torch.nn.Module = torchvision.models.resnet18(weights=None, num_classes=10)
    model.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
    return model.eval()


def export(model: torch.nn.Module, path: Path, batch: int) -> Path:
    """The everyday export: one example batch, no dynamic_axes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(batch, 3, 32, 32),), str(path), dynamo=False)
    return path


def audit(folder: Path, run_cli: RunCli, model_file: str, name: str) -> tuple[Any, str]:
    policy = {
        "version": 1,
        "name": name,
        "model": {"path": model_file, "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ATTACKS,
        "gate": {"max_auc": 0.6},
        "outputs": {"dir": f"out-{name}", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    completed = run_cli("run", path)
    assert completed.returncode == 1, completed.stderr  # the overfit target leaks
    assert "Traceback" not in completed.stderr
    result = json.loads((folder / f"out-{name}" / "result.json").read_text())
    return result, completed.stderr


@pytest.fixture(scope="module")
def dynamic(folder: Path, run_cli: RunCli) -> Any:
    result, _ = audit(folder, run_cli, "target.onnx", "dynamic")
    return result


def aucs(result: Any) -> dict[str, float]:
    return {attack["id"]: attack["auc"] for attack in result["attacks"]}


@pytest.mark.parametrize("batch", [1, 7])
def test_fixed_batch_export_audits_like_the_dynamic_one(
    folder: Path, run_cli: RunCli, dynamic: Any, batch: int
) -> None:
    model_file = export(digits_model(folder), folder / f"fixed{batch}.onnx", batch)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [batch, 3, 32, 32]  # really a fixed batch

    result, stderr = audit(folder, run_cli, model_file.name, f"fixed{batch}")

    assert set(aucs(result)) == set(aucs(dynamic))
    for attack, auc in aucs(dynamic).items():
        assert aucs(result)[attack] == pytest.approx(auc, abs=1e-4), attack
    assert result["target"]["accuracy"] == pytest.approx(dynamic["target"]["accuracy"], abs=1e-6)
    assert PROBABILITY_NOTE not in stderr


def test_softmax_export_is_audited_and_named_in_the_notes(folder: Path, run_cli: RunCli) -> None:
    model = torch.nn.Sequential(digits_model(folder), torch.nn.Softmax(dim=1)).eval()
    model_file = export(model, folder / "softmax.onnx", 4)

    result, stderr = audit(folder, run_cli, model_file.name, "softmax")

    assert any(PROBABILITY_NOTE in note for note in result["notes"]), result["notes"]
    assert f"note: {PROBABILITY_NOTE}" in stderr


def test_logits_are_not_taken_for_probabilities(dynamic: Any) -> None:
    assert not any(PROBABILITY_NOTE in note for note in dynamic["notes"])
