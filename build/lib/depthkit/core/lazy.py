"""Lazy package faces: a package lists where each public name lives, and the module holding it
is imported on first use (so importing a package never pulls in torch or DALI by itself)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str],
                 eager: Mapping[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `homes` maps a name to its module; `eager`
    is the package's globals (names already imported)."""

    def getattr_(name: str) -> Any:
        if name in homes:
            return getattr(import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted({*eager, *homes})

    return getattr_, dir_
