"""Write a run's reports into `outputs.dir` as one set.

`result.json`, `report.html`, `summary.md` and `junit.xml` describe one run together: a reader
(a person, the GitHub Action, an artifact upload) must never find one run's result beside
another run's report. So the files are written in full into a hidden staging folder inside
`outputs.dir` (same filesystem), synced to disk, and only then moved into place one rename
each, with SIGINT and SIGTERM held back until the last rename is done. Before any rename, every
file about to be replaced or removed gets a hard link (or copy) in the staging folder, so a
rename that fails halfway is undone. Anything that fails before the renames leaves the previous
set exactly as it was, and the staging folder is always removed. (SIGKILL or a power cut during
the renames, a window of microseconds, can still leave a mixed set.)

A small manifest, `.mia-audit-outputs.json`, records which files the last write put there and
their hashes. A `run` that writes fewer formats than the previous one removes the previous
files it does not replace -- only files of the report names, listed in that manifest, and
unchanged since (a user's own file is never deleted). Concurrent writers to one folder take
turns (an exclusive lock on the folder). Files get the user's umask, like any new file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mia_audit.errors import AuditError

MANIFEST = ".mia-audit-outputs.json"
STAGING_PREFIX = ".mia-audit-staging-"
#: Every file name a report format writes: the only names the manifest may make us remove.
REPORT_FILENAMES = frozenset({"result.json", "report.html", "summary.md", "junit.xml"})
_MANIFEST_FORMAT = 1
#: "No space left", "quota exceeded", "file too large" (a file size limit).
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: Held back while the files are renamed into place.
_DEFERRED_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def write_report_set(
    files: Mapping[str, bytes],
    out_dir: Path,
    *,
    replace: bool,
    on_complete: Callable[[], None] | None = None,
) -> list[Path]:
    """Put `files` (name -> content) into `out_dir` as one set; return their paths.

    `replace`: this is the whole new set (`run`), so the previous set's other files go;
    otherwise (`render`) the files join the previous set, which keeps its other files.
    `on_complete` runs once the set is in place, before a held-back signal arrives (so the
    caller knows the reports were written when Ctrl-C interrupts it right after).
    Any OSError (a full disk, a quota, a read-only folder) is an AuditError naming the folder.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with _folder_lock(out_dir):
            _remove_abandoned_staging(out_dir)
            previous = _read_manifest(out_dir)
            kept = {} if replace else _still_present(previous, out_dir)
            manifest = {**kept, **{name: _sha256(content) for name, content in files.items()}}
            stale = [name for name in previous if name not in manifest]
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
            try:
                _stage(staging, files, manifest)
                _move_into_place(staging, out_dir, [*files, MANIFEST], stale, previous, on_complete)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise write_error(out_dir, error) from None
    return [out_dir / name for name in files]


def write_error(out_dir: Path, error: OSError) -> AuditError:
    reason = error.strerror or type(error).__name__
    advice = "free some space there" if error.errno in _NO_SPACE else "check the folder"
    return AuditError(
        f"outputs.dir: {out_dir}: cannot write the reports ({reason}); {advice}, or choose "
        "another folder with --output-dir; the previous reports there are untouched"
    )


# --- staging ----------------------------------------------------------------------------------


def _stage(staging: Path, files: Mapping[str, bytes], manifest: Mapping[str, str]) -> None:
    document = {"tool": "mia-audit", "format": _MANIFEST_FORMAT, "files": dict(manifest)}
    contents = {**files, MANIFEST: (json.dumps(document, indent=2) + "\n").encode()}
    for name, content in contents.items():
        write_synced(staging / name, content)
    _sync_folder(staging)


def write_synced(path: Path, content: bytes) -> None:
    """Create `path` (it must not exist) with the umask's permissions, write and fsync it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    """Make renames and new entries in `folder` durable (a no-op where folders cannot be
    opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on a folder
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- moving into place ------------------------------------------------------------------------


@dataclass
class _Change:
    """One file of the folder that is replaced or removed, and how to undo it."""

    name: str
    backup: Path | None  # the previous file's link or copy; None if there was none
    done: bool = False


def _move_into_place(
    staging: Path,
    out_dir: Path,
    names: list[str],
    stale: list[str],
    previous: Mapping[str, str],
    on_complete: Callable[[], None] | None,
) -> None:
    backups = staging / "previous"
    backups.mkdir()
    removable = [name for name in stale if _unchanged(out_dir / name, previous[name])]
    changes = [_Change(name, _backup(out_dir / name, backups)) for name in [*names, *removable]]
    with _signals_deferred():
        try:
            for change in changes:
                if change.name in names:
                    os.replace(staging / change.name, out_dir / change.name)
                else:
                    os.unlink(out_dir / change.name)
                change.done = True
        except OSError:
            _undo(changes, out_dir)
            raise
        _sync_folder(out_dir)
        if on_complete is not None:
            on_complete()


def _backup(path: Path, backups: Path) -> Path | None:
    """A hard link to `path` in `backups` (a copy where links are not supported), or None
    when `path` does not exist."""
    target = backups / path.name
    try:
        os.link(path, target)
    except FileNotFoundError:
        return None
    except OSError:  # no hard links here (some network or FAT filesystems): copy
        if not path.is_file():
            return None
        shutil.copy2(path, target)
    return target


def _undo(changes: list[_Change], out_dir: Path) -> None:
    """Put back every file a failed rename loop had already replaced or removed."""
    for change in changes:
        if not change.done:
            continue
        with contextlib.suppress(OSError):
            if change.backup is not None:
                os.replace(change.backup, out_dir / change.name)
            else:
                os.unlink(out_dir / change.name)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back: one that arrives meanwhile is only recorded, then raised
    again (to the handler it was meant for) when the block ends.

    Done by swapping the Python-level handlers, not with `pthread_sigmask`: the mask is per
    thread, and onnxruntime's and torch's worker threads would still take the signal, after
    which Python runs the handler in the main thread anyway, mid-rename. Python handlers can
    only be set from the main thread; elsewhere (a library caller's thread) nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {number: signal.signal(number, _recorder(arrived)) for number in _DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for pending in dict.fromkeys(arrived):
            signal.raise_signal(pending)


def _recorder(arrived: list[int]) -> Callable[[int, Any], None]:
    def record(number: int, frame: Any) -> None:
        arrived.append(number)

    return record


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself, so concurrent writers take turns."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks on folders
        yield
        return
    descriptor = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _remove_abandoned_staging(out_dir: Path) -> None:
    """Staging folders of a writer killed by SIGKILL (a live one holds the lock we hold)."""
    for entry in out_dir.glob(f"{STAGING_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


# --- the manifest -----------------------------------------------------------------------------


def _read_manifest(out_dir: Path) -> dict[str, str]:
    """Report files the previous write recorded (name -> sha256); {} when there is no usable
    manifest. Names other than the report file names are ignored, so a manifest planted in
    the folder cannot make the tool delete anything else."""
    try:
        document = json.loads((out_dir / MANIFEST).read_bytes())
        files = document["files"]
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    if not isinstance(files, dict):
        return {}
    return {
        name: digest
        for name, digest in files.items()
        if name in REPORT_FILENAMES and isinstance(digest, str)
    }


def _still_present(previous: Mapping[str, str], out_dir: Path) -> dict[str, str]:
    return {name: digest for name, digest in previous.items() if _unchanged(out_dir / name, digest)}


def _unchanged(path: Path, digest: str) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and _sha256(path.read_bytes()) == digest
    except OSError:
        return False


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
