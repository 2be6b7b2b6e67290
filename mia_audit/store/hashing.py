"""Content hashes for provenance and cache keys (sha256, hex)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: Path) -> str:
    """Hash of a folder: every file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def path_sha256(path: Path) -> str:
    return tree_sha256(path) if path.is_dir() else file_sha256(path)


def arrays_sha256(*arrays: np.ndarray) -> str:
    """Hash of arrays' dtype, shape and bytes (C order)."""
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        if contiguous.dtype.kind in "OUS":
            digest.update("\x1f".join(map(str, contiguous.ravel())).encode())
        else:
            digest.update(contiguous.data)
    return digest.hexdigest()


def json_sha256(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
