"""YAML loading that remembers where each key stood, so errors can name the line."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from mia_audit.errors import PolicyError

Location = tuple[str | int, ...]


class _LineTrackingLoader(yaml.SafeLoader):
    """A SafeLoader (no Python objects) that records the line of every mapping key and item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[Location, int] = {}
        #: Collections already walked: an alias (*name) is walked once, at its first use, so
        #: nested aliases ("billion laughs") cost time linear in the file, not exponential.
        self._walked: set[int] = set()

    def construct_document(self, node: yaml.Node) -> Any:
        self._record(node, (), ())
        return super().construct_document(node)

    def _record(self, node: yaml.Node, path: Location, inside: tuple[int, ...]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in inside:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to a collection that contains it", node.start_mark
            )
        if id(node) in self._walked:
            return
        self._walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._record(value_node, (*path, key), (*inside, id(node)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._record(item, (*path, index), (*inside, id(node)))


def _reject_duplicate_keys(loader: _LineTrackingLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_LineTrackingLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _reject_duplicate_keys,
)


def load_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse a YAML file safely; return the document and a map from key path to line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a directory, expected a policy YAML file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not a UTF-8 text file; a policy is YAML text") from None
    except OSError as error:
        raise PolicyError(f"{path}: cannot read policy file ({error.strerror})") from None
    try:
        return _parse(text)
    except yaml.MarkedYAMLError as error:
        raise PolicyError(f"{path}: {_describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"{path}: invalid YAML ({_one_line(str(error))})") from None
    except RecursionError:
        raise PolicyError(f"{path}: invalid YAML: nested too deeply to be a policy") from None


def _parse(text: str) -> tuple[Any, dict[Location, int]]:
    loader = _LineTrackingLoader(text)  # checks the characters: may raise a ReaderError
    try:
        return loader.get_single_data(), loader.lines
    finally:
        loader.dispose()


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = error.problem or error.context or "syntax error"
    return f"{where}invalid YAML: {_one_line(problem)}"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "syntax error"
