"""Progress lines in CI (stderr a pipe) from ConsoleProgress on a fake clock: a steady cadence, no
flood from short stages, nothing when quiet."""

from __future__ import annotations

import io
from datetime import datetime

from mia_audit.cli.console import ConsoleProgress
from tests.conftest import PROGRESS_LINE


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
    assert all(PROGRESS_LINE.match(line) for line in lines), lines
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


