"""The policy's `data:` section: the files and how the audit set is sampled from them."""

from __future__ import annotations

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from mia_audit.settings import JsonSchema, PolicyPath, StrictModel

#: JSON Schema of `_one_layout`: members and non_members, or one audit file.
_ONE_LAYOUT: JsonSchema = {
    "oneOf": [
        {"required": ["members", "non_members"], "not": {"required": ["audit"]}},
        {
            "required": ["audit"],
            "not": {"anyOf": [{"required": ["members"]}, {"required": ["non_members"]}]},
        },
    ]
}


class DataSpec(StrictModel):
    """Members, non-members and optional population data."""

    model_config = ConfigDict(json_schema_extra=_ONE_LAYOUT)

    members: PolicyPath | None = Field(None, description="Samples the model was trained on.")
    non_members: PolicyPath | None = Field(None, description="Held-out samples, same distribution.")
    audit: PolicyPath | None = Field(
        None, description="Instead of members/non_members: one file with a `membership` field."
    )
    population: PolicyPath | None = Field(
        None, description="More non-member data for reference models (disjoint from the audit set)."
    )
    allow_pickle: bool = Field(False, description="Allow pickled dataset files (runs code).")
    max_per_side: int | None = Field(None, ge=1, description="Seeded subsample of each side.")
    balance: bool = Field(True, description="Subsample the larger side to the smaller one's size.")
    class_names: tuple[str, ...] | None = Field(None, description="Names of the classes, in order.")

    @model_validator(mode="after")
    def _one_layout(self) -> DataSpec:
        pair = self.members is not None or self.non_members is not None
        if self.audit is not None and pair:
            raise ValueError("give either `audit` or `members` and `non_members`, not both")
        if self.audit is None and (self.members is None or self.non_members is None):
            raise ValueError("give both `members` and `non_members` (or one `audit` file)")
        return self
