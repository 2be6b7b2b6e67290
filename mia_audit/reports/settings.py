from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from mia_audit.settings import PolicyPath, StrictModel


def _available_format(value: str) -> str:
    if value not in _FORMAT_NAMES:
        raise ValueError(f"unknown format {value!r}; available: {', '.join(_FORMAT_NAMES)}")
    return value


_FORMAT_NAMES = ("json", "html", "markdown", "junit")

OutputFormat = Annotated[str, AfterValidator(_available_format)]


class OutputSpec(StrictModel):
    dir: PolicyPath = Field(Path("mia-report"), description="Output folder.")
    formats: tuple[OutputFormat, ...] = Field(
        ("json", "html", "markdown"),
        min_length=1,
        description="Report formats: json (result.json), html (report.html), markdown "
        "(summary.md), junit (junit.xml).",
    )
