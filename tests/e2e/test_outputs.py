"""The reports as one set: full disks, the umask, stale files, signals during the renames.

Through the console script: a disk that fills up while the reports are written (a real, tiny
tmpfs where this test may mount one; a real RLIMIT_FSIZE, which makes writes fail with EFBIG,
everywhere) is exit 3 with one line naming the folder, and the previous reports stay exactly as
they were with nothing left behind; reports and cache files get the user's umask.
In-process, on the real filesystem: a SIGTERM that arrives during the renames lands only after
the whole set is in place, a rename that fails halfway is undone, and only files a previous run
wrote (per the manifest, unchanged since) are ever removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mia_audit.reports.folder import MANIFEST, STAGING_PREFIX
from tests.conftest import (
    BASE_POLICY,
    CI_LIMIT_SECONDS,
    CONSOLE_SCRIPT,
    DROP,
    REPORTS,
    RunCli,
    files_under,
    merged_policy,
    policy_file,
    without_progress,
)

FORMATS = ["json", "html", "markdown", "junit"]


#: The ONNX target (no reference architecture), two attacks, every report format.
AUDIT = merged_policy(
    BASE_POLICY,
    model={"path": "target.onnx", "architecture": DROP},
    attacks=["loss", "confidence"],
    gate={"max_auc": 0.6},
    outputs={"formats": FORMATS},
)


def write_policy(folder: Path, name: str, out_dir: Path, cache_dir: str = ".mia-cache") -> Path:
    """AUDIT reporting to `out_dir`, caching in `cache_dir`."""
    outputs, runtime = {"dir": str(out_dir)}, {"cache_dir": cache_dir}
    return policy_file(folder, name, AUDIT, outputs=outputs, runtime=runtime)


def run_child(
    *args: str | Path, setup: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script, with `setup` run in the child before it starts (limits, umask)."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=setup,
        timeout=CI_LIMIT_SECONDS,
        check=False,
    )


def assert_disk_full_kept_previous(
    completed: subprocess.CompletedProcess[str], out_dir: Path, before: dict[str, bytes]
) -> str:
    assert completed.returncode == 3, completed.stderr
    assert completed.stdout == ""
    (line,) = without_progress(completed.stderr)
    assert line.startswith(f"error: outputs.dir: {out_dir}: cannot write the reports (")
    assert "internal error" not in line and "previous reports there are untouched" in line
    assert files_under(out_dir) == before  # byte for byte, and no staging folder or temp file
    assert not list(out_dir.glob(f"{STAGING_PREFIX}*"))
    return line


# --- a full disk ------------------------------------------------------------------------------


def test_file_size_limit_while_writing_is_exit_3_and_keeps_the_previous_set(
    folder: Path, run_cli: RunCli
) -> None:
    """RLIMIT_FSIZE below report.html's size: its write fails with EFBIG (SIGXFSZ ignored)."""
    out_dir = folder / "report-fsize"
    policy = write_policy(folder, "fsize", out_dir)
    first = run_cli("run", policy, "-q")
    assert first.returncode == 1, first.stderr
    before = files_under(out_dir)
    assert len(before["report.html"]) > 64_000 > len(before["result.json"])

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: EFBIG, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    completed = run_child("run", policy, "-q", setup=limit_file_size)

    line = assert_disk_full_kept_previous(completed, out_dir, before)
    assert "(File too large); free some space there" in line


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[None]:
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the same path"
        )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_is_exit_3_and_keeps_the_previous_set(folder: Path, run_cli: RunCli) -> None:
    """A real ENOSPC: the output folder is on a 512 KiB tmpfs, filled up after a first run."""
    with small_tmpfs(folder / "small-disk", "512k"):
        out_dir = folder / "small-disk" / "report"
        policy = write_policy(folder, "full-disk", out_dir)
        first = run_cli("run", policy, "-q")
        assert first.returncode == 1, first.stderr
        _fill(folder / "small-disk" / "filler", leave=16 * 1024)
        before = files_under(out_dir)

        completed = run_cli("run", policy, "-q")

        line = assert_disk_full_kept_previous(completed, out_dir, before)
        assert "(No space left on device); free some space there" in line


def _fill(path: Path, leave: int) -> None:
    """Write zeros to `path` until fewer than `leave` bytes are free on its filesystem."""
    with path.open("wb") as handle:
        while os.statvfs(path).f_bavail * os.statvfs(path).f_frsize > leave:
            try:
                handle.write(bytes(4096))
                handle.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_reports_and_cache_files_get_the_umask(folder: Path, umask: int) -> None:
    out_dir = folder / f"report-umask-{umask:03o}"
    policy = write_policy(folder, f"umask-{umask:03o}", out_dir, cache_dir=f".cache-{umask:03o}")

    def set_umask() -> None:
        os.umask(umask)

    completed = run_child("run", policy, "-q", setup=set_umask)

    assert completed.returncode == 1, completed.stderr
    expected = 0o666 & ~umask
    written = [out_dir / name for name in [*REPORTS, MANIFEST]]
    cached = [p for p in (folder / f".cache-{umask:03o}").rglob("*") if p.is_file()]
    assert cached, "the run cached no logits"
    for path in [*written, *cached]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))


# --- stale files and the manifest ---------------------------------------------------------------


def test_fewer_formats_remove_only_the_previous_runs_unchanged_files(
    folder: Path, run_cli: RunCli
) -> None:
    out_dir = folder / "report-stale"
    policy = write_policy(folder, "stale", out_dir)
    assert run_cli("run", policy, "-q").returncode == 1
    (out_dir / "summary.md").write_text("my own notes on the last audit\n")  # edited since
    (out_dir / "notes.txt").write_text("not a report\n")
    first_result = (out_dir / "result.json").read_bytes()

    completed = run_cli("run", policy, "-q", "--format", "json", "--seed", "1")

    assert completed.returncode == 1, completed.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == [
        MANIFEST, "notes.txt", "result.json", "summary.md"
    ]  # fmt: skip
    assert (out_dir / "result.json").read_bytes() != first_result  # seed 1: this run's
    assert (out_dir / "summary.md").read_text() == "my own notes on the last audit\n"
    manifest = json.loads((out_dir / MANIFEST).read_text())
    assert list(manifest["files"]) == ["result.json"]


def test_render_adds_to_the_set_and_keeps_result_json(folder: Path, run_cli: RunCli) -> None:
    out_dir = folder / "report-render"
    policy = write_policy(folder, "render", out_dir)
    assert run_cli("run", policy, "-q", "--format", "json").returncode == 1
    result = (out_dir / "result.json").read_bytes()

    rendered = run_cli("render", out_dir / "result.json", "--format", "html")

    assert rendered.returncode == 0, rendered.stderr
    assert (out_dir / "result.json").read_bytes() == result
    manifest = json.loads((out_dir / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["report.html", "result.json"]


# --- signals and failures during the renames (fault injection around the real os.replace) -------
