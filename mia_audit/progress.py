"""How the core reports progress without knowing about terminals (the CLI supplies one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

Advance = Callable[[int], None]
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
        yield lambda n: None

    def note(self, message: str) -> None:
        self.notes.append(message)
