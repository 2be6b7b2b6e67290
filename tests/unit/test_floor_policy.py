"""The floor policy's rules on parsed policies: every way a policy can be weaker than the floor
is refused, all at once, each naming the key, the floor's value and the policy's
(docs/floor.md). The console-script and action cases are in tests/e2e/test_hostile_pr.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mia_audit.errors import PolicyError
from mia_audit.policy.floor import GateFloor, TprFloor
from mia_audit.policy.floor_file import Floor, load_floor, with_gate_options
from mia_audit.policy.floor_rules import (
    check_against_floor,
    check_audit_size,
    check_output_kind,
    enforced,
    floor_info,
)
from mia_audit.policy.loading import parse_policy
from mia_audit.policy.schema import Policy

RECIPE = {"architecture": "small_cnn:small_cnn", "epochs": 8, "lr": 0.003, "optimizer": "adamw"}
FLOOR: dict[str, Any] = {
    "version": 1,
    "name": "org floor",
    "model": {"outputs": "auto"},
    "data": {"max_per_side": 200},
    "attacks": [
        "loss",
        "class_threshold",
        {"name": "lira", "reference_models": 4},  # online, LiRA's default
        {"name": "logit_margin", "queries": 2},
    ],
    "gate": {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1, "statistic": "upper"}]},
    "preconditions": {"reference_fit": "error"},
    "statistics": {"min_false_positives": 10},
    "reference_training": RECIPE,
}


def policy(**changes: Any) -> Policy:
    """A policy exactly as strict as FLOOR, with `changes` applied to its sections."""
    document: dict[str, Any] = {
        "version": 1,
        "name": "pr",
        "model": {"path": "m.onnx"},
        "data": {"members": "a.npz", "non_members": "b.npz", "max_per_side": 200},
        "preprocessing": "none",
        "attacks": [
            "loss",
            "confidence",
            "class_threshold",
            {"name": "lira", "reference_models": 4},
            {"name": "logit_margin", "queries": 2},
        ],
        "gate": {"max_auc": 0.6, "max_tpr_at_fpr": {"fpr": 0.05, "max": 0.1, "statistic": "upper"}},
        "preconditions": {"reference_fit": "error"},
        "reference_training": RECIPE,
    }
    for key, value in changes.items():
        document[key] = value
    return parse_policy(document, base_dir=Path("/nonexistent"))


@pytest.fixture
def floor(tmp_path: Path) -> Floor:
    path = tmp_path / "floor.yaml"
    path.write_text(yaml.safe_dump(FLOOR))
    return load_floor(path)


def problems(policy: Policy, floor: Floor) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        check_against_floor(policy, floor)
    return raised.value.problems


def test_as_strict_and_stricter_policies_pass(floor: Floor) -> None:
    check_against_floor(policy(), floor)
    stricter = policy(
        attacks=[
            "loss", "class_threshold", "gap",
            {"name": "lira", "reference_models": 16, "queries": 18},
            {"name": "logit_margin", "queries": 18},
        ],
        gate={"max_auc": {"max": 0.55, "statistic": "upper"}, "max_tpr_at_fpr": [
            {"fpr": 0.05, "max": 0.05, "statistic": "upper"}, {"fpr": 0.01, "max": 0.02}]},
        statistics={"confidence_level": 0.99, "min_false_positives": 20},
        data={"members": "a.npz", "non_members": "b.npz"},  # no max_per_side: every sample
    )  # fmt: skip
    check_against_floor(stricter, floor)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"attacks": ["gap"]}, ["attacks: 'loss' is missing, but the floor (floor.yaml)",
                                "attacks: 'lira' is missing", "(its attacks[2]: lira ("]),
        ({"attacks": ["loss", "class_threshold", {"name": "lira", "reference_models": 2},
                      {"name": "logit_margin", "queries": 2}]},
         ["attacks[2] (lira): reference_models 2 is fewer than the floor's 4"]),
        ({"attacks": ["loss", "class_threshold", {"name": "lira", "mode": "offline"},
                      {"name": "logit_margin", "queries": 2}]},
         ["attacks[2] (lira): mode is offline, the floor's online"]),
        ({"attacks": ["loss", "class_threshold", "lira", "logit_margin"]},
         ["attacks[3] (logit_margin): queries 1 view(s) lack the floor's"]),
        ({"gate": {"max_auc": 0.7}},
         ["gate.max_auc: max 0.7 is looser than the floor (floor.yaml)", "set it to 0.6 or lower",
          "gate.max_tpr_at_fpr: missing, but the floor (floor.yaml) requires the condition "
          "'tpr_at_fpr@0.05' at 0.1 or stricter"]),
        ({"gate": {"max_auc": 0.6, "max_tpr_at_fpr": {"fpr": 0.05, "max": 0.1}}},
         ["gate.max_tpr_at_fpr[0].statistic: is point, but the floor (floor.yaml) gates on the "
          "upper confidence bound"]),
        ({"gate": {"max_auc": 0.6, "max_tpr_at_fpr": {"fpr": 0.05, "max": 0.1, "statistic":
          "upper"}, "suppressions": [
              {"condition": "auc", "reason": "r", "expires": "2000-01-01"}]}},
         ["gate.suppressions[0]: waives 'auc'"]),
        ({"gate": {"attacks": ["loss"], "max_auc": 0.6, "max_tpr_at_fpr": {"fpr": 0.05, "max":
          0.1, "statistic": "upper"}}}, ["gate.attacks: leaves attack 'confidence' out"]),
        ({"statistics": {"min_false_positives": 1, "confidence_level": 0.5, "n_resamples": 100}},
         ["statistics.confidence_level: 0.5 is below the floor (floor.yaml)'s 0.95",
          "statistics.min_false_positives: 1 is below the floor (floor.yaml)'s 10",
          "statistics.n_resamples: 100 is below the floor (floor.yaml)'s 1000"]),
        ({"statistics": {"delta": 0.01}}, ["statistics.delta: 0.01 is above"]),
        ({"data": {"members": "a.npz", "non_members": "b.npz", "max_per_side": 68}},
         ["data.max_per_side: 68 is below the floor (floor.yaml)'s audit size of 200"]),
        ({"preconditions": {"allow_small_audit": True, "allow_weak_target": True,
                            "max_shared_fraction": 0.05}},
         ["preconditions.allow_small_audit: relaxes a check", "(the floor has false, the policy "
          "true)", "preconditions.allow_weak_target: relaxes", "preconditions.max_shared_fraction:"
          " relaxes a check made before the verdict, which a run with the floor (floor.yaml) does "
          "not allow (the floor has 0.01, the policy 0.05)",
          "preconditions.reference_fit: is warn, but the floor (floor.yaml) requires error"]),
        ({"reference_training": {**RECIPE, "epochs": 1, "lr": 1e-4}},
         ["reference_training.epochs: is 1, but the floor (floor.yaml) pins 8",
          "reference_training.lr: is 0.0001, but the floor (floor.yaml) pins 0.003"]),
        ({"reference_training": {"epochs": 8, "lr": 0.003, "optimizer": "adamw"},
          "model": {"path": "m.onnx", "architecture": "resnet18"}},
         ["reference_training.architecture: is resnet18, but the floor (floor.yaml) pins "
          "small_cnn:small_cnn"]),
    ],
)  # fmt: skip
def test_weaker_is_refused_naming_key_and_both_values(
    floor: Floor, changes: dict[str, Any], expected: list[str]
) -> None:
    found = problems(policy(**changes), floor)
    text = "\n".join(found)
    for part in expected:
        assert part in text, text
    assert len(set(found)) == len(found)  # each problem once (gate.attacks narrows both)


def test_every_problem_is_listed_at_once(floor: Floor) -> None:
    weak = policy(
        attacks=["gap", {"name": "lira", "reference_models": 2}],
        gate={"max_auc": 0.9},
        statistics={"min_false_positives": 1},
        data={"members": "a.npz", "non_members": "b.npz", "max_per_side": 68},
        preconditions={"reference_fit": "warn"},
        reference_training={**RECIPE, "epochs": 1},
    )
    keys = [line.split(":")[0] for line in problems(weak, floor)]
    assert keys == [
        "preconditions.reference_fit", "attacks", "attacks", "attacks[1] (lira)", "attacks",
        "gate.max_auc", "gate.max_tpr_at_fpr", "statistics.min_false_positives",
        "data.max_per_side", "reference_training.epochs",
    ]  # fmt: skip


def test_a_pinned_seed_cannot_be_shopped(tmp_path: Path) -> None:
    path = tmp_path / "seeded.yaml"
    path.write_text(yaml.safe_dump({**FLOOR, "runtime": {"seed": 3}}))
    floor = load_floor(path)
    check_against_floor(policy(runtime={"seed": 3}), floor)
    (line,) = problems(policy(runtime={"seed": 4}), floor)
    assert line.startswith("runtime.seed: is 4, but the floor (seeded.yaml) pins 3")
    assert "runtime.seed: 3" in enforced(floor)
    check_against_floor(policy(runtime={"seed": 4}), load_floor_default(tmp_path))


def load_floor_default(tmp_path: Path) -> Floor:
    """FLOOR as written: no runtime section, so any seed is the policy's to choose."""
    path = tmp_path / "unseeded.yaml"
    path.write_text(yaml.safe_dump(FLOOR))
    return load_floor(path)


