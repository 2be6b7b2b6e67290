"""Interrupting `mia-audit run` while it trains reference models (Ctrl-C, then SIGTERM).

The audit trains 4 offline LiRA reference models one at a time (CPU). The first run gets SIGINT
as soon as its first model file is in the cache, the second run SIGTERM as soon as it has added
one more. Each must stop promptly, with the model it was training when the signal came (counted
in models, not seconds, so a slow machine cannot fail it), with exit code 3 and one
"interrupted" line on stderr (no traceback), leave no temporary or torn file in the cache and
write no report. A third run completes, training only the models the interrupted runs had not
finished.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import DigitsTarget, RunCli
from tests.interrupting import Interrupted, interrupt, model_files

MODELS = 4
POLICY = {
    "version": 1,
    "name": "interrupted",
    "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
    "data": {
        "members": "members.npz",
        "non_members": "non_members.npz",
        "population": "population.npz",
    },
    "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
    "attacks": ["loss", {"name": "lira", "reference_models": MODELS, "mode": "offline"}],
    # The target's own recipe (mia_audit.demo), so that cached models fit their plan and are
    # reused: a recipe that does not fit cannot be told from swapped files and retrains.
    "reference_training": {
        "epochs": 8,
        "train_size": 150,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 0.001,
        "weight_decay": 0.0,
        "augment": [],
    },
    "gate": {"max_auc": 0.99},
    "outputs": {"dir": "report", "formats": ["json"]},
    "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
}












@dataclass(frozen=True)
class Runs:
    folder: Path
    interrupted: dict[str, Interrupted]
    final: subprocess.CompletedProcess[str]
    models_before_final: int


@pytest.fixture(scope="module")
def runs(
    digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli
) -> Runs:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("interrupt") / "x")
    policy = folder / "policy-interrupt.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False), encoding="utf-8")
    interrupted = {
        "SIGINT": interrupt(folder, policy, signal.SIGINT),
        "SIGTERM": interrupt(folder, policy, signal.SIGTERM),
    }
    before_final = len(model_files(folder))
    return Runs(folder, interrupted, run_cli("run", policy), before_final)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_stops_the_run_promptly_and_cleanly(runs: Runs, signame: str) -> None:
    run = runs.interrupted[signame]
    assert run.returncode == 3, run.stderr
    # Promptly: no model after the one being saved as the signal came, however slow the machine.
    assert run.models_after <= run.models_at_signal + 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0], run.stderr
    assert run.models_after > run.models_before  # it was stopped after caching a model
    assert run.temporary_files == []
    assert run.report_files == []  # no report, not even a partial one


def test_interrupted_runs_leave_only_loadable_models(runs: Runs) -> None:
    assert runs.models_before_final >= 2
    assert runs.models_before_final < MODELS, "interrupted too late to test resuming"
    for path in model_files(runs.folder):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and state, path
    assert not list((runs.folder / ".mia-cache").rglob("*.tmp"))


def test_rerun_reuses_the_models_the_interrupted_runs_finished(runs: Runs) -> None:
    final = runs.final
    assert final.returncode in (0, 1), final.stderr
    reused = runs.models_before_final
    match = re.search(r"reference models: (\d+) trained, (\d+) reused from the cache", final.stderr)
    assert match, final.stderr
    assert (int(match[1]), int(match[2])) == (MODELS - reused, reused)
    assert "note: cache:" not in final.stderr  # nothing the interrupts left was refused
    assert len(model_files(runs.folder)) == MODELS
    result = json.loads((runs.folder / "report" / "result.json").read_text())
    assert result["exit_code"] == final.returncode


