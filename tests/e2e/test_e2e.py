"""End to end through the installed console script, on a real overfit digits target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import BASE_POLICY, DigitsTarget, RunCli, merged_policy, policy_file

ATTACKS = [
    "loss",
    "confidence",
    "entropy",
    "modified_entropy",
    "logit_margin",
    {"name": "logit_margin", "id": "margin_mirror", "queries": 2},
    "class_threshold",
    {"name": "learned", "model": "logistic_regression"},
]


#: Every target-only attack, reported in JSON, Markdown and JUnit.
AUDIT = merged_policy(
    BASE_POLICY, attacks=ATTACKS, outputs={"formats": ["json", "markdown", "junit"]}
)


STRICT = {"max_auc": 0.51, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.06}]}
LOOSE = {"max_auc": 0.99, "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.99}]}


@pytest.fixture(scope="module")
def audits(folder: Path, run_cli: RunCli) -> dict[str, tuple[int, dict[str, Any], str]]:
    """Run four audits once: {state dict, ONNX} x {strict, loose} gates."""
    runs = {}
    for model_file in ("target.pt", "target.onnx"):
        for gate_name, gate in (("strict", STRICT), ("loose", LOOSE)):
            name = f"{Path(model_file).suffix[1:]}-{gate_name}"
            policy = policy_file(folder, name, AUDIT, model={"path": model_file}, gate=gate)
            completed = run_cli("run", policy)
            assert "Traceback" not in completed.stderr, completed.stderr
            result = json.loads((folder / f"out-{name}" / "result.json").read_text())
            runs[name] = (completed.returncode, result, completed.stdout)
    return runs


def test_strict_gate_fails_with_exit_1(audits: dict[str, Any]) -> None:
    for name in ("pt-strict", "onnx-strict"):
        code, result, stdout = audits[name]
        assert code == 1
        assert result["passed"] is False and result["exit_code"] == 1
        assert stdout.startswith("FAIL ")
        assert any(not c["passed"] for c in result["gate"]["conditions"])


def test_loose_gate_passes_with_exit_0(audits: dict[str, Any]) -> None:
    for name in ("pt-loose", "onnx-loose"):
        code, result, stdout = audits[name]
        assert code == 0, stdout
        assert result["passed"] is True and result["exit_code"] == 0
        assert all(c["passed"] for c in result["gate"]["conditions"])


def test_state_dict_and_onnx_agree(audits: dict[str, Any]) -> None:
    _, torch_result, _ = audits["pt-strict"]
    _, onnx_result, _ = audits["onnx-strict"]
    assert torch_result["target"]["format"] == "state_dict"
    assert onnx_result["target"]["format"] == "onnx"
    assert torch_result["passed"] == onnx_result["passed"]
    by_id = {attack["id"]: attack for attack in onnx_result["attacks"]}
    for attack in torch_result["attacks"]:
        assert attack["auc"] == pytest.approx(by_id[attack["id"]]["auc"], abs=1e-4), attack["id"]


def test_overfit_target_leaks(audits: dict[str, Any]) -> None:
    """The target is deliberately overfit: members are easier, and attacks beat chance."""
    _, result, _ = audits["pt-strict"]
    accuracy = result["target"]["accuracy"]
    assert accuracy["members"] > accuracy["non_members"]
    assert max(attack["auc"] for attack in result["attacks"]) > 0.55
    assert result["data"]["n_members"] == result["data"]["n_non_members"] == 200


def test_result_json_matches_schema_and_contract(audits: dict[str, Any], run_cli: RunCli) -> None:
    schema = json.loads(run_cli("schema", "result").stdout)
    _, result, _ = audits["onnx-strict"]
    jsonschema.validate(result, schema)
    assert result["schema_version"] == 1
    assert result["policy"]["name"] == "onnx-strict"
    assert len(result["target"]["sha256"]) == 64
    assert result["environment"]["device"] == "cpu"
    assert result["timings"]
    for attack in result["attacks"]:
        assert {"name", "auc", "tpr_at_fpr", "advantage", "roc"} <= set(attack)
        assert "0.05" in attack["tpr_at_fpr"]
        assert len(attack["roc"]["fpr"]) == len(attack["roc"]["tpr"]) >= 2
    for condition in result["gate"]["conditions"]:
        assert {"metric", "attack", "value", "threshold", "passed"} <= set(condition)


def test_every_requested_format_written(
    audits: dict[str, Any], digits_target: DigitsTarget, tmp_path: Path
) -> None:
    _, result, _ = audits["onnx-loose"]
    out = Path(result["policy"]["path"]).parent / "out-onnx-loose"
    written = sorted(p.name for p in out.iterdir())
    assert written == [".mia-audit-outputs.json", "junit.xml", "result.json", "summary.md"]
    assert "PASS" in (out / "summary.md").read_text()


def test_same_seed_same_result(audits: dict[str, Any], run_cli: RunCli) -> None:
    """A second run (logits from the cache) gives the same numbers."""
    _, first, _ = audits["pt-loose"]
    policy = Path(first["policy"]["path"])
    again = run_cli("run", policy, "--output-dir", policy.parent / "again", "-q")
    assert again.returncode == 0
    second = json.loads((policy.parent / "again" / "result.json").read_text())
    for key in ("attacks", "gate", "target", "data"):
        assert first[key] == second[key] or _strip_seconds(first[key]) == _strip_seconds(
            second[key]
        ), key


def _strip_seconds(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_strip_seconds(v) for v in value]
    return value


def test_validate_and_version(digits_target: DigitsTarget, run_cli: RunCli) -> None:
    checked = run_cli("validate", digits_target.directory / "policy.yaml")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("policy ok: digits-resnet18-demo")
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("mia-audit ")


def test_usage_error_exits_2(run_cli: RunCli) -> None:
    completed = run_cli("run", "--device", "tpu", "policy.yaml")
    assert completed.returncode == 2