def test_a_declared_output_kind_must_be_the_floors(tmp_path: Path) -> None:
    path = tmp_path / "logits-floor.yaml"
    path.write_text(yaml.safe_dump({**FLOOR, "model": {"outputs": "logits"}}))
    floor = load_floor(path)
    check_against_floor(policy(model={"path": "m.onnx", "outputs": "logits"}), floor)
    (line,) = problems(policy(model={"path": "m.onnx", "outputs": "labels"}), floor)
    assert line.startswith("model.outputs: is labels, but the floor (logits-floor.yaml) requires")


def test_the_audit_and_the_probe_are_checked_too(floor: Floor) -> None:
    check_audit_size(floor, 200, 250)
    check_audit_size(None, 5, 5)  # no floor: the policy decides
    with pytest.raises(PolicyError) as raised:
        check_audit_size(floor, 250, 199)
    assert str(raised.value).startswith(
        "data: the audit set has 250 members and 199 non-members, but the floor (floor.yaml) "
        "requires at least 200 per side"
    )
    check_output_kind(floor, "auto", "logits")
    check_output_kind(floor, "logits", "logits")
    check_output_kind(floor, "probabilities", "labels")  # a saturated softmax reads one-hot
    check_output_kind(None, "labels", "logits")
    for declared, detected in (("labels", "logits"), ("labels", "probabilities")):
        with pytest.raises(
            PolicyError, match=f"declares {declared}, but the model returns {detected}"
        ):
            check_output_kind(floor, declared, detected)


