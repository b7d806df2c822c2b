"""Package names that load on first use (PEP 562): the command line imports every sub-command's ``cli`` module,
and so every package's ``__init__``, to build its parser; a package whose ``__init__`` imported torch and MONAI would
make every command, even a bad argument's error, wait seconds for them."""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["lazy_names"]


def lazy_names(package: str, modules: dict[str, list[str]]) -> tuple[list[str], Callable, Callable]:
    """Return ``__all__``, ``__getattr__`` and ``__dir__`` for ``package``, whose names live in its ``modules``
    (sub-module name: the names it gives)."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*vars(importlib.import_module(package)), *where])

    return list(where), __getattr__, __dir__
