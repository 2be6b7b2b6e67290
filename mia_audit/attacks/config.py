"""What every attack's policy entry has: `name`, `id` and the query views (`queries`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mia_audit.attacks.queries import View, enumerate_views
from mia_audit.settings import JsonShorthand

if TYPE_CHECKING:
    pass


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


QuerySpec = Annotated[
    Queries,
    BeforeValidator(_query_shorthand),
    JsonShorthand({"enum": sorted(_QUERY_SHORTHANDS)}),
]


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
