"""Validation errors as one line: the file, the line, the YAML path of the first problem, what
is wrong and, for a misspelt key or attack, what was probably meant.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from mia_audit.policy._yaml import Location
from mia_audit.policy.schema import Policy

#: Problems listed one by one; the rest are counted.
MAX_PROBLEMS = 8


def describe_validation_error(
    error: ValidationError,
    source: Path | str,
    lines: dict[Location, int],
    root: type[BaseModel] = Policy,
) -> str:
    """The problems as lines (`describe_problems`), joined: one line when there is one.

    `root` is the model that was validated (a section, for a command-line override)."""
    return "\n".join(describe_problems(error, source, lines, root))


def describe_problems(
    error: ValidationError,
    source: Path | str,
    lines: dict[Location, int],
    root: type[BaseModel] = Policy,
) -> list[str]:
    """One line per problem: file, line, the YAML path, what is wrong and, for a misspelt key
    or attack, what was probably meant. A key with several complaints (each member of a union
    of forms complains) gets the first; past MAX_PROBLEMS the rest are counted."""
    described: dict[Location, str] = {}
    problems = error.errors(include_url=False)
    for problem in problems:
        if _follows_from_items(problem, problems):
            continue
        yaml_path = _yaml_location(problem["loc"], lines)
        if yaml_path not in described:
            described[yaml_path] = _one_problem(problem, yaml_path, source, lines, root)
    messages = list(described.values())
    if len(messages) > MAX_PROBLEMS:
        rest = len(messages) - MAX_PROBLEMS
        more = f"{rest} more problem{'s' if rest > 1 else ''}"
        messages = [
            *messages[:MAX_PROBLEMS],
            f"{source}: {more}; fix these and run `mia-audit validate` again",
        ]
    return messages


def _follows_from_items(problem: Any, problems: Sequence[Any]) -> bool:
    """A list's "too short" that only says its items failed (pydantic counts the valid ones)."""
    if problem["type"] != "too_short":
        return False
    loc = tuple(problem["loc"])
    return any(len(p["loc"]) > len(loc) and tuple(p["loc"][: len(loc)]) == loc for p in problems)


def _one_problem(
    problem: Any,
    yaml_path: Location,
    source: Path | str,
    lines: dict[Location, int],
    root: type[BaseModel],
) -> str:
    line = _line_of(yaml_path, lines)
    where = f"{source}" + (f" line {line}" if line else "")
    field = _dotted(yaml_path) or "policy"
    return f"{where}: {field}: {_problem_text(problem, yaml_path, root)}"


def _yaml_location(loc: Sequence[str | int], lines: dict[Location, int]) -> Location:
    """Drop pydantic's internal loc parts (union tags, validator names) that are not YAML keys."""
    path: Location = ()
    for part in loc:
        candidate = (*path, part)
        if candidate in lines or isinstance(part, int) or not lines:
            path = candidate
    if loc and loc[-1] not in path and isinstance(loc[-1], str) and not _is_tag(loc[-1]):
        path = (*path, loc[-1])
    return path


def _is_tag(part: str) -> bool:
    return part.startswith(("function-", "tagged-union")) or part in _ATTACK_NAMES


def _line_of(path: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _dotted(path: Location) -> str:
    text = ""
    for part in path:
        name = _key_text(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


def _key_text(part: object) -> str:
    """A key as written, quoted when it holds line breaks or other unprintable characters
    (the message must stay one line)."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _problem_text(problem: Any, yaml_path: Location, root: type[BaseModel]) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        key = str(yaml_path[-1]) if yaml_path else "?"
        allowed = _allowed_keys(problem["loc"], root)
        hint = difflib.get_close_matches(key, allowed, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        listing = f"; allowed: {', '.join(sorted(allowed))}" if allowed and not hint else ""
        return f"unknown key {key!r}{did_you_mean}{listing}"
    if kind == "missing":
        advice = _MISSING_HINTS.get(tuple(str(part) for part in yaml_path))
        return "required key is missing" + (f"; {advice}" if advice else "")
    if kind == "union_tag_invalid" and "executor" in problem["loc"]:
        return _unknown_executor_text(problem)
    if kind == "union_tag_invalid":
        return _unknown_attack_text(problem)
    message = str(problem["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message[0].lower() + message[1:] if message else kind


#: What to write when a required section is missing.
_MISSING_HINTS = {
    ("preprocessing",): (
        "give the mean and std (on the 0..1 scale) the model was trained with, or "
        "`preprocessing: none` when the model normalises its input itself"
    ),
    ("preprocessing", "mean"): "give one value per channel on the 0..1 scale",
    ("preprocessing", "std"): "give one value per channel on the 0..1 scale",
    ("gate",): "add at least one condition, e.g. `gate: {max_auc: 0.6}`",
}


def _unknown_attack_text(problem: Any) -> str:
    tag = problem.get("ctx", {}).get("tag", "?")
    hint = difflib.get_close_matches(str(tag), _ATTACK_NAMES, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown attack {tag!r}{did_you_mean}; available: {', '.join(_ATTACK_NAMES)}"


def _unknown_executor_text(problem: Any) -> str:
    from mia_audit.references.executors import executor_kinds

    tag, kinds = problem.get("ctx", {}).get("tag", "?"), executor_kinds()
    hint = difflib.get_close_matches(str(tag), kinds, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown executor kind {tag!r}{did_you_mean}; available: {', '.join(kinds)}"


def _allowed_keys(loc: Sequence[str | int], root: type[BaseModel] = Policy) -> list[str]:
    """The keys allowed where an unknown key was found (walks pydantic's loc, tags included)."""
    from mia_audit.attacks.registry import attack_config
    from mia_audit.references.executors import EXECUTORS, executor_kinds

    model: Any = root
    previous: str | int | None = None
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if _is_model(model) and part in model.model_fields:
            model = _unwrap(model.model_fields[part].annotation)
        elif previous == "executor" and part in executor_kinds():
            model = EXECUTORS.get(str(part)).config_type
        elif part in _ATTACK_NAMES:
            model = attack_config(part)
        previous = part
    return list(model.model_fields) if _is_model(model) else []


def _unwrap(annotation: Any) -> Any:
    """Find the model class inside Optional[...], tuple[...], Annotated[...]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        models = [_unwrap(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        models = [m for m in models if _is_model(m)]
        return models[0] if len(models) == 1 else None
    return annotation


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _attack_names() -> list[str]:
    from mia_audit.attacks.registry import attack_names

    return attack_names()


_ATTACK_NAMES = _attack_names()
