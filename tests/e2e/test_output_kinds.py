"""One model exported three ways (logits, a softmax head, an argmax head), audited through the
console script.

The logits and softmax exports must give the same AUC for every attack, the reference-model
attacks included (the softmax export is read as log-probabilities, on the audit set and on the
population the reference attacks compare against), and the notes must name the kind each was
detected as. The argmax export runs the label-only attacks, with the same AUCs as on the other
two (they see only the predicted class either way), and refuses an attack that reads logits with
exit 2 naming it: a labels-only target must never pass because its logit attacks were dropped. A
declared `model.outputs` that the probe contradicts is exit 2; `outputs: labels` on a logits
model audits as an attacker who sees only labels would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from mia_audit.demo import export_onnx
from mia_audit.models.architectures import build_architecture
from tests.conftest import (
    BASE_POLICY,
    DROP,
    SMALL_CNN,
    SMALL_RECIPE,
    RunCli,
    merged_policy,
    policy_file,
)

LABEL_ONLY: list[str | dict[str, Any]] = [
    "gap",
    {"name": "augmentation", "queries": 2},
    {"name": "boundary_distance", "budget": 12, "directions": 3},
]
SCORE_ATTACKS: list[str | dict[str, Any]] = [
    "loss",
    "confidence",
    "entropy",
    "modified_entropy",
    {"name": "logit_margin", "id": "margin_mirror", "queries": 2},
    {"name": "logit_margin", "id": "hinge", "form": "hinge"},
    "class_threshold",
    {"name": "learned", "model": "logistic_regression"},
]


class ArgmaxHead(torch.nn.Module):
    """The model ending in argmax: one class index per image, as a labels-only API returns."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(images)
        return logits.argmax(dim=1)


@pytest.fixture(scope="module")
def folder(folder: Path) -> Path:
    model = build_architecture("resnet18", 10)
    model.load_state_dict(torch.load(folder / "target.pt", weights_only=True))
    model.eval()
    export_onnx(
        torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval(), folder / "softmax.onnx", 32
    )
    export_onnx(ArgmaxHead(model).eval(), folder / "argmax.onnx", 32)
    return folder


#: A target named by each test (no reference architecture), reported in JSON, HTML and Markdown.
AUDIT = merged_policy(
    BASE_POLICY,
    model={"architecture": DROP},
    gate={"max_auc": 0.6},
    outputs={"formats": ["json", "html", "markdown"]},
)


def audited(folder: Path, run_cli: RunCli, name: str, model_file: str) -> tuple[Any, str]:
    path = policy_file(
        folder, name, AUDIT, model={"path": model_file}, attacks=[*SCORE_ATTACKS, *LABEL_ONLY]
    )
    completed = run_cli("run", path)
    assert completed.returncode == 1, completed.stderr  # the overfit target leaks
    return json.loads((folder / f"out-{name}" / "result.json").read_text()), completed.stderr


def aucs(result: Any) -> dict[str, float]:
    return {attack["id"]: attack["auc"] for attack in result["attacks"]}


@pytest.fixture(scope="module")
def logits_run(folder: Path, run_cli: RunCli) -> tuple[Any, str]:
    return audited(folder, run_cli, "logits", "target.onnx")


def test_softmax_export_gives_the_logits_aucs_and_says_so(
    folder: Path, run_cli: RunCli, logits_run: tuple[Any, str]
) -> None:
    logits, logits_stderr = logits_run
    softmax, softmax_stderr = audited(folder, run_cli, "softmax", "softmax.onnx")

    assert (
        set(aucs(softmax))
        == set(aucs(logits))
        == {
            attack if isinstance(attack, str) else attack.get("id", attack["name"])
            for attack in [*SCORE_ATTACKS, *LABEL_ONLY]
        }
    )
    for attack, auc in aucs(logits).items():
        assert aucs(softmax)[attack] == pytest.approx(auc, abs=1e-4), attack
    assert "note: model outputs: detected logits" in logits_stderr
    assert "note: model outputs: detected probabilities" in softmax_stderr
    assert (logits["target"]["outputs"], softmax["target"]["outputs"]) == (
        "logits",
        "probabilities",
    )
    assert "loss" in softmax["target"]["attacks_allowed"]
    html = (folder / "out-softmax" / "report.html").read_text()
    assert "probabilities" in html and "log-probabilities" in html
    assert "Precision and recall" in html and "at the gate's operating point" in html
    point = softmax["attacks"][0]["operating_point"]
    assert point["true_positives"] + point["false_negatives"] == softmax["data"]["n_members"]


