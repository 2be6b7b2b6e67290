"""The attack registry: attack name -> attack class, and the policy schema of each attack.

An attack is one module that defines its config and its class and decorates the class with
`register`; a built-in one adds its module to `BUILTIN_MODULES`, another package names it in
the `mia_audit.attacks` entry-point group. The policy's `attacks:` schema, `mia-audit schema`
and the error messages' lists of attacks all come from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from mia_audit.attacks.config import AttackConfig
from mia_audit.registry import Registry

if TYPE_CHECKING:
    from mia_audit.attacks.base import Attack

    AttackClass = type[Attack[Any]]

BUILTIN_MODULES = (
    "mia_audit.attacks.target_only",
    "mia_audit.attacks.class_threshold",
    "mia_audit.attacks.learned",
    "mia_audit.attacks.lira",
    "mia_audit.attacks.rmia",
    "mia_audit.attacks.shadow",
    "mia_audit.attacks.gap",
    "mia_audit.attacks.augmentation",
    "mia_audit.attacks.boundary_distance",
)

ATTACKS: Registry[AttackClass] = Registry(
    "attack", BUILTIN_MODULES, "mia_audit.attacks", name_of=lambda cls: cls.name
)


def register(cls: AttackClass) -> AttackClass:
    """Class decorator: make an attack available to policies under its `name`."""
    return ATTACKS.register(cls.name, cls)


def attack_names() -> list[str]:
    return ATTACKS.names()


def attack_class(name: str) -> AttackClass:
    return ATTACKS.get(name)


def attack_origin(name: str) -> str | None:
    """Where a plugin attack came from (entry point and distribution); None if built in."""
    return ATTACKS.plugin_origin(name)


def attack_config(name: str) -> type[AttackConfig]:
    return attack_class(name).config_type


def reference_attack_names() -> list[str]:
    """Attacks that train reference (or shadow) models."""
    from mia_audit.attacks.reference_base import ReferenceAttackConfig

    return [
        name
        for name, cls in ATTACKS.entries().items()
        if issubclass(cls.config_type, ReferenceAttackConfig)
    ]


def attack_config_union() -> Any:
    """The discriminated union of every registered attack's config (for the policy model)."""
    configs = tuple(cls.config_type for cls in ATTACKS.entries().values())
    return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007


def create_attack(config: AttackConfig) -> Attack[Any]:
    return attack_class(config.name)(config)
