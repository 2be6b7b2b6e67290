"""The policy's `statistics:` section: CI level and resamples, delta, the FPR support rule."""

from __future__ import annotations

from pydantic import (
    Field,
)

from mia_audit.settings import StrictModel


class StatisticsSpec(StrictModel):
    """How uncertainty is measured: bootstrap CIs, the epsilon lower bound, FPR support."""

    confidence_level: float = Field(
        0.95, gt=0, lt=1, description="Level of every CI and of the epsilon lower bound."
    )
    n_resamples: int = Field(
        1000, ge=100, le=100_000, description="Stratified bootstrap resamples per CI."
    )
    delta: float = Field(
        1e-5, ge=0, lt=1, description="The delta of (epsilon, delta)-DP for the epsilon bound."
    )
    min_false_positives: int = Field(
        10,
        ge=1,
        description=(
            "A TPR at FPR a needs a * non-members >= this many; a gate condition on an FPR "
            "the data cannot support is an error."
        ),
    )
