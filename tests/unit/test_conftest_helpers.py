"""The shared test helpers of tests/conftest.py that other tests' meaning rests on."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import BASE_POLICY, DROP, merged_policy, policy_file, without_keys


def test_without_keys_drops_only_those_keys() -> None:
    document = {"a": 1, "seconds": 2, "b": [{"path": "x", "c": {"timings": {}, "d": 3}}]}
    keys = {"seconds", "timings", "path", "evaluated_on"}
    assert without_keys(document, keys) == {"a": 1, "b": [{"c": {"d": 3}}]}


def test_settings_sections_merge_and_the_rest_is_replaced() -> None:
    document = merged_policy(
        BASE_POLICY,
        model={"path": "target.onnx", "architecture": DROP},
        runtime={"seed": 3},
        gate={"max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]},
    )
    assert document["model"] == {"path": "target.onnx", "num_classes": 10}
    assert document["runtime"] == {"device": "cpu", "seed": 3, "cache_dir": ".mia-cache"}
    assert document["gate"] == {"max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}]}  # no max_auc
    assert BASE_POLICY["model"]["architecture"] == "resnet18"  # the base is left as it was


def test_policy_file_names_the_policy_and_its_output_folder(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "strict", data={"population": DROP}, statistics=DROP)
    document = yaml.safe_load(path.read_text())
    assert path == tmp_path / "strict.yaml"
    assert document["name"] == "strict" and document["outputs"]["dir"] == "out-strict"
    assert "statistics" not in document
