"""result.json: the machine-readable result (its JSON Schema: `mia-audit schema result`)."""

from __future__ import annotations

from mia_audit.reports import register_format
from mia_audit.result import Result


@register_format("json", "result.json")
def render_json(result: Result) -> bytes:
    return result.to_json().encode("utf-8")
