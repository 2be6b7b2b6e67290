"""Interrupting `mia-audit run` while it trains reference models (Ctrl-C, then SIGTERM).

The audit trains 4 offline LiRA reference models one at a time (CPU). The first run gets SIGINT
as soon as its first model file is in the cache, the second run SIGTERM as soon as it has added
one more. Each must stop within seconds with exit code 3 and one "interrupted" line on stderr
(no traceback), leave no temporary or torn file in the cache and write no report. A third run
completes, training only the models the interrupted runs had not finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import CONSOLE_SCRIPT, DigitsTarget, RunCli

MODELS = 4
#: How long the process may take to exit after the signal.
PROMPT_SECONDS = 15.0
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
class Interrupted:
    """One run stopped by a signal, and what it left behind."""

    returncode: int
    stderr: str
    seconds_to_exit: float
    models_before: int
    models_after: int
    temporary_files: list[Path]
    report_files: list[str]


def model_files(folder: Path) -> list[Path]:
    return sorted((folder / ".mia-cache" / "models").rglob("*.pt"))


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A shell without job control starts background commands with SIGINT ignored, and a
    child inherits that; the child started here needs the ordinary Ctrl-C behaviour (a
    handled signal is reset to its default in the child)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(folder: Path, policy: Path, signum: signal.Signals) -> Interrupted:
    """Start a run, wait until it has cached one more model, send `signum`, wait for exit."""
    before = len(model_files(folder))
    with _sigint_not_ignored():
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "run", str(policy)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        _wait_for_models(folder, before + 1, process)
        process.send_signal(signum)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=PROMPT_SECONDS)
        seconds = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    leftovers = [p for p in (folder / ".mia-cache").rglob("*") if p.name.endswith(".tmp")]
    report = sorted(p.name for p in (folder / "report").glob("*"))
    return Interrupted(
        process.returncode, stderr, seconds, before, len(model_files(folder)), leftovers, report
    )


def _wait_for_models(folder: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180
    while len(model_files(folder)) < count:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it was interrupted: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no reference model {count} was cached within 180 s")
        time.sleep(0.05)


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
    assert run.seconds_to_exit < PROMPT_SECONDS
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


def test_sigterm_is_not_swallowed_by_a_broad_except(capsys: pytest.CaptureFixture[str]) -> None:
    """Code that takes any Exception for a recoverable failure (the model cache treats an
    unreadable file as missing and deletes it; wrappers around user code) must not swallow a
    SIGTERM arriving while it runs: the run still stops with exit code 3."""
    import typer

    from mia_audit.cli.app import _guard

    with pytest.raises(typer.Exit) as exited, _guard(verbose=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, at once
        except Exception:
            pytest.fail("SIGTERM was caught as an ordinary Exception")
    assert exited.value.exit_code == 3
    assert capsys.readouterr().err.startswith("error: interrupted")
