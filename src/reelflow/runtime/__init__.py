"""Running flows: the local scheduler, worker processes, the flow CLI and ``Runner``."""

from __future__ import annotations

from ._runner import ExecutingRun, Runner
from ._scheduler import LocalRuntime
from ._task import CaughtException, TaskSpec

__all__ = ["LocalRuntime", "Runner", "ExecutingRun", "CaughtException", "TaskSpec"]
