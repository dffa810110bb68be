"""Plain records shared by the runtime and the metadata store (no database imports here,
so worker processes that only write blobs stay light)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArtifactRef", "TaskRecord", "METRIC_NAME_MAX", "METRIC_STEP_MIN", "METRIC_STEP_MAX"]

#: Longest metric name the store keeps (characters).
METRIC_NAME_MAX = 1000
#: A metric's ``step`` is a signed 64-bit integer.
METRIC_STEP_MIN, METRIC_STEP_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact's value lives: its blob key, raw size and type name."""

    key: str
    size: int
    type: str


@dataclass
class TaskRecord:
    """One finished attempt of a task, as the runtime reports it."""

    step_name: str
    task_id: int
    attempt: int
    status: str
    task_key: str
    started_at: float
    finished_at: float
    split_index: int | None = None
    foreach_stack: list[Any] = field(default_factory=list)
    input_paths: list[str] = field(default_factory=list)
    exception: str | None = None
    stdout_key: str | None = None
    stderr_key: str | None = None
    cloned_from: str | None = None
    resources: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    metrics: list[tuple[str, float, int | None, float]] = field(default_factory=list)  # name, value, step, time
