"""The on-disk cache: one content-addressed store for logits and reference-model weights.

A speed-up, never a source of truth.

Every entry is two files: the payload (``<key>.npy``, ``<key>.pt``) and its integrity record
beside it (``<key>.json``): the entry's key, the payload's sha256 and size, and for arrays their
shape and dtype. A read verifies all of it. A mismatch, a missing or unreadable record, a payload
that does not parse: the entry is a miss, both files are removed, the caller recomputes (and
writes the entry again), and ``notify`` hears why. Only an entry that is simply absent is a
silent miss. Nothing here raises for a damaged entry, so a damaged cache never fails a run, this
one or the next.

Records only catch damage (a torn or flipped file, an entry copied under another key): whoever
can write the cache can write consistent records. The callers therefore also check behaviour:
cached logits are re-computed on a random sample of rows (`mia_audit.models.spot_check`), cached
reference models must fit their own training samples better than held-out ones
(`mia_audit.references.fit`). docs/security.md says what the cache trusts.

The record is written before the payload (each atomically), so a payload on disk always has its
record: an interrupted write leaves at most a record without a payload, which is a plain miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from mia_audit.progress import Notify
from mia_audit.store.atomic import atomic_write_bytes, atomic_write_text
from mia_audit.store.hashing import json_sha256

if TYPE_CHECKING:
    import torch


#: Part of every key: bumping it makes every older entry a plain miss. 2: integrity records.
CACHE_FORMAT = 2


class DamagedEntry(Exception):
    """A cache entry failed verification; `reason` says how (one clause, for a note)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def record_path(path: Path) -> Path:
    """Where the integrity record of the payload at `path` lives."""
    return path.with_suffix(".json")


def write_entry(path: Path, key: str, payload: bytes, **fields: Any) -> None:
    """Write `payload` and its record (record first; both atomically)."""
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        **fields,
    }
    atomic_write_text(record_path(path), json.dumps(record, sort_keys=True) + "\n")
    atomic_write_bytes(path, payload)


def read_entry(path: Path, key: str) -> tuple[bytes, dict[str, Any]] | None:
    """The verified payload and its record; None when there is no payload.

    Raises DamagedEntry when the payload is there but its record is missing, unreadable, names
    another key or format, or disagrees with the payload's size or sha256.
    """
    try:
        payload = path.read_bytes()
    except FileNotFoundError:  # absent; a record alone is an interrupted write, harmless
        return None
    except OSError as error:
        raise DamagedEntry(f"cannot be read ({error.strerror})") from None
    record = _read_record(record_path(path))
    if record.get("format") != CACHE_FORMAT or record.get("key") != key:
        raise DamagedEntry("has an integrity record that belongs to another entry")
    if record.get("size") != len(payload) or record.get("sha256") != _sha256(payload):
        raise DamagedEntry(
            "does not match its integrity record (sha256 differs: damaged or edited)"
        )
    return payload, record


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DamagedEntry("has no integrity record") from None
    except (OSError, ValueError):
        raise DamagedEntry("has an unreadable integrity record") from None
    if not isinstance(record, dict):
        raise DamagedEntry("has an unreadable integrity record")
    return record


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def discard_entry(path: Path) -> None:
    """Remove an entry (payload and record); what cannot be removed is overwritten later."""
    for part in (path, record_path(path)):
        with contextlib.suppress(OSError):
            part.unlink()


def refusal_note(what: str, reason: str, path: Path | None, remedy: str = "recomputed") -> str:
    """The note for a refused entry: what it held, why, and what replaces it."""
    where = f" ({path})" if path is not None else ""
    return f"cache: {what} {reason}; not used, {remedy}{where}"


#: Trained weights as the model store holds them (names to CPU tensors).
StateDict = dict[str, "torch.Tensor"]
T = TypeVar("T")


def entry_key(namespace: str, parts: dict[str, Any]) -> str:
    """The key of an entry: a hash of everything its value depends on."""
    return json_sha256({"namespace": namespace, "format": CACHE_FORMAT, **parts})


class Codec(Protocol[T]):
    """How one kind of value becomes a payload (with record fields) and back, verified."""

    suffix: str

    def encode(self, value: T) -> tuple[bytes, dict[str, Any]]: ...

    def decode(self, payload: bytes, record: dict[str, Any]) -> T:
        """The value of a payload whose record checked out; DamagedEntry if it is not one."""
        ...


