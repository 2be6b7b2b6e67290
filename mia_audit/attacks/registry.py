"""The attack registry: attack name -> attack class, and the policy schema of each attack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mia_audit.queries import View, enumerate_views

if TYPE_CHECKING:
    from mia_audit.attacks.base import Attack

_BUILTIN_MODULES = (
    "mia_audit.attacks.target_only",
    "mia_audit.attacks.class_threshold",
    "mia_audit.attacks.learned",
    "mia_audit.attacks.lira",
    "mia_audit.attacks.rmia",
    "mia_audit.attacks.shadow",
)
#: LiRA's default pixel shift for the 18-query set (mirror x shifts in {-k, 0, k}^2).
DEFAULT_SHIFT = 4
_QUERY_SHORTHANDS = {1: (False, 0), 2: (True, 0), 18: (True, DEFAULT_SHIFT)}


class Queries(BaseModel):
    """Which views of each image the attack queries the model with."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mirror: bool = Field(False, description="Also query the horizontally mirrored image.")
    shift: int = Field(0, ge=0, le=8, description="Also query shifts by ±shift pixels.")

    @property
    def views(self) -> tuple[View, ...]:
        return enumerate_views(self.mirror, self.shift)


def _query_shorthand(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if value not in _QUERY_SHORTHANDS:
        raise ValueError("queries is 1, 2 (mirror) or 18 (mirror x shifts), or {mirror, shift}")
    mirror, shift = _QUERY_SHORTHANDS[value]
    return {"mirror": mirror, "shift": shift}


QuerySpec = Annotated[Queries, BeforeValidator(_query_shorthand)]


class AttackConfig(BaseModel):
    """Parameters every attack takes; each attack subclasses this with its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Label in reports and gate scopes (default: the attack name).",
    )
    queries: QuerySpec = Field(
        default_factory=Queries,
        description="1, 2 (mirror), 18 (mirror x ±4 px shifts) or {mirror, shift}.",
    )

    @property
    def label(self) -> str:
        return self.id or self.name


_ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make an attack available to policies under its config's name."""
    name = cls.name
    if name in _ATTACKS and _ATTACKS[name] is not cls:
        raise ValueError(f"attack {name!r} registered twice")
    _ATTACKS[name] = cls
    return cls


def _load_builtins() -> dict[str, type[Attack]]:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return _ATTACKS


def attack_names() -> list[str]:
    return list(_load_builtins())


def attack_class(name: str) -> type[Attack]:
    return _load_builtins()[name]


def attack_config(name: str) -> type[AttackConfig]:
    return attack_class(name).config_type


def attack_config_union() -> Any:
    """The discriminated union of every registered attack's config (for the policy model)."""
    configs = tuple(cls.config_type for cls in _load_builtins().values())
    return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007


def create_attack(config: AttackConfig) -> Attack:
    return attack_class(config.name)(config)
