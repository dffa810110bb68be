"""A module imported on its first attribute access (SQLAlchemy stays unloaded until used).

Modules of the store that need SQLAlchemy only off the hot path bind it as::

    if TYPE_CHECKING:
        import sqlalchemy as sa
    else:
        sa = lazy_module("sqlalchemy")

so mypy sees the real module and a run that never leaves the fast SQLite path
(``_fastsqlite.py``) never pays for the import (~0.2 s).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._lazy_name), attr)
        setattr(self, attr, value)  # later lookups skip __getattr__
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it when an attribute is first read."""
    return _LazyModule(name)
