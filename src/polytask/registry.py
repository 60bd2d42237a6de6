"""Name -> implementation registries: the extension points of polytask.

Task types, samplers and loss weightings are looked up by the name a user writes in YAML. An unknown name is an
error that lists every registered name, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from polytask.errors import PolytaskError

T = TypeVar("T")


class UnknownNameError(PolytaskError, KeyError):
    """Raised when a registry is asked for a name it does not hold. A PolytaskError (the CLI prints it without a
    traceback) and still a KeyError, for callers that caught it as one."""

    def __init__(self, kind: str, name: str, available: list[str], message: str | None = None,
                 hint: str | None = None) -> None:
        self.kind, self.name, self.available = kind, name, available
        listed = f"available: {', '.join(available) or '(none)'}"
        super().__init__(f"{message or f'unknown {kind} {name!r}'}; {listed}" + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


def _module(item: object) -> str:
    return getattr(item, "__module__", None) or repr(item)


class Registry(Generic[T]):
    """A named collection of plugins of one kind (e.g. 'task type')."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@SAMPLERS.register("uniform")`` on a class or factory."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice (first by {_module(self._items[name])}, "
                                 f"again by {_module(item)}): a plugin needs a name of its own")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        """The plugin registered as ``name``. A name not found loads the installed plugin packages (entry points)
        once and looks again; still unknown, it is an UnknownNameError listing the names and how to add one."""
        if name not in self._items:
            from polytask.plugins import HOW_TO_PROVIDE, load_entry_points

            load_entry_points()
            if name not in self._items:
                raise UnknownNameError(self.kind, name, self.names(), hint=HOW_TO_PROVIDE)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]
