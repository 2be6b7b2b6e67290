"""Terminal output for the CLI: rich progress bars on stderr, plain notes, the summary."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from mia_audit.progress import Advance
from mia_audit.reports.text import printable


class ConsoleProgress:
    """Progress bars on stderr when it is a terminal; notes as plain lines unless quiet."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.stream.isatty()

    @contextlib.contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Advance]:
        if not self.bars:
            yield lambda n: None
            return
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
            task = bar.add_task(printable(description), total=total)
            yield lambda n: bar.advance(task, n)

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"note: {printable(message)}", file=self.stream, flush=True)
