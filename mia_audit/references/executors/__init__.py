"""The executors that train reference models, by `runtime.executor.kind`.

An executor is one module that defines an `ExecutorConfig` subclass and a class with `kind`,
`config_type`, `create` and `train` (see `base`), decorated with `register`; a built-in one adds
its module to `BUILTIN_MODULES`, another package names it in the `mia_audit.executors`
entry-point group.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from mia_audit.progress import Notify
from mia_audit.references.executors.base import Executor, ExecutorConfig, ExecutorType
from mia_audit.registry import Registry

BUILTIN_MODULES = ("mia_audit.references.executors.local", "mia_audit.references.executors.ray")

EXECUTORS: Registry[type[ExecutorType]] = Registry(
    "executor", BUILTIN_MODULES, "mia_audit.executors", name_of=lambda cls: cls.kind
)


def register(cls: type[ExecutorType]) -> type[ExecutorType]:
    """Class decorator: make an executor available as `runtime.executor: {kind: ...}`."""
    return EXECUTORS.register(cls.kind, cls)


def executor_kinds() -> list[str]:
    return EXECUTORS.names()


def executor_config_union() -> Any:
    """The discriminated union of every registered executor's config (for the policy)."""
    configs = tuple(cls.config_type for cls in EXECUTORS.entries().values())
    return Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007


def create_executor(config: ExecutorConfig, *, device: str, notify: Notify | None) -> Executor:
    return EXECUTORS.get(config.kind).create(config, device=device, notify=notify)
