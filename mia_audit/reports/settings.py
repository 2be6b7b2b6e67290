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


class MlflowOutput(StrictModel):
    """Log the verdict to MLflow (docs/mlflow.md): a run with every attack's figures and the
    reports, and, for a models:/ target, tags on the audited model version."""

    experiment: str = Field(
        "mia-audit", min_length=1, description="Experiment the run is logged to (created)."
    )
    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="Tracking server (default: model.mlflow.tracking_uri, then "
        "MLFLOW_TRACKING_URI).",
    )
    tag_model_version: bool = Field(
        False,
        description="Set mia_audit.* tags on the audited model version (a models:/ target).",
    )
    run_name: str | None = Field(None, min_length=1, description="Default: the policy name.")


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
        "markdown (summary.md), junit (junit.xml), sarif (results.sarif), and any a plugin "
        "registers.",
    )
    mlflow: MlflowOutput | None = Field(
        None, description="Log the result to an MLflow tracking server (docs/mlflow.md)."
    )
