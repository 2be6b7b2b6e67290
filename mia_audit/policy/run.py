"""The policy's `runtime:` and `preconditions:` sections, which only the run reads: how it goes,
and which checks before the verdict a smoke test may relax."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from mia_audit.references.executors import executor_config_union, executor_kinds
from mia_audit.references.executors.base import ExecutorConfig
from mia_audit.references.executors.local import LocalExecutorConfig
from mia_audit.settings import JsonShorthand, PolicyPath, StrictModel, plugin_entry


def device_alias(value: Any) -> Any:
    """`gpu` is what people call `cuda`."""
    return "cuda" if isinstance(value, str) and value.strip().lower() == "gpu" else value


if typing.TYPE_CHECKING:
    ExecutorEntry = ExecutorConfig
else:
    ExecutorEntry = plugin_entry(executor_config_union(), "kind", executor_kinds)


class Preconditions(StrictModel):
    """Checks made before any verdict (docs/preconditions.md); relax them only for smoke
    tests: every relaxed check is named in the report."""

    allow_small_audit: bool = Field(
        False,
        description=(
            "Evaluate gate conditions on an audit set smaller than each condition's documented "
            "minimum (a smoke test, not evidence; the report says so)."
        ),
    )
    allow_weak_target: bool = Field(
        False,
        description=(
            "Accept a target that does not classify its members well above chance (normally "
            "a sign of wrong preprocessing)."
        ),
    )
    max_shared_fraction: float = Field(
        0.01,
        ge=0,
        le=0.1,
        description=(
            "Largest fraction of images two data sets (members, non-members, population) may "
            "share (identical pixels) before the audit is refused."
        ),
    )
    reference_fit: Literal["warn", "error"] = Field(
        "warn",
        description=(
            "Reference models whose mean accuracy on their own training samples is more than "
            "0.1 below the target's accuracy on its members do not reproduce the target's fit "
            "(reference attacks then understate the risk): `warn` (a note), or `error` (exit 2)."
        ),
    )

    def relaxed(self) -> list[str]:
        """The checks this policy loosens beyond the defaults, as `preconditions.<key>`."""
        default = Preconditions()
        loosened = [
            key
            for key in ("allow_small_audit", "allow_weak_target")
            if getattr(self, key) and not getattr(default, key)
        ]
        if self.max_shared_fraction > default.max_shared_fraction:
            loosened.append("max_shared_fraction")
        return [f"preconditions.{key}" for key in loosened]


class RuntimeSpec(StrictModel):
    """How the run goes: device, seed, batch size, cache, precision, executor."""

    device: Annotated[
        Literal["auto", "cpu", "cuda"],
        BeforeValidator(device_alias),
        JsonShorthand({"type": "string", "pattern": r"^\s*[Gg][Pp][Uu]\s*$"}),  # `gpu`
    ] = Field(
        "auto",
        description="auto (a CUDA GPU when there is one), cpu, or cuda (`gpu` means cuda).",
    )
    seed: int = Field(0, ge=0)
    batch_size: int = Field(512, ge=1)
    cache_dir: PolicyPath = Field(
        Path(".mia-cache"),
        validate_default=True,  # the default resolves against the policy's folder too
        description="Logits and model cache (relative to the policy's folder).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="GPU inference precision; `auto` uses bf16 when logits match fp32 closely.",
    )
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Refuse the run (exit 2) before it starts when `mia-audit plan` estimates "
        "it at more minutes than this (a measured probe: a few training steps, one batch).",
    )
    executor: ExecutorEntry = Field(
        default_factory=LocalExecutorConfig,
        description="Where reference models train: `local` (this machine), or a mapping with "
        "`kind` and that executor's settings.",
    )
