"""The gate's statistics end to end through `mia-audit run`: upper confidence bounds, the epsilon
bound, a baseline and an expired waiver on the digits target."""

from __future__ import annotations

import json
from pathlib import Path

from mia_audit.errors import EXIT_INVALID
from mia_audit.result import SCHEMA_VERSION
from tests.conftest import (
    BASE_POLICY,
    RunCli,
    merged_policy,
    policy_file,
    without_progress,
)

#: The loss and confidence attacks with 500 bootstrap resamples, reported in JSON, Markdown and
#: JUnit.
AUDIT = merged_policy(
    BASE_POLICY,
    attacks=["loss", "confidence"],
    statistics={"n_resamples": 500},
    outputs={"formats": ["json", "markdown", "junit"]},
    runtime={"seed": 3},
)


def test_end_to_end_upper_statistic_and_baseline(folder: Path, run_cli: RunCli) -> None:
    first = run_cli("run", policy_file(folder, "first", AUDIT, gate={"max_auc": 0.99}), "-q")
    assert first.returncode == 0, first.stderr
    previous = folder / "out-first" / "result.json"
    base = json.loads(previous.read_text())

    gate_ = {
        "max_auc": {"max": 0.99, "statistic": "upper"},
        "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.99, "statistic": "upper"}],
        "max_epsilon_lower_bound": 2,  # 200 per side can show up to ~3.2 (docs/preconditions.md)
        "max_auc_increase": 0.0,
        "suppressions": [{"condition": "auc", "reason": "demo", "expires": "2000-01-01"}],
    }
    second = run_cli(
        "run", policy_file(folder, "second", AUDIT, gate=gate_), "--baseline", previous
    )
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

    # A baseline edited after its run (its AUC raised, which would hide any increase) is refused.
    edited = json.loads(previous.read_text())
    edited["attacks"][0]["auc"] = 0.99
    (folder / "edited.json").write_text(json.dumps(edited))
    refused = run_cli("run", folder / "second.yaml", "--baseline", folder / "edited.json")
    assert refused.returncode == EXIT_INVALID
    (error,) = without_progress(refused.stderr)
    assert error.startswith("error: baseline: ") and "sha256: does not match" in error
