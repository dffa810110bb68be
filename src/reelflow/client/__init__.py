"""Read runs back: ``Flow -> Run -> Step -> Task -> data``."""

from __future__ import annotations

from ._core import (
    DataArtifact,
    Flow,
    Run,
    Step,
    Task,
    TaskData,
    default_namespace,
    get_namespace,
    namespace,
)
from ._search import compare_runs, find_runs

__all__ = [
    "Flow",
    "Run",
    "Step",
    "Task",
    "TaskData",
    "DataArtifact",
    "namespace",
    "get_namespace",
    "default_namespace",
    "find_runs",
    "compare_runs",
]
