"""Atomic file writes: write a temporary file in the same folder, then rename over the target.

A reader (or a later run) sees either the old file or the complete new one, never half of it.
The file gets the permissions of the user's umask, like any file the user creates (a temporary
file from `tempfile` would be private, 0600, and stay so after the rename).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary, descriptor = _create_temporary(path)
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new, empty `.<name>.<random>.tmp` beside `path`, opened for writing (mode 0666 less
    the umask: the kernel applies the umask to what `open` asks for)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return temporary, os.open(temporary, _NEW_FILE, 0o666)
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