def test_argmax_export_runs_the_label_only_attacks(
    folder: Path, run_cli: RunCli, logits_run: tuple[Any, str]
) -> None:
    # A limit the label-only attacks exceed on the logits export, so the same labels must fail.
    label_only = {"gap", "augmentation", "boundary_distance"}
    strongest = max(auc for attack, auc in aucs(logits_run[0]).items() if attack in label_only)
    assert strongest > 0.52
    limit = {"max_auc": round(strongest - 0.01, 4)}
    path = policy_file(
        folder, "argmax", AUDIT, model={"path": "argmax.onnx"}, attacks=LABEL_ONLY, gate=limit
    )
    completed = run_cli("run", path)

    assert completed.returncode == 1, completed.stderr
    assert "note: model outputs: detected labels" in completed.stderr
    result = json.loads((folder / "out-argmax" / "result.json").read_text())
    assert result["target"]["outputs"] == "labels"
    assert set(result["target"]["attacks_allowed"]) == {"gap", "augmentation", "boundary_distance"}
    logits = aucs(logits_run[0])
    for attack, auc in aucs(result).items():  # the same labels, whatever else the model shows
        assert auc == pytest.approx(logits[attack], abs=1e-12), attack
    assert result["target"]["accuracy"] == logits_run[0]["target"]["accuracy"]
    summary = (folder / "out-argmax" / "summary.md").read_text()
    assert "labels" in summary


@pytest.mark.parametrize(
    ("model", "refused", "kind"),
    [
        ({"path": "argmax.onnx"}, "loss", "labels (detected from the probe batch)"),
        ({"path": "target.onnx", "outputs": "labels"}, "learned", "labels (model.outputs)"),
    ],
)
def test_a_label_target_refuses_attacks_that_read_logits(
    folder: Path, run_cli: RunCli, model: dict[str, Any], refused: str, kind: str
) -> None:
    name = f"refuse-{refused}"
    path = policy_file(folder, name, AUDIT, model=model, attacks=["gap", refused])
    completed = run_cli("run", path)

    assert completed.returncode == 2, completed.stderr
    assert (
        f"error: attacks[1]: '{refused}' reads logits or probabilities but the target returns "
        f"{kind}"
    ) in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (folder / f"out-{name}" / "result.json").exists()


@pytest.mark.parametrize(
    ("model_file", "declared", "shown"),
    [
        ("softmax.onnx", "logits", "probabilities"),
        ("target.onnx", "probabilities", "logits"),
        ("argmax.onnx", "logits", "labels"),
        ("argmax.onnx", "probabilities", "labels"),
    ],
)
def test_a_declared_kind_the_probe_contradicts_is_refused(
    folder: Path, run_cli: RunCli, model_file: str, declared: str, shown: str
) -> None:
    name = f"declared-{declared}-{model_file.split('.')[0]}"
    path = policy_file(
        folder, name, AUDIT, model={"path": model_file, "outputs": declared}, attacks=["gap"]
    )
    completed = run_cli("run", path)

    assert completed.returncode == 2, completed.stderr
    assert f"error: model.outputs: is {declared} but the model's outputs" in completed.stderr
    assert f"set model.outputs: {shown}" in completed.stderr
    assert not (folder / f"out-{name}" / "result.json").exists()


REFERENCE_ATTACKS = [
    {"name": "lira", "reference_models": 2, "mode": "offline"},
    {"name": "rmia", "reference_models": 2},
]


def reference_audit(folder: Path, run_cli: RunCli, name: str, model_file: str) -> Any:
    """LiRA (offline) and RMIA on small-CNN reference models; both exports share the cache, so
    the second run scores against the very reference models the first trained."""
    policy = yaml.safe_load(
        policy_file(
            folder, name, AUDIT, model={"path": model_file}, attacks=REFERENCE_ATTACKS
        ).read_text()
    )
    policy["data"]["population"] = "population_small.npz"
    policy["reference_training"] = SMALL_RECIPE
    policy["gate"] = {"max_auc": 0.99}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    completed = run_cli("run", path)
    assert completed.returncode in (0, 1), completed.stderr
    return json.loads((folder / f"out-{name}" / "result.json").read_text())


def test_softmax_export_gives_the_reference_attacks_the_logits_aucs(
    folder: Path, run_cli: RunCli
) -> None:
    with np.load(folder / "population.npz") as population:
        np.savez(folder / "population_small.npz", **{k: population[k][:300] for k in population})
    (folder / "small_cnn.py").write_text(SMALL_CNN)
    logits = reference_audit(folder, run_cli, "reference-logits", "target.onnx")
    softmax = reference_audit(folder, run_cli, "reference-softmax", "softmax.onnx")

    assert softmax["target"]["outputs"] == "probabilities"
    assert set(aucs(logits)) == set(aucs(softmax)) == {"lira", "rmia"}
    for attack, auc in aucs(logits).items():
        assert auc > 0.5, attack  # the attacks see the leak, so equal AUCs mean something
        assert aucs(softmax)[attack] == pytest.approx(auc, abs=1e-4), attack
