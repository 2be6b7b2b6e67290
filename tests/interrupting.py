"""Interrupting a running `mia-audit run` with a signal once it has cached one more reference
model."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CI_LIMIT_SECONDS, CONSOLE_SCRIPT


@dataclass(frozen=True)
class Interrupted:
    """One run stopped by a signal, and what it left behind."""

    returncode: int
    stderr: str
    models_before: int
    #: Models cached when the signal was sent.
    models_at_signal: int
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
    """Start a run, wait until it has cached one more model, send `signum`, wait for exit.

    No wait here has a deadline below the CI limit: a slow machine makes this slower, never red.
    stderr goes to a file, not a pipe nobody reads while the run trains (a full pipe would
    block the run's progress lines, and so the run)."""
    before = len(model_files(folder))
    log = folder / f"interrupt-{signum.name}.log"
    with _sigint_not_ignored(), log.open("w") as stderr:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "run", str(policy)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        _wait_for_models(folder, before + 1, process, log)
        at_signal = len(model_files(folder))
        process.send_signal(signum)
        process.wait(timeout=CI_LIMIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    leftovers = [p for p in (folder / ".mia-cache").rglob("*") if p.name.endswith(".tmp")]
    report = sorted(p.name for p in (folder / "report").glob("*"))
    after = len(model_files(folder))
    text = log.read_text()
    return Interrupted(process.returncode, text, before, at_signal, after, leftovers, report)


def _wait_for_models(folder: Path, count: int, process: subprocess.Popen[str], log: Path) -> None:
    while len(model_files(folder)) < count:
        if process.poll() is not None:
            pytest.fail(f"the run ended before it was interrupted: {log.read_text()}")
        time.sleep(0.05)
