"""Hand-built results for the report formats' and the gate's tests."""

from __future__ import annotations

from typing import Any

from mia_audit.result import (
    Accuracy,
    AttackResult,
    Condition,
    DataInfo,
    DataSource,
    Environment,
    GateResult,
    Histogram,
    PolicyInfo,
    Result,
    Roc,
    TargetInfo,
    ToolInfo,
)

HASH = "ab" * 32


def attack(
    attack_id: str, auc: float, tprs: dict[str, float], supported: dict[str, bool] | None = None
) -> AttackResult:
    return AttackResult(
        name=attack_id.split("-")[0],
        id=attack_id,
        parameters={"reference_models": 4},
        auc=auc,
        tpr_at_fpr=tprs,
        tpr_at_fpr_supported=supported or dict.fromkeys(tprs, True),
        balanced_accuracy=0.5 + (auc - 0.5) / 2,
        advantage=2 * (auc - 0.5) / 3,
        roc=Roc(fpr=[0.0, 0.5, 1.0], tpr=[0.0, auc, 1.0]),
        score_histogram=Histogram(bin_edges=[0.0, 0.5, 1.0], members=[3, 7], non_members=[6, 4]),
        seconds=1.5,
    )


def condition(
    metric: str, attack_id: str, value: float, threshold: float, fpr: float | None = None
) -> Condition:
    label = f"TPR at FPR {fpr:.4g}" if fpr is not None else {"auc": "AUC"}.get(metric, metric)
    return Condition(
        metric=metric,
        fpr=fpr,
        attack=attack_id,
        value=value,
        threshold=threshold,
        passed=value <= threshold,
        per_attack={attack_id: value, "loss": value / 2},
        description=f"{label} <= {threshold:.4g}",
    )


def make_result(
    policy_name: str = "cifar10-resnet18-release",
    attacks: list[AttackResult] | None = None,
    conditions: list[Condition] | None = None,
    **overrides: Any,
) -> Result:
    if attacks is None:
        attacks = [
            attack("loss", 0.58, {"0.05": 0.09, "0.01": 0.02, "0.001": 0.003}),
            attack(
                "rmia",
                0.66,
                {"0.05": 0.21, "0.01": 0.08, "0.001": 0.0},
                {"0.05": True, "0.01": True, "0.001": False},
            ),
            attack("lira-offline", 0.63, {"0.05": 0.15}),
        ]
    if conditions is None:
        conditions = [
            condition("auc", "rmia", 0.66, 0.60),
            condition("tpr_at_fpr", "rmia", 0.21, 0.25, fpr=0.05),
            condition("advantage", "loss", 0.05, 0.10),
        ]
    passed = all(c.passed for c in conditions)
    fields: dict[str, Any] = {
        "tool": ToolInfo(version="0.1.0"),
        "passed": passed,
        "exit_code": 0 if passed else 1,
        "seed": 1234,
        "policy": PolicyInfo(
            name=policy_name, path="policy.yaml", sha256=HASH, document={"version": 1}
        ),
        "target": TargetInfo(
            path="model.onnx",
            format="onnx",
            sha256=HASH,
            num_classes=10,
            engine="onnxruntime",
            precision="fp32",
            accuracy=Accuracy(members=0.998, non_members=0.871),
        ),
        "data": DataInfo(
            n_members=2500,
            n_non_members=2500,
            n_population=5000,
            image_shape=[32, 32, 3],
            sha256=HASH,
            sources={"members": DataSource(path="members.npz", sha256=HASH, n_samples=2500)},
        ),
        "attacks": attacks,
        "gate": GateResult(passed=passed, conditions=conditions),
        "environment": Environment(
            device="cuda",
            engine="onnxruntime",
            precision="fp32",
            gpu="NVIDIA H200",
            python="3.11.7",
            platform="Linux",
            cpu_count=16,
            versions={"torch": "2.5.0"},
        ),
        "timings": {"load": 0.4, "inference": 2.1, "attack:rmia": 30.0},
    }
    fields.update(overrides)
    return Result(**fields)


