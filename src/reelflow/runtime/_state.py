"""The state of one run while the scheduler drives it.

:class:`~reelflow.runtime.LocalRuntime` holds how to run a flow (its class, store,
options); everything that belongs to one run (its id, the tasks ready to start,
the join buckets, the task rows not yet written, why it failed, the signal that
stopped it, the executor running its tasks) lives here, so a runtime object can
run again, or resume, without leftovers from the previous run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import ArtifactRef, TaskRecord
from ._gang import Gangs
from ._task import TaskSpec

__all__ = ["RunState", "Pending", "Origin"]


@dataclass
class Pending:
    """A task attempt waiting to start (or to be cloned from the origin run)."""

    spec: TaskSpec
    frames: list[dict[str, Any]]
    not_before: float = 0.0
    clone: dict[str, Any] | None = None  # origin task to clone instead of running


@dataclass
class Origin:
    """The run a resume continues: its successful tasks and the steps to run again."""

    run_id: str
    tasks: dict[str, dict[str, Any]]  # task_key -> successful task row (+ "refs")
    rerun: set[str]


@dataclass
class RunState:
    """Per-run state of the scheduler (see the module docstring)."""

    run_id: str = ""
    param_refs: dict[str, ArtifactRef] = field(default_factory=dict)
    origin: Origin | None = None
    next_task_id: int = 1
    ready: deque[Pending] = field(default_factory=deque)
    buckets: dict[tuple[str, int], dict[int, tuple[TaskSpec, dict[str, ArtifactRef]]]] = field(default_factory=dict)
    visits: dict[tuple[str, str], int] = field(default_factory=dict)
    records: list[tuple[TaskRecord, dict[str, ArtifactRef]]] = field(default_factory=list)
    failure: str | None = None  # why the run failed (the first failure)
    interrupted: int | None = None  # the signal that stopped the run
    in_step: bool = False  # a step runs in this thread (a signal must stop it)
    last_beat: float = 0.0
    executor: Any = None  # the run's Executor, while it runs
    tmp_dir: Path | None = None
    gangs: Gangs = field(default_factory=Gangs)  # @parallel members waiting for their gang