def test_options_build_or_tighten_the_same_floor(floor: Floor) -> None:
    options = GateFloor(0.55, (TprFloor(0.05, 0.2), TprFloor(0.01, 0.05)))
    tightened = with_gate_options(floor, options)
    assert tightened is not None and tightened.path == floor.path
    assert tightened.sha256 != floor.sha256
    gate = tightened.spec.gate
    assert gate.max_auc is not None and gate.max_auc.max == 0.55
    assert [(t.fpr, t.max, t.statistic) for t in gate.max_tpr_at_fpr] == [
        (0.05, 0.1, "upper"),  # the file's 0.1 is stricter than the option's 0.2
        (0.01, 0.05, "point"),
    ]
    found = problems(policy(), tightened)
    assert found[0].startswith("gate.max_auc: max 0.6 is looser than the workflow's floor "
                               "(--floor-max-auc 0.55)")  # fmt: skip
    assert "'tpr_at_fpr@0.01'" in found[1] and "(--floor-max-tpr-at-fpr 0.01:0.05)" in found[1]
    alone = with_gate_options(None, GateFloor(0.6))
    assert alone is not None and alone.path is None and alone.spec.attacks == ()
    assert with_gate_options(None, GateFloor()) is None
    assert with_gate_options(floor, GateFloor()) is floor


def test_what_the_floor_enforced_is_recorded(floor: Floor) -> None:
    info = floor_info(floor)
    assert info is not None and info.sha256 == floor.sha256 and len(info.sha256) == 64
    lines = enforced(floor)
    assert lines[0] == (
        "gate: AUC <= 0.6; TPR at FPR 0.05 <= 0.1 (upper confidence bound), unwaivable"
    )
    assert "lira (reference_models 4)" in lines[1], lines and "logit_margin (queries 2)" in lines[1]
    assert "data: at least 200 members and non-members" in lines
    assert "preconditions: none relaxed; reference_fit error" in lines
    assert lines[-1].startswith("reference_training pinned: architecture small_cnn:small_cnn")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": 1, "attacks": ["loss"]}, "gate: required key is missing"),
        ({**FLOOR, "gate": {"max_auc": 0.6, "suppressions": [
            {"condition": "auc", "reason": "r", "expires": "2999-01-01"}]}},
         "a floor waives nothing"),
        ({**FLOOR, "gate": {"max_auc_increase": 0.01}}, "cannot hold *_increase conditions"),
        ({**FLOOR, "gaet": {}}, "gaet"),
        (["loss"], "a floor is a YAML mapping"),
    ],
)  # fmt: skip
def test_a_malformed_floor_is_exit_2_naming_the_file(
    tmp_path: Path, document: Any, message: str
) -> None:
    path = tmp_path / "floor.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(PolicyError) as raised:
        load_floor(path)
    assert raised.value.exit_code == 2
    assert message in str(raised.value) and "floor.yaml" in str(raised.value)


def test_a_missing_floor_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^--floor: .*nope.yaml: floor file not found"):
        load_floor(tmp_path / "nope.yaml")


def test_the_documented_floor_loads_and_its_workflow_names_it(tmp_path: Path) -> None:
    """docs/floor.md's floor file is a valid floor; its workflow passes it as `floor:`."""
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "floor.md").read_text()
    floor_block, workflow_block = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    path = tmp_path / "mia-floor.yaml"
    path.write_text(floor_block)
    spec = load_floor(path).spec
    assert spec.data.max_per_side == 200 and spec.runtime.seed == 0
    assert set(spec.pinned_recipe) == {"epochs", "lr", "augment"}
    steps = yaml.safe_load(workflow_block)["jobs"]["mia-audit"]["steps"]
    audit = next(step for step in steps if step.get("id") == "audit")
    assert audit["with"]["floor"].startswith(steps[1]["with"]["path"] + "/")
