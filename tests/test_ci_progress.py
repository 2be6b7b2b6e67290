"""Progress in CI logs: plain timestamped lines when stderr is not a terminal (issue 12, 1).

The cadence is tested on `ConsoleProgress` with a fake clock (no timed assertions); the lines
themselves through the console script with stderr to a pipe, as every CI runner runs it.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from mia_audit.cli.console import ConsoleProgress
from tests.conftest import CONSOLE_SCRIPT, DigitsTarget

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain_progress(clock: FakeClock, **options: bool) -> tuple[ConsoleProgress, io.StringIO]:
    stream = io.StringIO()  # not a TTY
    progress = ConsoleProgress(
        stream=stream,
        interval=10.0,
        clock=clock,
        wallclock=lambda: datetime(2026, 1, 2, 3, 4, 5),
        heartbeat=False,
        **options,
    )
    return progress, stream


def test_lines_keep_a_steady_cadence_however_often_the_core_reports() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(clock)
    with progress.stage("training 2 online reference models", 1000) as advance:
        for step in range(100):  # a report every 0.5 s for 50 s
            clock.now += 0.5
            advance(10, f"1 of 2 models trained, epoch {step // 50 + 1}/2")
    lines = stream.getvalue().splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    assert lines[0] == "[03:04:05] training 2 online reference models: started (1000 images)"
    progress_lines = lines[1:-1]
    # One line per 10 s of the 50 s: never more than one line per interval.
    assert len(progress_lines) == 5
    assert progress_lines[0].endswith(
        "200/1000 images (20 %), 1 of 2 models trained, epoch 1/2, 20.0 images/s, ETA 40s, "
        "running 10s"
    )
    assert "epoch 2/2, 20.0 images/s, ETA 10s" in progress_lines[3]
    assert "1000/1000 images (100 %)" in progress_lines[-1]
    assert lines[-1] == "[03:04:05] training 2 online reference models: done in 50s (1000 " \
        "images, 20.0 images/s)"  # fmt: skip


def test_short_stages_do_not_flood_the_log_and_verbose_shows_each() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(clock)
    for attack in ("loss", "confidence", "entropy"):
        with progress.stage(f"attack {attack}"):
            clock.now += 1.0
    assert stream.getvalue().splitlines() == ["[03:04:05] attack loss: started"]

    verbose, verbose_stream = plain_progress(clock, verbose=True)
    for attack in ("loss", "confidence"):
        with verbose.stage(f"attack {attack}"):
            clock.now += 1.0
    assert [line[11:] for line in verbose_stream.getvalue().splitlines()] == [
        "attack loss: started",
        "attack loss: done in 1s",
        "attack confidence: started",
        "attack confidence: done in 1s",
    ]


def test_quiet_prints_nothing_and_notes_stay_plain() -> None:
    clock = FakeClock()
    quiet, stream = plain_progress(clock, quiet=True)
    with quiet.stage("target inference (1 view)", 10) as advance:
        clock.now += 60
        advance(10)
    quiet.note("hidden")
    assert stream.getvalue() == ""
    loud, loud_stream = plain_progress(clock)
    loud.note("cache: x\n::error::forged")
    assert loud_stream.getvalue() == "note: cache: x\\n::error::forged\n"


# --- the console script, stderr to a pipe -------------------------------------------------------


@pytest.fixture(scope="module")
def folder(digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_target.copy_to(tmp_path_factory.mktemp("progress") / "target")


def write_policy(folder: Path, name: str, **changes: object) -> Path:
    document = yaml.safe_load((folder / "policy-state-dict.yaml").read_text())
    document |= {"gate": {"max_auc": 0.99}, **changes}
    document["runtime"]["device"] = "cpu"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference_policy(folder: Path) -> Path:
    recipe = {
        "epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0,
        "augment": [],
    }  # fmt: skip
    attacks = ["loss", {"name": "lira", "reference_models": 2}]
    data = yaml.safe_load((folder / "policy-state-dict.yaml").read_text())["data"]
    data["max_per_side"] = 60  # small models train fast; the lines are the same
    return write_policy(folder, "reference", attacks=attacks, reference_training=recipe, data=data)


def run_piped(*args: str | Path, interval: str) -> subprocess.CompletedProcess[str]:
    """The console script with stderr to a pipe (not a terminal), as in a CI runner."""
    env = {**os.environ, "MIA_AUDIT_PROGRESS_INTERVAL": interval}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *map(str, args)],
        capture_output=True,  # stderr to a pipe, not a terminal
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_a_run_in_ci_prints_timestamped_progress(reference_policy: Path) -> None:
    # Interval 0: a line at every report, so that the test sees the training lines whatever
    # the machine's speed (the cadence itself is tested above).
    completed = run_piped("run", reference_policy, interval="0")
    assert completed.returncode in (0, 1), completed.stderr
    lines = completed.stderr.splitlines()
    progress = [line for line in lines if not line.startswith("note: ")]
    assert progress and all(STAMP.match(line) for line in progress), progress
    assert "mia-audit 0.1.0" in progress[0] and "device cpu" in progress[0]
    training = [line for line in progress if "training 2 online reference models:" in line]
    assert any(
        re.search(r"\d+/\d+ images \(\d+ %\), [01] of 2 models trained, epoch [12]/2, "
                  r"[\d.]+ images/s, ETA \d+s", line)
        for line in training
    ), training  # fmt: skip
    assert any("target inference (1 view)" in line for line in progress)  # not "(1 views)"
    assert completed.stdout.startswith(("PASS", "FAIL"))


def test_quiet_and_verbose_runs(folder: Path) -> None:
    policy = write_policy(folder, "plain", attacks=["loss", "confidence"])
    quiet = run_piped("run", policy, "-q", interval="0")
    assert quiet.returncode in (0, 1), quiet.stderr
    assert quiet.stderr == ""
    verbose = run_piped("run", policy, "-v", interval="3600")
    assert verbose.returncode in (0, 1), verbose.stderr
    stages = [line[11:] for line in verbose.stderr.splitlines() if STAMP.match(line)]
    # Every stage starts and ends in the log with -v, even with a long interval.
    for stage in ("loading the data and the model", "attack loss", "statistics confidence"):
        assert f"{stage}: started" in stages
        assert any(line.startswith(f"{stage}: done in ") for line in stages)
