"""Report formats: each renders a `Result` to the bytes of one file (pure, no I/O).

A format is one module that defines a renderer and decorates it with `register_format`; a
built-in one adds its module to `BUILTIN_MODULES`, another package names it (or a
`ReportFormat`) in the `mia_audit.reports` entry-point group. `outputs.formats`, `--format` and
`render` all read the list from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mia_audit.registry import Registry
from mia_audit.result import Result

Renderer = Callable[[Result], bytes]


@dataclass(frozen=True)
class ReportFormat:
    name: str
    filename: str
    render: Renderer


BUILTIN_MODULES = (
    "mia_audit.reports.json_report",
    "mia_audit.reports.html_report",
    "mia_audit.reports.markdown_report",
    "mia_audit.reports.junit_report",
    "mia_audit.reports.sarif",
)

FORMATS: Registry[ReportFormat] = Registry(
    "report format",
    BUILTIN_MODULES,
    "mia_audit.reports",
    name_of=lambda found: found.name,
    module_of=lambda found: found.render.__module__,
)


def register_format(name: str, filename: str) -> Callable[[Renderer], Renderer]:
    """Decorator: make a renderer available as format `name`, written to `filename`."""

    def decorate(render: Renderer) -> Renderer:
        FORMATS.register(name, ReportFormat(name, filename, render))
        return render

    return decorate


def format_names() -> list[str]:
    return FORMATS.names()


def report_format(name: str) -> ReportFormat:
    return FORMATS.get(name)


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
