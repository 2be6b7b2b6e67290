"""A safetensors export of the digits target audits exactly like its torch.save export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from tests.conftest import DigitsTarget, RunCli


def _audit(folder: Path, model_file: str, run_cli: RunCli) -> dict[str, Any]:
    policy = {
        "version": 1,
        "name": f"digits-{model_file}",
        "model": {"path": model_file, "architecture": "resnet18", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2] * 3, "std": [0.3] * 3},
        "attacks": ["loss", "confidence", "logit_margin"],
        "gate": {"max_auc": 0.6},
        "outputs": {"dir": f"report-{model_file}", "formats": ["json"]},
        # Each run computes its logits itself: a shared cache would hide a loader difference.
        "runtime": {"device": "cpu", "cache_dir": f".cache-{model_file}"},
    }
    path = folder / f"{model_file}.yaml"
    path.write_text(yaml.safe_dump(policy))
    completed = run_cli("run", path)
    assert completed.returncode == 1, completed.stderr  # the digits target leaks
    report = folder / f"report-{model_file}"
    result: dict[str, Any] = json.loads((report / "result.json").read_text())
    return result


def test_safetensors_matches_the_pt_export(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("safetensors") / "digits")
    # safetensors stores packed tensors only; torch.save kept the training's memory layout.
    state_dict = {
        k: v.contiguous() for k, v in torch.load(folder / "target.pt", weights_only=True).items()
    }
    save_file(state_dict, str(folder / "target.safetensors"))
    save_file(state_dict, str(folder / "weights.bin"))  # found by its content, not its name
    reference = _audit(folder, "target.pt", run_cli)
    assert reference["target"]["format"] == "state_dict"
    for model_file in ("target.safetensors", "weights.bin"):
        result = _audit(folder, model_file, run_cli)
        assert result["target"]["format"] == "safetensors"
        assert result["target"]["accuracy"] == reference["target"]["accuracy"]
        for ours, theirs in zip(result["attacks"], reference["attacks"], strict=True):
            assert ours["id"] == theirs["id"]
            assert ours["auc"] == pytest.approx(theirs["auc"], abs=1e-6)
            assert ours["tpr_at_fpr"] == pytest.approx(theirs["tpr_at_fpr"], abs=1e-6)
