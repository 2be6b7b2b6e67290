"""The gate floor's rules on parsed policies (the console-script cases are in test_bad_inputs).

A policy passes the floor only with, for each floor, a condition at least as strict, over every
attack, that no suppression names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mia_audit.errors import PolicyError
from mia_audit.policy.floor import GateFloor, TprFloor, check_floor, parse_floor
from mia_audit.policy.loading import parse_policy
from mia_audit.policy.run import Preconditions
from mia_audit.policy.schema import Policy


def policy(gate: dict[str, Any], attacks: list[Any] | None = None) -> Policy:
    document = {
        "version": 1,
        "name": "floor",
        "model": {"path": "m.onnx"},
        "data": {"members": "a.npz", "non_members": "b.npz"},
        "preprocessing": "none",
        "attacks": attacks or ["loss", "confidence"],
        "gate": gate,
    }
    return parse_policy(document, base_dir=Path("/nonexistent"))


AUC = GateFloor(max_auc=0.6)
TPR = GateFloor(max_tpr_at_fpr=(TprFloor(0.05, 0.1),))


@pytest.mark.parametrize(
    ("gate", "floor"),
    [
        ({"max_auc": 0.6}, AUC),  # equal is at least as strict
        ({"max_auc": {"max": 0.55, "statistic": "upper"}}, AUC),
        ({"max_auc": {"max": 0.6, "attacks": ["loss", "confidence"]}}, AUC),  # every attack
        ({"attacks": ["confidence", "loss"], "max_auc": 0.5}, AUC),
        ({"max_tpr_at_fpr": [{"fpr": 0.01, "max": 0.5}, {"fpr": 0.05, "max": 0.1}]}, TPR),
        ({"max_auc": 0.6, "max_tpr_at_fpr": 0.05}, GateFloor(0.6, TPR.max_tpr_at_fpr)),
        ({"max_auc": 0.9}, GateFloor()),  # no floor: anything goes
        (  # a suppression of another condition is no concern of the floor
            {
                "max_auc": 0.6,
                "max_advantage": 0.1,
                "suppressions": [
                    {"condition": "advantage", "reason": "r", "expires": "2999-01-01"}
                ],
            },
            AUC,
        ),
    ],
)
def test_at_least_as_strict_is_accepted(gate: dict[str, Any], floor: GateFloor) -> None:
    check_floor(policy(gate), floor)


@pytest.mark.parametrize(
    ("gate", "floor", "message"),
    [
        ({"max_auc": 0.61}, AUC, "gate.max_auc: max 0.61 is looser"),
        ({"max_tpr_at_fpr": 0.05}, AUC, "gate.max_auc: missing"),
        ({"max_auc": {"max": 0.5, "attacks": ["loss"]}}, AUC, "leaves attack 'confidence'"),
        ({"attacks": ["loss"], "max_auc": 0.5}, AUC, "gate.attacks: leaves attack 'confidence'"),
        ({"max_tpr_at_fpr": [{"fpr": 0.01, "max": 0.05}]}, TPR, "'tpr_at_fpr@0.05'"),
        ({"max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.2}]}, TPR, "max_tpr_at_fpr[0]: max 0.2"),
        (
            {
                "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.05}],
                "suppressions": [
                    {"condition": "tpr_at_fpr", "attack": "loss", "reason": "r",
                     "expires": "2000-01-01"},
                ],
            },
            TPR,
            "gate.suppressions[0]: waives 'tpr_at_fpr@0.05'",
        ),
    ],
)  # fmt: skip
def test_looser_is_refused(gate: dict[str, Any], floor: GateFloor, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_floor(policy(gate), floor)


def test_parse_floor() -> None:
    floor = parse_floor(0.6, ["0.05:0.1", " 0.01:0 "])
    assert floor == GateFloor(0.6, (TprFloor(0.05, 0.1), TprFloor(0.01, 0.0)))
    assert floor.describe() == "AUC <= 0.6; TPR at FPR 0.05 <= 0.1; TPR at FPR 0.01 <= 0"
    assert not parse_floor(None, [])


@pytest.mark.parametrize(
    ("max_auc", "tpr", "message"),
    [
        (1.5, [], "--floor-max-auc: 1.5 is not an AUC"),
        (None, ["0.05"], "'0.05' is not FPR:MAX"),
        (None, ["0:0.1"], "'0:0.1' is not FPR:MAX"),
        (None, ["0.05:x"], "is not FPR:MAX"),
        (None, ["0.05:1.1"], "is not FPR:MAX"),
        (None, ["0.05:0.1", "0.050:0.2"], "FPR 0.05 is given twice"),
    ],
)
def test_malformed_floor_options(max_auc: float | None, tpr: list[str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_floor(max_auc, tpr)


@pytest.mark.parametrize(
    "relaxed",
    [{"allow_small_audit": True}, {"allow_weak_target": True}, {"max_shared_fraction": 0.05}],
)
def test_a_floor_refuses_relaxed_preconditions(relaxed: dict[str, Any]) -> None:
    loose = policy({"max_auc": 0.6}).model_copy(
        update={"preconditions": Preconditions.model_validate(relaxed)}
    )
    check_floor(loose, GateFloor())  # without a floor the policy decides
    key = next(iter(relaxed))
    with pytest.raises(PolicyError, match=f"preconditions.{key}: relaxes a check"):
        check_floor(loose, AUC)
    check_floor(
        policy({"max_auc": 0.6}).model_copy(
            update={"preconditions": Preconditions(max_shared_fraction=0.001)}
        ),
        AUC,
    )  # tightening is fine
