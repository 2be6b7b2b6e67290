"""Read, parse and validate a policy file; command-line overrides; the files it names exist."""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from mia_audit.errors import PolicyError
from mia_audit.policy._yaml import Location, load_yaml
from mia_audit.policy.messages import describe_problems, describe_validation_error
from mia_audit.policy.run import RuntimeSpec
from mia_audit.policy.schema import Policy
from mia_audit.reports.settings import OutputSpec


@typing.final
class LoadedPolicy:
    """A validated policy with the file it came from and that file's raw content."""

    def __init__(self, policy: Policy, path: Path, document: Any, text_sha256: str) -> None:
        self.policy = policy
        self.path = path
        self.document = document
        self.sha256 = text_sha256


def load_policy(path: Path) -> LoadedPolicy:
    """Read, parse and validate a policy file; raise PolicyError with a one-line message."""
    document, lines = load_yaml(path)
    if not isinstance(document, dict):
        raise PolicyError(f"{path}: a policy is a YAML mapping (version, name, model, data, ...)")
    policy = parse_policy(document, base_dir=path.resolve().parent, source=path, lines=lines)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadedPolicy(policy, path.resolve(), document, digest)


def parse_policy(
    document: dict[str, Any],
    *,
    base_dir: Path,
    source: Path | str = "policy",
    lines: dict[Location, int] | None = None,
) -> Policy:
    try:
        return Policy.model_validate(document, context={"base_dir": base_dir})
    except ValidationError as error:
        raise PolicyError.listing(describe_problems(error, source, lines or {})) from None


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy format (what `mia-audit schema` prints)."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mia-audit policy"
    return schema


def with_overrides(
    policy: Policy,
    *,
    output_dir: Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    formats: Sequence[str] | None = None,
    baseline: Path | None = None,
    executor: str | None = None,
) -> Policy:
    """Apply command-line overrides (re-validated like the file itself).

    `executor` is `--executor`'s text: an executor kind (`local`, `ray`) or a JSON/YAML
    mapping (`{kind: ray, address: auto}`), validated like `runtime.executor`.
    """
    if baseline is not None:
        gate = policy.gate.model_copy(update={"baseline": baseline})
        policy = policy.model_copy(update={"gate": gate})
    outputs: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    if output_dir is not None:
        outputs["dir"] = output_dir
    if formats is not None:
        outputs["formats"] = tuple(formats)
    if device is not None:
        runtime["device"] = device
    if seed is not None:
        runtime["seed"] = seed
    if executor is not None:
        runtime["executor"] = _executor_option(executor)
        _check_executor(policy.runtime, runtime["executor"])
    if not outputs and not runtime:
        return policy
    try:
        return policy.model_copy(
            update={
                "outputs": OutputSpec.model_validate({**policy.outputs.model_dump(), **outputs}),
                "runtime": RuntimeSpec.model_validate({**policy.runtime.model_dump(), **runtime}),
            }
        )
    except ValidationError as error:
        raise PolicyError.listing(describe_problems(error, "command line", {})) from None


def _executor_option(text: str) -> Any:
    """`--executor`'s value: a kind, or a mapping written in JSON or YAML flow style."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0] if str(error) else "unreadable"
        raise PolicyError(
            f"--executor: {text!r} is not a kind or a JSON/YAML mapping ({problem}); give "
            "local, ray, or a mapping such as '{kind: ray, address: auto}'"
        ) from None
    if not isinstance(value, str | dict):
        raise PolicyError(
            f"--executor: {text!r} is not a kind or a mapping; give local, ray, or a mapping "
            "such as '{kind: ray, address: auto}'"
        )
    return value


def _check_executor(runtime: RuntimeSpec, executor: Any) -> None:
    """Validate `--executor` alone, so that its message names the option and the key."""
    try:
        RuntimeSpec.model_validate({**runtime.model_dump(), "executor": executor})
    except ValidationError as error:
        # Keys "on line 0" make the message name the option's keys, not pydantic's union tags.
        keys = executor if isinstance(executor, dict) else {}
        lines: dict[Location, int] = {("executor",): 0, **{("executor", k): 0 for k in keys}}
        message = describe_validation_error(error, "--executor", lines, root=RuntimeSpec)
        for prefix in ("--executor: executor.", "--executor: executor: "):
            message = message.replace(prefix, "--executor: ", 1)
        raise PolicyError(message) from None


def check_paths_exist(policy: Policy) -> None:
    """Every file the policy names must exist (checked by `validate` and before a run)."""
    named = {
        "model.path": None if policy.model.is_registry else policy.model.file,
        "data.members": policy.data.members,
        "data.non_members": policy.data.non_members,
        "data.audit": policy.data.audit,
        "data.population": policy.data.population,
        "gate.baseline": policy.gate.baseline,
    }
    for field, path in named.items():
        if path is not None and not path.exists():
            raise PolicyError(f"{field}: {path}: file not found; check the path")
