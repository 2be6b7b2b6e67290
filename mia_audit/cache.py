"""A content-addressed on-disk cache of numpy arrays (logits, scores).

Keys are hashes of everything the value depends on; entries are written atomically, and an
unreadable entry is treated as missing (and replaced), so an interrupted run never poisons it.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from mia_audit._atomic import atomic_write_bytes
from mia_audit.hashing import json_sha256

CACHE_FORMAT = 1


class ArrayCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def key(self, namespace: str, parts: dict[str, Any]) -> str:
        return json_sha256({"namespace": namespace, "format": CACHE_FORMAT, **parts})

    def _path(self, namespace: str, key: str) -> Path:
        assert self.root is not None
        return self.root / namespace / key[:2] / f"{key}.npy"

    def get(self, namespace: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(namespace, key)
        try:
            value = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += 1
            return None
        self.hits += 1
        return np.asarray(value)

    def put(self, namespace: str, key: str, value: np.ndarray) -> None:
        if self.root is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        atomic_write_bytes(self._path(namespace, key), buffer.getvalue())
