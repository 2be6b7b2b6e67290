"""Outputs at the edges of their precision, audited through the console script: logits scaled
x10 (margins far past where a naive -log p_y rounds to 0), a softmax head rounded to bfloat16 or
float16 (rows that sum to 1 only within half precision), and an argmax head that keeps its
dimension ((n, 1) class indices).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mia_audit.demo import export_onnx
from mia_audit.models.architectures import build_architecture
from tests.conftest import DigitsTarget, RunCli

PREPROCESSING = {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]}


class Scaled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(images)
        return logits * self.factor


class RoundedSoftmax(torch.nn.Module):
    """A softmax head whose probabilities are rounded to `dtype` (the output stays float32
    for bfloat16, which numpy cannot hold; float16 is returned as float16)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.model(images), dim=1).to(self.dtype)
        return p.float() if self.dtype == torch.bfloat16 else p


class ArgmaxColumn(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(images)
        return logits.argmax(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("precision") / "t")
    model = build_architecture("resnet18", 10)
    model.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
    model.eval()
    export_onnx(Scaled(model, 10.0).eval(), folder / "scaled.onnx", 32)
    export_onnx(RoundedSoftmax(model, torch.bfloat16).eval(), folder / "bf16.onnx", 32)
    export_onnx(RoundedSoftmax(model, torch.float16).eval(), folder / "fp16.onnx", 32)
    export_onnx(ArgmaxColumn(model).eval(), folder / "column.onnx", 32)
    return folder


def write_policy(folder: Path, name: str, model: dict[str, Any], attacks: list[Any]) -> Path:
    policy = {
        "version": 1,
        "name": name,
        "model": {"num_classes": 10, **model},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": PREPROCESSING,
        "attacks": attacks,
        "gate": {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]},
        "outputs": {"dir": f"out-{name}", "formats": ["json"]},
        "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def audit(
    folder: Path,
    run_cli: RunCli,
    name: str,
    model: dict[str, Any],
    attacks: list[Any],
    verdicts: tuple[int, ...] = (1,),  # the overfit target leaks to the signal attacks
) -> Any:
    completed = run_cli("run", write_policy(folder, name, model, attacks))
    assert completed.returncode in verdicts, completed.stderr
    return json.loads((folder / f"out-{name}" / "result.json").read_text()), completed.stderr


def test_logits_times_ten_keep_the_loss_attacks_ranking(folder: Path, run_cli: RunCli) -> None:
    """-loss and log p_y are increasing functions of the log-odds (logit_margin), computed
    without cancellation: the three must give the same AUC and TPRs, however large the margins.
    Rounded, -log p_y was exactly 0 for most members at x10 and TPR at 5 % FPR fell to 0."""
    result, _ = audit(
        folder, run_cli, "scaled", {"path": "scaled.onnx"}, ["loss", "confidence", "logit_margin"]
    )
    by_id = {attack["id"]: attack for attack in result["attacks"]}
    margin = by_id["logit_margin"]
    assert margin["tpr_at_fpr"]["0.05"] > 0
    for name in ("loss", "confidence"):
        assert by_id[name]["auc"] == margin["auc"], name
        assert by_id[name]["tpr_at_fpr"] == margin["tpr_at_fpr"], name


@pytest.mark.parametrize("head", ["bf16", "fp16"])
def test_a_half_precision_softmax_head_reads_as_probabilities(
    folder: Path, run_cli: RunCli, head: str
) -> None:
    detected, stderr = audit(folder, run_cli, f"{head}-auto", {"path": f"{head}.onnx"}, ["loss"])
    assert detected["target"]["outputs"] == "probabilities"
    assert "note: model outputs: detected probabilities" in stderr
    declared, _ = audit(
        folder,
        run_cli,
        f"{head}-declared",
        {"path": f"{head}.onnx", "outputs": "probabilities"},
        ["loss"],
    )
    assert declared["target"]["outputs"] == "probabilities"
    logits, _ = audit(folder, run_cli, f"{head}-logits", {"path": "target.onnx"}, ["loss"])
    # the rounding costs some resolution, not the signal
    assert declared["attacks"][0]["auc"] == pytest.approx(logits["attacks"][0]["auc"], abs=0.03)


def test_an_index_column_reads_as_labels(folder: Path, run_cli: RunCli) -> None:
    result, stderr = audit(folder, run_cli, "column", {"path": "column.onnx"}, ["gap"], (0, 1))
    assert result["target"]["outputs"] == "labels"
    assert "note: model outputs: detected labels" in stderr
    assert result["target"]["num_classes"] == 10
