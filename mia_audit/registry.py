"""Named extension points: attacks, report formats and executors are found by name here.

Each kind has one `Registry`. Built-in entries live in the modules its `builtins` lists (one line
per module; each module registers what it defines when imported). Other packages add entries
without forking through a Python entry-point group (`mia_audit.attacks`, `mia_audit.reports`,
`mia_audit.executors`): an entry point names a module, which registers itself on import, or an
object, which the registry registers. Everything is loaded on first use, so `mia-audit --help`
imports none of it. ARCHITECTURE.md says how to add each kind.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Callable
from typing import Generic, TypeVar

from mia_audit.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name: the built-in modules first, then entry-point plugins.

    `name_of` gives an object's name when an entry point hands over the object itself;
    `module_of` the module that defines an entry (default: its `__module__`), which orders the
    built-ins.
    """

    def __init__(
        self,
        kind: str,
        builtins: tuple[str, ...],
        entry_point_group: str,
        name_of: Callable[[T], str],
        module_of: Callable[[T], str] | None = None,
    ) -> None:
        self.kind = kind
        self.builtins = builtins
        self.entry_point_group = entry_point_group
        self.name_of = name_of
        self.module_of = module_of or _origin
        self._entries: dict[str, T] = {}
        #: Where each plugin entry came from (its entry point and distribution), by name.
        self._plugins: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; a second, different entry under one name is an error."""
        known = self._entries.get(name)
        if known is not None and known is not entry:
            raise InputError(
                f"{self.kind} {name!r} is registered twice ({self.module_of(known)} and "
                f"{self.module_of(entry)}); uninstall one of the packages that provide it"
            )
        self._entries[name] = entry
        return entry

    def entries(self) -> dict[str, T]:
        """Every entry: the built-ins in the order of `builtins` (whatever was imported first),
        then plugins in the order they registered."""
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                importlib.import_module(module)
            for point in importlib.metadata.entry_points(group=self.entry_point_group):
                self._load_plugin(point)
        rank = {module: index for index, module in enumerate(self.builtins)}
        ordered = sorted(
            enumerate(self._entries.items()),
            key=lambda item: (rank.get(self.module_of(item[1][1]), len(rank)), item[0]),
        )
        return dict(entry for _, entry in ordered)

    def names(self) -> list[str]:
        return list(self.entries())

    def get(self, name: str) -> T:
        return self.entries()[name]

    def plugin_origin(self, name: str) -> str | None:
        """`entry point 'x' (module:object) of distribution pkg 1.0` for a plugin's entry;
        None for a built-in one."""
        self.entries()
        return self._plugins.get(name)

    def _load_plugin(self, point: importlib.metadata.EntryPoint) -> None:
        where = f"entry point {point.name!r} ({point.value}) in group {self.entry_point_group}"
        before = set(self._entries)
        try:
            loaded = point.load()
        except Exception as error:  # third-party code: any failure is possible
            raise InputError(
                f"{where}: cannot be loaded ({type(error).__name__}: {error}); fix or "
                "uninstall the package that provides it"
            ) from None
        if not isinstance(loaded, types.ModuleType):
            self.register(self.name_of(loaded), loaded)
        dist = getattr(point, "dist", None)
        origin = f"entry point {point.name!r} ({point.value})"
        if dist is not None:
            origin += f" of distribution {dist.metadata['Name']} {dist.version}"
        for name in set(self._entries) - before:
            self._plugins[name] = origin


def _origin(entry: object) -> str:
    return getattr(entry, "__module__", None) or type(entry).__module__
