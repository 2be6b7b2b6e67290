"""Writing a report set: a planted manifest deletes nothing else, a SIGTERM or failure halfway
keeps the previous set, abandoned staging folders are cleared."""

from __future__ import annotations

import errno
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mia_audit.errors import AuditError
from mia_audit.reports.folder import MANIFEST, STAGING_PREFIX, write_report_set
from tests.conftest import (
    REPORTS,
    files_under,
)


def report_set(tag: str, names: list[str] = REPORTS) -> dict[str, bytes]:
    return {name: f"{tag}: {name}\n".encode() for name in names}


def test_a_planted_manifest_cannot_make_it_delete_other_files(tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out_dir / "notes.txt").write_text("keep me too")
    import hashlib

    digest = hashlib.sha256(b"keep me").hexdigest()
    planted = {"files": {"../victim.txt": digest, "notes.txt": digest, "/etc/hostname": digest}}
    (out_dir / MANIFEST).write_text(json.dumps(planted))

    write_report_set(report_set("new", ["result.json"]), out_dir, replace=True)

    assert victim.read_text() == "keep me"
    assert (out_dir / "notes.txt").read_text() == "keep me too"
    assert (out_dir / "result.json").read_text() == "new: result.json\n"


class Interrupted(BaseException):
    pass


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_the_renames_lands_after_the_whole_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_raises: None
) -> None:
    out_dir = tmp_path / "report"
    write_report_set(report_set("old"), out_dir, replace=True)
    real_replace = os.replace
    renamed: list[str] = []

    def replace_then_signal(source: Any, target: Any) -> None:
        if not renamed:  # SIGTERM right after the first file moved into place
            real_replace(source, target)
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            real_replace(source, target)
        renamed.append(Path(target).name)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    completed: list[bool] = []
    with pytest.raises(Interrupted):
        write_report_set(
            report_set("new"), out_dir, replace=True, on_complete=lambda: completed.append(True)
        )
    monkeypatch.undo()

    assert completed == [True]  # the set was complete before the signal landed
    assert sorted(renamed) == sorted([*REPORTS, MANIFEST])
    assert {name: (out_dir / name).read_bytes() for name in REPORTS} == report_set("new")
    assert not list(out_dir.glob(f"{STAGING_PREFIX}*"))


def test_a_rename_failing_halfway_puts_the_previous_set_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "report"
    write_report_set(report_set("old", ["result.json", "report.html"]), out_dir, replace=True)
    before = files_under(out_dir)
    real_replace = os.replace
    calls: list[str] = []

    def fail_the_second(source: Any, target: Any) -> None:
        calls.append(Path(target).name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", fail_the_second)
    with pytest.raises(AuditError, match=r"outputs\.dir: .*: cannot write the reports \(No space"):
        write_report_set(report_set("new"), out_dir, replace=True)
    monkeypatch.undo()

    assert files_under(out_dir) == before
    assert not list(out_dir.glob(f"{STAGING_PREFIX}*"))


def test_abandoned_staging_folders_are_cleared(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves its staging folder; the next write removes it."""
    out_dir = tmp_path / "report"
    abandoned = out_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    abandoned.mkdir(parents=True)
    (abandoned / "result.json").write_text("half")

    write_report_set(report_set("new", ["result.json"]), out_dir, replace=True)

    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "result.json"]


