"""Imports deferred to first use, so that a command that never trains never imports torch
(``--help``, ``report`` and ``best`` start in well under a second)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``modules``
    (name -> submodule) from its submodule when it is first read."""

    def attribute(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{modules[name]}"), name)

    return attribute


def lazy_module(name: str) -> Any:
    """Module ``name``, imported when one of its attributes is first read: a command's heavy
    modules load only when it runs."""
    return _LazyModule(name)


class _LazyModule:
    # Not a module in sys.modules (as with importlib's LazyLoader): torch walks sys.modules
    # while it loads, which would start loading such modules midway through another's import.
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)
