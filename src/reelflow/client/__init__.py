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
from ._metaflow import Metaflow, default_metadata, get_metadata, metadata
from ._search import compare_runs, find_runs
from ._task import Metadata

__all__ = [
    "Flow",
    "Run",
    "Step",
    "Task",
    "TaskData",
    "DataArtifact",
    "Metadata",
    "Metaflow",
    "get_metadata",
    "metadata",
    "default_metadata",
    "namespace",
    "get_namespace",
    "default_namespace",
    "find_runs",
    "compare_runs",
]
