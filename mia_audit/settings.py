"""The base of every settings model (frozen, every key known, finite numbers) and paths that
resolve against the policy file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the policy file's folder (passed as context)."""
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return (Path(base) / value.expanduser()).resolve()


PolicyPath = Annotated[Path, AfterValidator(_resolve_path)]


class StrictModel(BaseModel):
    """Frozen, every key must be known, and numbers must be finite (NaN or infinity is never
    a setting: it would only surface later as NaN logits or a gate that cannot fail)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
