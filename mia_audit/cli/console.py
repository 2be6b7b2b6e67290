"""Progress output for the CLI, on stderr: rich progress bars on a terminal, plain timestamped
lines everywhere else (CI logs), and notes as plain lines unless quiet.

A CI runner's log is not a terminal: bars would print nothing, and a job that prints nothing
for a while looks hung (and some CI systems kill it). So when stderr is not a TTY each stage
gets a plain line when it starts, a line at a steady cadence while it runs (items done of the
total, the stage's detail such as models trained and the epoch, throughput and time left),
and a line when a stage that took a while is done. The cadence is `interval` seconds (10 by
default, `MIA_AUDIT_PROGRESS_INTERVAL` overrides it): never more than one progress line per
interval, whether the core reports often, rarely or not at all (a background heartbeat covers
stages that report nothing, such as an attack scoring). `-v` prints every stage's start and end
too; `-q` prints nothing but errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from typing import TextIO

from mia_audit.progress import Advance
from mia_audit.reports.text import duration_text, printable

#: Seconds between progress lines in a CI log.
DEFAULT_INTERVAL = 10.0
INTERVAL_VARIABLE = "MIA_AUDIT_PROGRESS_INTERVAL"


def progress_interval(environ: dict[str, str] | None = None) -> float:
    """The cadence of progress lines: `MIA_AUDIT_PROGRESS_INTERVAL` seconds, else 10."""
    value = (os.environ if environ is None else environ).get(INTERVAL_VARIABLE, "")
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_INTERVAL
    return seconds if seconds >= 0 else DEFAULT_INTERVAL


@dataclass
class _Stage:
    """One running stage, as the log lines describe it."""

    description: str
    total: int | None
    started: float
    done: int = 0
    detail: str | None = None
    lines: int = field(default=0)

    def progress_text(self, now: float) -> str:
        elapsed = now - self.started
        parts = []
        if self.total:
            share = min(100.0, 100.0 * self.done / self.total)
            parts.append(f"{self.done}/{self.total} images ({share:.0f} %)")
        elif self.done:
            parts.append(f"{self.done} images")
        if self.detail:
            parts.append(self.detail)
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.1f} images/s")
            if self.total and self.done < self.total:
                parts.append(f"ETA {duration_text((self.total - self.done) / rate)}")
        parts.append(f"running {duration_text(elapsed)}")
        return ", ".join(parts)


@dataclass(eq=False)
class _LineLog:
    """Plain progress lines with a timestamp, at most one progress line per `interval`."""

    stream: TextIO
    interval: float
    verbose: bool
    clock: Callable[[], float]
    wallclock: Callable[[], datetime]
    heartbeat: InitVar[bool]
    stages: list[_Stage] = field(default_factory=list, init=False)
    last_line: float = field(default=float("-inf"), init=False)
    lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self, heartbeat: bool) -> None:
        if heartbeat and self.interval > 0:
            self._thread = threading.Thread(target=self._beat, name="mia-audit-progress")
            self._thread.daemon = True
            self._thread.start()

    def write(self, text: str) -> None:
        with self.lock:
            stamp = self.wallclock().strftime("%H:%M:%S")
            print(f"[{stamp}] {printable(text)}", file=self.stream, flush=True)
            self.last_line = self.clock()

    def enter(self, description: str, total: int | None) -> _Stage:
        with self.lock:
            now = self.clock()
            stage = _Stage(description, total, now)
            self.stages.append(stage)
            if self.verbose or now - self.last_line >= self.interval:
                size = f" ({total} images)" if total else ""
                self.write(f"{description}: started{size}")
                stage.lines += 1
            return stage

    def advance(self, stage: _Stage, n: int, detail: str | None) -> None:
        with self.lock:
            stage.done += n
            if detail is not None:
                stage.detail = detail
            self.tick()

    def tick(self) -> None:
        """A progress line for the innermost stage when the interval has passed."""
        with self.lock:
            now = self.clock()
            if not self.stages or now - self.last_line < self.interval:
                return
            stage = self.stages[-1]
            self.write(f"{stage.description}: {stage.progress_text(now)}")
            stage.lines += 1

    def leave(self, stage: _Stage) -> None:
        with self.lock:
            now = self.clock()
            if stage in self.stages:
                self.stages.remove(stage)
            elapsed = now - stage.started
            if self.verbose or (stage.lines and elapsed >= self.interval):
                rate = f", {stage.done / elapsed:.1f} images/s" if stage.done and elapsed else ""
                size = f" ({stage.done} images{rate})" if stage.done else ""
                self.write(f"{stage.description}: done in {duration_text(elapsed)}{size}")

    def close(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        """Keep the cadence while a stage reports nothing (an attack scoring, a long batch)."""
        while not self._stop.wait(min(1.0, self.interval / 2)):
            self.tick()


class ConsoleProgress:
    """Progress on stderr: bars on a terminal, timestamped lines otherwise; notes unless quiet.

    `verbose` adds a line for every stage's start and end in the plain mode. `clock`,
    `wallclock` and `heartbeat` exist for the tests of the cadence.
    """

    def __init__(
        self,
        *,
        quiet: bool = False,
        verbose: bool = False,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = datetime.now,
        heartbeat: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.stream.isatty()
        self.lines: _LineLog | None = None
        if not quiet and not self.bars:
            chosen = progress_interval() if interval is None else interval
            self.lines = _LineLog(self.stream, chosen, verbose, clock, wallclock, heartbeat)

    @contextlib.contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Advance]:
        if self.lines is not None:
            with self._line_stage(self.lines, description, total) as advance:
                yield advance
        elif self.bars:
            with self._bar_stage(description, total) as advance:
                yield advance
        else:
            yield _ignore

    @contextlib.contextmanager
    def _line_stage(self, log: _LineLog, description: str, total: int | None) -> Iterator[Advance]:
        stage = log.enter(description, total)

        def advance(n: int, /, detail: str | None = None) -> None:
            log.advance(stage, n, detail)

        try:
            yield advance
        finally:
            log.leave(stage)

    @contextlib.contextmanager
    def _bar_stage(self, description: str, total: int | None) -> Iterator[Advance]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("{task.description}", markup=False),  # attack ids are not markup
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=Console(file=self.stream), transient=True) as bar:
            title = printable(description)
            task = bar.add_task(title, total=total)

            def advance(n: int, /, detail: str | None = None) -> None:
                if detail is not None:
                    bar.update(task, description=f"{title} ({printable(detail)})")
                bar.advance(task, n)

            yield advance

    def say(self, message: str) -> None:
        """A timestamped line in the plain mode (what the run is about to do); nothing on a
        terminal, where the bars say it, or when quiet."""
        if self.lines is not None:
            self.lines.write(message)

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"note: {printable(message)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.lines is not None:
            self.lines.close()


def _ignore(n: int, /, detail: str | None = None) -> None:
    """Quiet: progress is not shown."""
