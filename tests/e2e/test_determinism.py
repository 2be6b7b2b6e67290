"""The same policy, run twice from scratch (no cache, separate processes with different hash
seeds), writes the same result.json, apart from what must differ: timings, paths and the date.

Covers every target-only attack (including the learned one and per-class thresholds, which fit
models), bootstrap confidence intervals, the epsilon lower bound and the gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import DigitsTarget, RunCli, without_keys

#: Keys whose values legitimately differ between two runs of one policy.
VARYING_KEYS = frozenset({"seconds", "timings", "path", "evaluated_on"})

POLICY = {
    "version": 1,
    "name": "determinism",
    "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
    "data": {"members": "members.npz", "non_members": "non_members.npz"},
    "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
    "attacks": [
        "loss",
        "confidence",
        "entropy",
        "modified_entropy",
        {"name": "logit_margin", "queries": 2},
        "class_threshold",
        {"name": "learned", "model": "gradient_boosting"},
        {"name": "learned", "id": "learned_mlp", "model": "mlp", "folds": 3},
    ],
    "statistics": {"n_resamples": 300, "confidence_level": 0.9},
    # Classes of 5 samples are a smoke test of class_auc, not evidence.
    "preconditions": {"allow_small_audit": True},
    "gate": {
        "max_auc": {"max": 0.99, "statistic": "upper"},
        "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.99}],
        "max_epsilon_lower_bound": 10.0,
        "max_class_auc": {"max": 0.99, "min_samples": 5},
    },
    "outputs": {"dir": "report", "formats": ["json"]},
    "runtime": {"device": "cpu", "seed": 7, "cache_dir": ".mia-cache"},
}


def test_two_runs_from_scratch_write_the_same_result(
    digits_target: DigitsTarget,
    tmp_path: Path,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = digits_target.copy_to(tmp_path / "x")
    policy = folder / "determinism.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False), encoding="utf-8")
    results = []
    for run in (1, 2):
        monkeypatch.setenv("PYTHONHASHSEED", str(run))  # set and dict orders must not matter
        completed = run_cli("run", policy, "--output-dir", folder / f"report-{run}", "-q")
        assert completed.returncode == 0, completed.stderr
        assert (folder / ".mia-cache").is_dir()  # it cached logits, which the next run lacks
        shutil.rmtree(folder / ".mia-cache")
        results.append(json.loads((folder / f"report-{run}" / "result.json").read_text()))
    # result.json's own sha256 covers the timings too, so it differs with them.
    first, second = (
        without_keys({k: v for k, v in result.items() if k != "sha256"}, VARYING_KEYS)
        for result in results
    )
    for key in first:  # one key at a time, for a readable failure
        assert first[key] == second[key], key
    assert first == second
    assert {attack["id"] for attack in results[0]["attacks"]} >= {"class_threshold", "learned"}
    assert all(attack["auc_ci"] for attack in results[0]["attacks"])
