"""The gate's statistics end to end through `mia-audit run`: upper confidence bounds, the epsilon
bound, a baseline and an expired waiver on the digits target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mia_audit.errors import EXIT_INVALID
from mia_audit.result import SCHEMA_VERSION
from tests.conftest import DigitsTarget, RunCli, without_progress


def write_policy(folder: Path, name: str, gate_: dict[str, Any]) -> Path:
    document = {
        "version": 1,
        "name": name,
        "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
        "data": {"members": "members.npz", "non_members": "non_members.npz"},
        "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
        "attacks": ["loss", "confidence"],
        "gate": gate_,
        "statistics": {"n_resamples": 500},
        "outputs": {"dir": f"out-{name}", "formats": ["json", "markdown", "junit"]},
        "runtime": {"device": "cpu", "seed": 3, "cache_dir": ".mia-cache"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_end_to_end_upper_statistic_and_baseline(
    digits_target: DigitsTarget, run_cli: RunCli, tmp_path: Path
) -> None:
    folder = digits_target.copy_to(tmp_path / "x")
    first = run_cli("run", write_policy(folder, "first", {"max_auc": 0.99}), "-q")
    assert first.returncode == 0, first.stderr
    previous = folder / "out-first" / "result.json"
    base = json.loads(previous.read_text())

    gate_ = {
        "max_auc": {"max": 0.99, "statistic": "upper"},
        "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.99, "statistic": "upper"}],
        "max_epsilon_lower_bound": 2,  # 200 per side can show up to ~3.2 (README, Preconditions)
        "max_auc_increase": 0.0,
        "suppressions": [{"condition": "auc", "reason": "demo", "expires": "2000-01-01"}],
    }
    second = run_cli("run", write_policy(folder, "second", gate_), "--baseline", previous)
    assert second.returncode == 0, second.stdout + second.stderr
    result = json.loads((folder / "out-second" / "result.json").read_text())
    for attack in result["attacks"]:
        low, high = attack["auc_ci"]
        assert low <= attack["auc"] <= high
        assert set(attack["tpr_at_fpr_ci"]) == set(attack["tpr_at_fpr"])
        assert attack["ci_level"] == 0.95 and attack["ci_resamples"] == 500
        bound = attack["epsilon_lower_bound"]
        assert {"value", "threshold", "tpr", "fpr", "tpr_ci", "fpr_ci", "delta"} <= set(bound)
        assert bound["delta"] == 1e-5
        assert [s["name"] for s in attack["slices"]] == ["correct", "misclassified"]
        assert all("auc_ci" in row for row in attack["per_class"])
    # Same seed, same scores: the baseline run's intervals, bit for bit.
    assert result["attacks"][0]["auc_ci"] == base["attacks"][0]["auc_ci"]
    auc, tpr, epsilon, increase = result["gate"]["conditions"]
    assert auc["statistic"] == "upper" and auc["value"] == result["attacks"][0]["auc_ci"][1]
    assert tpr["statistic"] == "upper" and tpr["id"] == "tpr_at_fpr@0.05"
    assert epsilon["metric"] == "epsilon_lower_bound"
    assert increase["value"] == 0.0 and increase["passed"]
    assert increase["baseline_value"] == increase["current_value"]
    assert result["baseline"]["path"] == str(previous.resolve())
    assert result["gate"]["evaluated_on"]

    base["schema_version"] = SCHEMA_VERSION + 1
    (folder / "future.json").write_text(json.dumps(base))
    refused = run_cli("run", folder / "second.yaml", "--baseline", folder / "future.json")
    assert refused.returncode == EXIT_INVALID
    (error,) = without_progress(refused.stderr)
    assert error.startswith("error: baseline: ") and "schema_version" in error


