"""Name -> class registries for the plugin kinds (models, samplers, losses).

A plugin class carries a ``Config`` dataclass; configs name plugins by string, and an
unknown name is an error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from negrec.config_base import from_dict
from negrec.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps config names to plugin classes of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    @contextmanager
    def registered(self, name: str, obj: T) -> Iterator[T]:
        """``obj`` registered under ``name`` inside a ``with`` block only, e.g. a plugin
        defined in a test module that must not leak into other tests."""
        self.register(name)(obj)
        try:
            yield obj
        finally:
            del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> dict[str, T]:
        """Name -> plugin, sorted by name (a copy: an alias appears under each name)."""
        return {name: self._entries[name] for name in self.names()}

    def get(self, name: str, key: str) -> T:
        if not isinstance(name, str):  # e.g. name = [] in a config: not hashable
            raise ConfigError(key, f"expected a {self.kind} name (a string), got {name!r}")
        if name not in self._entries:
            known = ", ".join(self.names())
            raise ConfigError(key, f"unknown {self.kind} '{name}' (known: {known})")
        return self._entries[name]

    def config(self, name: str, options: dict[str, Any], prefix: str) -> Any:
        """The plugin's typed Config built from ``options`` (unknown keys rejected)."""
        cls = self.get(name, f"{prefix}.name")
        return from_dict(cls.Config, options, prefix=prefix)  # type: ignore[attr-defined]
