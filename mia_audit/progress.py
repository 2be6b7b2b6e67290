"""How the core reports progress without knowing about terminals (the CLI supplies one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Advance(Protocol):
    """Called as work gets done: `n` more items (images) processed, and optionally what the
    stage is doing now (`detail`, e.g. "epoch 3/20"), for the progress lines."""

    def __call__(self, n: int, /, detail: str | None = None) -> None: ...


def ignore_advance(n: int, /, detail: str | None = None) -> None:
    """An `Advance` for callers that do not report progress."""


#: Hears a one-line note for the user (a fallback taken, a cache entry refused, ...).
Notify = Callable[[str], None]


class Progress(Protocol):
    def stage(
        self, description: str, total: int | None = None
    ) -> contextlib.AbstractContextManager[Advance]:
        """A unit of work; call the yielded function with the number of items done."""
        ...

    def note(self, message: str) -> None:
        """Something the user should know (a fallback taken, data split off, ...)."""
        ...


class SilentProgress:
    def __init__(self) -> None:
        self.notes: list[str] = []

    @contextlib.contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield ignore_advance

    def note(self, message: str) -> None:
        self.notes.append(message)
