"""Running flows: the scheduler, the executors that run its tasks, the flow CLI and ``Runner``.

An :class:`Executor` runs task attempts: in this process, in forked or spawned
workers, through a fork server, or as Ray tasks (``--executor ray``).

Names load on first use, so running a flow does not import what only notebooks need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["LocalRuntime", "Runner", "NBRunner", "ExecutingRun", "ExecutingTask", "CaughtException", "TaskSpec", "TaskResult", "Executor",
           "ExecutorContext", "EXECUTORS", "RunState"]

_WHERE = {
    "LocalRuntime": "._scheduler",
    "Runner": "._runner",
    "ExecutingRun": "._runner",
    "ExecutingTask": "._runner",
    "NBRunner": "._nbrunner",
    "CaughtException": "._task",
    "TaskSpec": "._task",
    "TaskResult": "._task",
    "Executor": "._executors",
    "ExecutorContext": "._executors",
    "EXECUTORS": "._executors",
    "RunState": "._state",
}

if TYPE_CHECKING:
    from ._executors import EXECUTORS, Executor, ExecutorContext
    from ._nbrunner import NBRunner
    from ._runner import ExecutingRun, ExecutingTask, Runner
    from ._state import RunState
    from ._scheduler import LocalRuntime
    from ._task import CaughtException, TaskResult, TaskSpec


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'reelflow.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
