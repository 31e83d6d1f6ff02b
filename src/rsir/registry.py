"""Named, lazily imported implementations: one registry per kind of thing (hashers, encoders, index backends,
formats), each mapping a name to ``"module:attribute"``.

The target module is imported only when a name is used, so listing the choices (for the CLI's ``--help``) never
imports rasterio, faiss or torch. Unknown names and missing optional dependencies raise the registry's own error
class with the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from rsir.errors import RsirError

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> "module:attribute"``, resolved on first use; insertion order is the order shown to users."""

    def __init__(self, what: str, entries: dict[str, str], error: type[RsirError] = RsirError,
                 descriptions: dict[str, str] | None = None) -> None:
        self.what = what
        self._entries = dict(entries)
        self._descriptions = dict(descriptions or {})
        self.error = error

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def target(self, name: str) -> str:
        """The ``"module:attribute"`` string of a name."""
        self._check(name)
        return self._entries[name]

    def describe(self, name: str) -> str:
        """The one-line description given at registration ("" if none)."""
        return self._descriptions.get(name, "")

    def register(self, name: str, target: str, description: str = "") -> None:
        """Add (or replace) an entry, e.g. from a plug-in."""
        self._entries[name] = target
        if description:
            self._descriptions[name] = description

    def _check(self, name: str) -> None:
        if name not in self._entries:
            raise self.error(f"unknown {self.what} {name!r} (known: {', '.join(self._entries)})")

    def get(self, name: str) -> Any:
        """The object registered under ``name`` (its module imported now)."""
        self._check(name)
        module, _, attr = self._entries[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise self.error(f"{self.what} {name!r} is not available in this installation "
                             f"({self._entries[name]}: {e})") from None
