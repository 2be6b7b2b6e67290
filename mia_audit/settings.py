"""The base of every settings model (frozen, every key known, finite numbers) and paths that
resolve against the policy file's folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetJsonSchemaHandler,
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


JsonSchema = dict[str, Any]


@dataclass(frozen=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class JsonShorthand:
    """Annotation: the JSON Schema also accepts a shorthand that a `BeforeValidator` expands.

    pydantic describes the expanded form only (`{max: 0.6}`), so the schema would refuse what
    the loader accepts (`max_auc: 0.6`). `alternative` is the shorthand's schema, or a function
    of the generated schema (for shorthands of a list's items); it is called when the schema is
    generated, so a list read from a registry includes plugins. `replace` swaps the generated
    schema for the function's result instead (a value an `AfterValidator` restricts).
    """

    alternative: JsonSchema | Callable[[JsonSchema], JsonSchema]
    replace: bool = False

    def __get_pydantic_json_schema__(
        self, core_schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchema:
        schema = handler(core_schema)
        alternative = self.alternative(schema) if callable(self.alternative) else self.alternative
        if self.replace:
            return alternative
        return {"anyOf": [alternative, schema]}


def plugin_entry(configs: Any, key: str, names: Callable[[], list[str]]) -> Any:
    """The annotation of a policy entry that configures one registered plugin: `configs` is
    the union of their config models; a bare name stands for `{key: name}` (`- loss`,
    `executor: local`), which the schema accepts too, listing `names()` when it is generated
    (so that plugins' names are in it)."""

    def bare_name(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return Annotated[
        configs, BeforeValidator(bare_name), JsonShorthand(lambda _: {"enum": names()})
    ]
