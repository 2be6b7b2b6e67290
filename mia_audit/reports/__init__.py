"""Report formats: each renders a `Result` to the bytes of one file (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mia_audit.result import Result

Renderer = Callable[[Result], bytes]


@dataclass(frozen=True)
class ReportFormat:
    name: str
    filename: str
    render: Renderer


_FORMATS: dict[str, ReportFormat] = {}


def register_format(name: str, filename: str) -> Callable[[Renderer], Renderer]:
    def decorate(render: Renderer) -> Renderer:
        _FORMATS[name] = ReportFormat(name, filename, render)
        return render

    return decorate


def _load_builtins() -> dict[str, ReportFormat]:
    from mia_audit.reports import (  # noqa: F401  (each registers itself)
        html_report,
        json_report,
        junit_report,
        markdown_report,
    )

    return _FORMATS


def format_names() -> list[str]:
    return list(_load_builtins())


def report_format(name: str) -> ReportFormat:
    return _load_builtins()[name]


def render_reports(result: Result, formats: Sequence[str]) -> dict[str, bytes]:
    """Render every requested format in memory first, so a failure writes nothing."""
    return {report_format(name).filename: report_format(name).render(result) for name in formats}


def write_reports(
    rendered: dict[str, bytes],
    out_dir: Path,
    *,
    replace: bool = True,
    on_complete: Callable[[], None] | None = None,
) -> list[Path]:
    """Write the rendered files into `out_dir` as one set (see `folder.write_report_set`):
    `replace` for a run's whole set, False to add re-rendered files to the previous set."""
    from mia_audit.reports.folder import write_report_set

    return write_report_set(rendered, out_dir, replace=replace, on_complete=on_complete)
