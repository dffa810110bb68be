"""How a task attempt runs: one small protocol and its local implementations.

The scheduler decides *what* runs and records it; an :class:`Executor` decides
*where* and *how*. It is given task attempts (:meth:`Executor.submit`), reports
the ones that ended (:meth:`Executor.poll`), stops everything on a failure or an
interrupt (:meth:`Executor.cancel`) and releases what it holds
(:meth:`Executor.shutdown`). Every executor is held to the same semantics by one
parametrised test suite (``tests/runtime/test_executors.py``).

=============  ===============================================================
name           how a task attempt runs
=============  ===============================================================
``inprocess``  in the scheduler's own process, one at a time (pdb works)
``fork``       a worker forked from the scheduler
``forkserver`` a worker forked from a small fork server (``_zygote.py``)
``spawn``      a fresh interpreter that imports the flow file
``ray``        a Ray task on a Ray cluster (``_ray.py``; the ``ray`` extra)
=============  ===============================================================
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ParameterError
from ._inprocess import run_inprocess
from ._pool import WorkerPool
from ._task import TaskResult, TaskSpec

__all__ = [
    "Attempt",
    "Executor",
    "ExecutorContext",
    "EXECUTORS",
    "InProcessExecutor",
    "ForkExecutor",
    "ForkServerExecutor",
    "SpawnExecutor",
    "make_executor",
    "resolve_executor_name",
]

EXECUTORS = ("inprocess", "fork", "forkserver", "spawn", "ray")

Echo = Callable[[TaskSpec, str, bytes], None]


@runtime_checkable
class Attempt(Protocol):
    """One running (or ended) task attempt, as the scheduler sees it.

    ``logs`` maps ``"stdout"`` / ``"stderr"`` to an object with ``close() -> key | None``
    (the stored log) and ``tail() -> bytes`` (its last lines, for a failure message).
    """

    spec: TaskSpec
    frames: list[dict[str, Any]]
    started_at: float
    logs: dict[str, Any]


@dataclass
class ExecutorContext:
    """What every executor is given by the scheduler for one run."""

    flow_cls: Any
    store: Any
    tmp_dir: Path  # the run's private temporary directory (0700)
    echo: Echo | None  # receives each output line of a task (None: quiet)


@runtime_checkable
class Executor(Protocol):
    """Runs task attempts for the scheduler.

    ``runs_here`` is true when :meth:`submit` runs the step in the calling thread (the
    scheduler then lets a signal interrupt the step and beats the heartbeat from a
    thread). ``default_workers`` is how many attempts run at once when the user did
    not say (``--max-workers``).
    """

    name: str
    runs_here: bool

    def __len__(self) -> int:
        """Attempts submitted and not yet reported by :meth:`poll` or :meth:`cancel`."""

    def default_workers(self) -> int:
        """Attempts to keep running at once unless ``--max-workers`` says otherwise."""

    def submit(self, spec: TaskSpec, frames: list[dict[str, Any]], *, timeout_seconds: float, now: float,
               decorators: dict[str, Any]) -> None:
        """Start one attempt; ``decorators`` are the step's (``@resources``, ...).

        Raises a :class:`~reelflow.errors.ReelflowError` when the attempt can never run
        (e.g. no node has the resources it asks for): the run then fails naming the step.
        """

    def poll(self, max_wait: float = 0.2) -> list[tuple[Attempt, TaskResult]]:
        """Wait up to ``max_wait`` seconds; return the attempts that ended since the last call."""

    def cancel(self, grace: float = 2.0) -> list[tuple[Attempt, TaskResult | None]]:
        """Stop every running attempt (and what it started); the result of those that had
        finished just in time, None for the others."""

    def shutdown(self) -> None:
        """Release what the executor holds (sockets, servers, cluster connections)."""


@dataclass
class _LocalAttempt:
    spec: TaskSpec
    frames: list[dict[str, Any]]
    started_at: float
    logs: dict[str, Any] = field(default_factory=dict)


class InProcessExecutor:
    """Runs each attempt inside :meth:`submit`, in this process (breakpoints and pdb work).

    Output reaches the terminal and the task's logs; ``@timeout`` is a ``SIGALRM``.
    """

    name = "inprocess"
    runs_here = True

    def __init__(self, ctx: ExecutorContext) -> None:
        self.ctx = ctx
        self._done: list[tuple[Attempt, TaskResult]] = []

    def __len__(self) -> int:
        return len(self._done)

    def default_workers(self) -> int:
        return 1

    def submit(self, spec: TaskSpec, frames: list[dict[str, Any]], *, timeout_seconds: float, now: float,
               decorators: dict[str, Any]) -> None:
        started = time.time()
        result, logs = run_inprocess(self.ctx.flow_cls, spec, self.ctx.store, timeout_seconds)
        self._done.append((_LocalAttempt(spec, frames, started, dict(logs)), result))

    def poll(self, max_wait: float = 0.2) -> list[tuple[Attempt, TaskResult]]:
        done, self._done = self._done, []
        return done

    def cancel(self, grace: float = 2.0) -> list[tuple[Attempt, TaskResult | None]]:
        done, self._done = self._done, []
        return [(a, r) for a, r in done]

    def shutdown(self) -> None:
        self._done.clear()


class _PoolExecutor:
    """Worker processes (see ``_pool.py``): one per attempt, each leading its own process group."""

    name = ""
    runs_here = False

    def __init__(self, ctx: ExecutorContext, *, use_fork: bool, zygote: Any = None) -> None:
        self.ctx = ctx
        self.pool = WorkerPool(ctx.flow_cls, ctx.store, ctx.tmp_dir, echo=ctx.echo, use_fork=use_fork, zygote=zygote)

    def __len__(self) -> int:
        return len(self.pool)

    def default_workers(self) -> int:
        return os.cpu_count() or 1

    def submit(self, spec: TaskSpec, frames: list[dict[str, Any]], *, timeout_seconds: float, now: float,
               decorators: dict[str, Any]) -> None:
        self.pool.start(spec, frames, timeout_seconds, now)

    def poll(self, max_wait: float = 0.2) -> list[tuple[Attempt, TaskResult]]:
        return list(self.pool.poll(max_wait))

    def cancel(self, grace: float = 2.0) -> list[tuple[Attempt, TaskResult | None]]:
        return list(self.pool.abort(grace))

    def shutdown(self) -> None:
        self.pool.close()


class ForkExecutor(_PoolExecutor):
    """A worker forked from the scheduler per attempt (no interpreter start-up)."""

    name = "fork"

    def __init__(self, ctx: ExecutorContext) -> None:
        from ._worker import fork_available

        if not fork_available():
            raise ParameterError("executor 'fork' needs os.fork (Linux or macOS); use --executor spawn here")
        super().__init__(ctx, use_fork=True)


class SpawnExecutor(_PoolExecutor):
    """A fresh interpreter per attempt that imports the flow file (works everywhere)."""

    name = "spawn"

    def __init__(self, ctx: ExecutorContext) -> None:
        super().__init__(ctx, use_fork=False)


class ForkServerExecutor(_PoolExecutor):
    """Workers forked from a small fork server (cheaper than forking the scheduler).

    The command line starts the server before the scheduler's heavy imports and
    passes it in (``zygote``); without one, the executor starts its own and stops it
    on :meth:`shutdown`.
    """

    name = "forkserver"

    def __init__(self, ctx: ExecutorContext, zygote: Any = None) -> None:
        from ._zygote import Zygote, zygote_available

        self._own = None
        if zygote is None:
            if not zygote_available():
                raise ParameterError("executor 'forkserver' needs Linux (SCM_RIGHTS); use --executor fork or spawn")
            zygote = self._own = Zygote(ctx.flow_cls)
        super().__init__(ctx, use_fork=True, zygote=zygote)

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            if self._own is not None:
                self._own.close()
                self._own = None


def resolve_executor_name(name: str | None, *, inprocess: bool = False, use_fork: bool = True,
                          zygote: Any = None) -> str:
    """The executor a run uses: ``name``, else ``$REELFLOW_EXECUTOR``, else what the flags imply."""
    from ._worker import fork_available

    if inprocess:
        if name not in (None, "", "inprocess"):
            raise ParameterError(f"--inprocess runs every task in this process; it cannot be combined with "
                                 f"--executor {name}")
        return "inprocess"
    chosen = name or os.environ.get("REELFLOW_EXECUTOR") or ""
    chosen = chosen.strip().lower()
    if not chosen:
        if zygote is not None:
            return "forkserver"
        return "fork" if use_fork and fork_available() else "spawn"
    if chosen not in EXECUTORS:
        where = "--executor" if name else "REELFLOW_EXECUTOR"
        raise ParameterError(f"{where}={chosen!r} is not an executor; choose one of {', '.join(EXECUTORS)}")
    return chosen


def make_executor(name: str, ctx: ExecutorContext, *, zygote: Any = None,
                  options: dict[str, Any] | None = None) -> Executor:
    """The executor called ``name`` for one run (see :data:`EXECUTORS`)."""
    if name == "inprocess":
        return InProcessExecutor(ctx)
    if name == "fork":
        return ForkExecutor(ctx)
    if name == "forkserver":
        return ForkServerExecutor(ctx, zygote)
    if name == "spawn":
        return SpawnExecutor(ctx)
    if name == "ray":
        from ._ray import RayExecutor  # Ray loads only when asked for

        return RayExecutor(ctx, **(options or {}))
    raise ParameterError(f"{name!r} is not an executor; choose one of {', '.join(EXECUTORS)}")