class ContentStore(Generic[T]):
    """Content-addressed entries under `root`, each verified on every read.

    `notify` hears of every entry refused (see the module docstring) and `refused` keeps those
    notes; `remedy` says what replaces a refused entry ("recomputed", "retrained"). Without a
    root nothing is stored, unless `in_memory` keeps the values for the run. `hits` and
    `misses` count verified reads and misses.
    """

    def __init__(
        self,
        root: Path | None,
        codec: Codec[T],
        *,
        notify: Notify | None = None,
        remedy: str = "recomputed",
        describe: Callable[[str], str] = lambda key: "an entry",
        in_memory: bool = False,
    ) -> None:
        self.root = root
        self.codec = codec
        self.notify = notify
        self.remedy = remedy
        self.describe = describe
        self.hits = 0
        self.misses = 0
        self.refused: list[str] = []
        self._memory: dict[str, T] | None = {} if in_memory and root is None else None

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}{self.codec.suffix}"

    def __contains__(self, key: str) -> bool:
        if self.root is None:
            return self._memory is not None and key in self._memory
        return self.path(key).is_file()

    def get(self, key: str, what: str | None = None) -> T | None:
        """The verified value, or None (a miss: absent, or refused with a note)."""
        if self.root is None:
            return None if self._memory is None else self._memory.get(key)
        try:
            entry = read_entry(self.path(key), key)
            value = None if entry is None else self.codec.decode(*entry)
        except DamagedEntry as damaged:
            self.refuse(key, damaged.reason, what)
            return None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: T) -> None:
        if self.root is None:
            if self._memory is not None:
                self._memory[key] = value
            return
        payload, fields = self.codec.encode(value)
        write_entry(self.path(key), key, payload, **fields)

    def refuse(self, key: str, reason: str, what: str | None = None) -> None:
        """Drop an entry found wanting (by its record or by a behaviour check), with a note."""
        path = None
        if self.root is not None:
            path = self.path(key)
            discard_entry(path)
        elif self._memory is not None:
            self._memory.pop(key, None)
        self.misses += 1
        note = refusal_note(what or self.describe(key), reason, path, self.remedy)
        self.refused.append(note)
        if self.notify is not None:
            self.notify(note)

    def discard(self, key: str) -> None:
        """Drop an entry without a note (its source was refused and noted already)."""
        if self.root is not None:
            discard_entry(self.path(key))
        elif self._memory is not None:
            self._memory.pop(key, None)


class ArrayCodec:
    """numpy arrays as .npy (never pickled); the record holds their shape and dtype."""

    suffix = ".npy"

    def encode(self, value: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        array = np.ascontiguousarray(value)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), {"shape": list(array.shape), "dtype": array.dtype.str}

    def decode(self, payload: bytes, record: dict[str, Any]) -> np.ndarray:
        try:
            value = np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise DamagedEntry("is not a readable array") from None
        if not isinstance(value, np.ndarray):
            raise DamagedEntry("is not a single array")
        if list(value.shape) != record.get("shape") or value.dtype.str != record.get("dtype"):
            raise DamagedEntry("has a shape or dtype other than its integrity record's")
        return value


class StateDictCodec:
    """State dicts through torch.save, read back with weights_only=True (never runs code)."""

    suffix = ".pt"

    def encode(self, value: StateDict) -> tuple[bytes, dict[str, Any]]:
        import torch

        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue(), {"tensors": len(value)}

    def decode(self, payload: bytes, record: dict[str, Any]) -> StateDict:
        import torch

        try:
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception:  # any parse failure of a file that is not a state dict
            raise DamagedEntry("is not a readable state dict") from None
        if not isinstance(state, dict) or not all(
            isinstance(name, str) and isinstance(value, torch.Tensor)
            for name, value in state.items()
        ):
            raise DamagedEntry("is not a state dict (names to tensors)")
        return state


def logits_store(
    cache_dir: Path | None, notify: Notify | None = None, *, in_memory: bool = False
) -> ContentStore[np.ndarray]:
    """Logits (and other arrays) under `cache_dir/logits`; without a folder nothing is kept,
    unless `in_memory` keeps them for the run."""
    root = None if cache_dir is None else cache_dir / "logits"
    return ContentStore(root, ArrayCodec(), notify=notify, in_memory=in_memory)


def model_store(cache_dir: Path | None, notify: Notify | None = None) -> ContentStore[StateDict]:
    """Reference-model weights under `cache_dir/models` (in memory for the run without one)."""
    root = None if cache_dir is None else cache_dir / "models"
    return ContentStore(
        root,
        StateDictCodec(),
        notify=notify,
        remedy="retrained",
        describe=lambda key: f"reference model {key[:12]}",
        in_memory=True,
    )
