"""The policy's `outputs:` section: where reports go and which formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from mia_audit.settings import JsonShorthand, PolicyPath, StrictModel


def _format_names() -> list[str]:
    from mia_audit.reports import format_names

    return list(format_names())


def _available_format(value: str) -> str:
    from mia_audit.reports import format_names

    available = format_names()
    if value not in available:
        raise ValueError(f"unknown format {value!r}; available: {', '.join(available)}")
    return value


OutputFormat = Annotated[
    str,
    AfterValidator(_available_format),
    JsonShorthand(lambda _: {"enum": _format_names()}, replace=True),
]


class OutputSpec(StrictModel):
    dir: PolicyPath = Field(
        Path("mia-report"),
        validate_default=True,  # the default resolves against the policy's folder too
        description="Output folder (relative to the policy's folder).",
    )
    formats: tuple[OutputFormat, ...] = Field(
        ("json", "html", "markdown"),
        min_length=1,
        description="Report formats (docs/reports.md): json (result.json), html (report.html), "
        "markdown (summary.md), junit (junit.xml), and any a plugin registers.",
    )
