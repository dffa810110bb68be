"""Running flows: the local scheduler, worker processes, the flow CLI and ``Runner``.

Names load on first use, so running a flow does not import what only notebooks need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["LocalRuntime", "Runner", "ExecutingRun", "CaughtException", "TaskSpec"]

_WHERE = {
    "LocalRuntime": "._scheduler",
    "Runner": "._runner",
    "ExecutingRun": "._runner",
    "CaughtException": "._task",
    "TaskSpec": "._task",
}

if TYPE_CHECKING:
    from ._runner import ExecutingRun, Runner
    from ._scheduler import LocalRuntime
    from ._task import CaughtException, TaskSpec


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'reelflow.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
