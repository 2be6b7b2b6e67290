"""What a run collects beside its result: time per phase, and the notes about what it trusted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from mia_audit.progress import Progress


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


class TrustNotes:
    """Notes on what the audit refused to trust (cache entries, reference models) or found
    wanting in its own setup: shown as they happen and kept for result.json."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.progress.note(message)
