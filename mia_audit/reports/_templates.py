"""Finds the Jinja2 templates and builds the (autoescaping) environment that renders them.

The templates live in the repository's top-level `templates/` folder. A wheel ships them as
`mia_audit/templates` (pyproject force-include); an editable install (or a source checkout on
`sys.path`) has no such folder inside the package, and uses the repository's `templates/`
next to the package instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

#: A template that must be present for a folder to count as ours (not some other `templates/`).
MARKER = "report.html.j2"


def template_dirs(package_dir: Path | None = None) -> list[Path]:
    """Where to look, in order: inside the installed package, then the source checkout."""
    package = package_dir or Path(__file__).resolve().parents[1]  # the mia_audit folder
    return [package / "templates", package.parent / "templates"]


def find_templates(package_dir: Path | None = None) -> Path:
    for candidate in template_dirs(package_dir):
        if (candidate / MARKER).is_file():
            return candidate
    searched = ", ".join(str(d) for d in template_dirs(package_dir))
    raise FileNotFoundError(f"mia-audit's report templates are missing (looked in {searched})")


@cache
def environment() -> jinja2.Environment:
    """Autoescape is on for every template: all of them produce HTML."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(find_templates()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
