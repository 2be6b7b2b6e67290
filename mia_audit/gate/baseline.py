"""A previous result.json as the baseline of the gate's `*_increase` conditions.

Only the fields the comparison needs are read (attack ids, AUC, TPR@FPR), so a baseline written
by an older or newer release of the same schema version still loads. A baseline of another
schema version is refused with exit code 2: the metrics' conventions may differ between schema
versions, so comparing them would be meaningless, and no migration exists (there has only been
schema version 1 so far). A baseline whose recorded `sha256` no longer matches its content
was edited after `mia-audit run` wrote it (a lowered baseline AUC would hide an increase), and
is refused too; one without `sha256` (written before releases recorded it) is read as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mia_audit.errors import InputError
from mia_audit.result import SCHEMA_VERSION, BaselineInfo, content_sha256


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class BaselineAttack(_Lenient):
    """One attack of the baseline: the metrics the increase conditions compare."""

    id: str
    auc: float
    tpr_at_fpr: dict[str, float]


class _PolicyName(_Lenient):
    name: str | None = None


class _ToolVersion(_Lenient):
    version: str | None = None


class _BaselineDocument(_Lenient):
    schema_version: int
    attacks: list[BaselineAttack]
    policy: _PolicyName = _PolicyName()
    tool: _ToolVersion = _ToolVersion()


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline: where it came from, and its attacks by id."""

    info: BaselineInfo
    attacks: Mapping[str, BaselineAttack]


def load_baseline(path: Path) -> Baseline:
    """Read and check a baseline result.json; InputError (exit 2) with one line otherwise."""
    where = f"baseline: {path}"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{where}: cannot read it ({error.strerror}); check the path") from None
    document = _parse_json(data, where)
    _check_schema_version(document, where)
    _check_intact(document, where)
    try:
        parsed = _BaselineDocument.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(
            f"{where}: {field}: {first['msg'].lower()}; is this a mia-audit result.json?"
        ) from None
    info = BaselineInfo(
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        schema_version=parsed.schema_version,
        policy_name=parsed.policy.name,
        tool_version=parsed.tool.version,
    )
    return Baseline(info=info, attacks={attack.id: attack for attack in parsed.attacks})


def _parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: not valid JSON ({error}); give a result.json") from None
    if not isinstance(document, dict):
        raise InputError(f"{where}: not a mia-audit result.json (expected a JSON object)")
    return document


def _check_schema_version(document: dict[str, Any], where: str) -> None:
    """Refuse other schema versions before reading anything else."""
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{where}: not a mia-audit result.json (no integer schema_version)")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"{where}: schema_version {version} cannot be compared: this mia-audit reads "
            f"schema_version {SCHEMA_VERSION}; re-run the baseline audit with this release "
            "(there is no migration between schema versions)"
        )


def _check_intact(document: dict[str, Any], where: str) -> None:
    recorded = document.get("sha256")
    if recorded is not None and recorded != content_sha256(document):
        raise InputError(
            f"{where}: sha256: does not match the file's content (edited after `mia-audit run` "
            "wrote it?); use the result.json as run wrote it, or re-run the baseline audit"
        )
