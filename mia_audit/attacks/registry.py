"""The attack registry: attack name -> attack class, and the policy schema of each attack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from mia_audit.attacks.config import AttackConfig

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
