"""How much memory this process can still use: to refuse an input before it is loaded.

The smallest of what the kernel reports as available (`MemAvailable` in /proc/meminfo) and
what the container's memory cgroup still allows (v2 `memory.max` - `memory.current`, or v1
`memory.limit_in_bytes` - `memory.usage_in_bytes`). Where none of these can be read (macOS,
Windows), the free physical pages from `sysconf`, else None: nothing is refused then.
"""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP_LIMITS = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ),
)
#: cgroup v1 writes "no limit" as a huge number rather than "max".
_NO_LIMIT = 1 << 60


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate, or None when unknown."""
    found = [value for value in (_meminfo_available(), *_cgroup_headroom()) if value is not None]
    if not found:
        found = [value for value in (_sysconf_available(),) if value is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _cgroup_headroom() -> list[int | None]:
    return [_headroom(limit, usage) for limit, usage in _CGROUP_LIMITS]


def _headroom(limit_file: Path, usage_file: Path) -> int | None:
    try:
        limit_text = limit_file.read_text(encoding="ascii").strip()
        usage_text = usage_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not (limit_text.isdigit() and usage_text.isdigit()):
        return None  # "max": no limit
    limit = int(limit_text)
    if limit >= _NO_LIMIT:
        return None
    return max(0, limit - int(usage_text))


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def size_text(n_bytes: int) -> str:
    """A byte count for people: 512 B, 3.1 MB, 30.7 GB (powers of 1000)."""
    value = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
