"""Lazy package exports (PEP 562): a package names what it exports and where it lives, and the
defining module is imported on first access only."""

from __future__ import annotations

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, list[str]], submodules: tuple[str, ...] = ()):
    """`(__getattr__, __dir__, __all__)` for `package`; `exports` maps module -> names."""
    where = {name: module for module, names in exports.items() for name in names}
    public = sorted(where) + list(submodules)

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(public))

    return __getattr__, __dir__, public
