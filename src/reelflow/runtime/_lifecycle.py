"""How a run starts and stops: signals, heartbeats, the final record, messages.

A mixin of :class:`~reelflow.runtime._scheduler.LocalRuntime`, kept apart from the
scheduling logic. While a run is recorded, SIGINT and SIGTERM only set a flag (and
stop an in-process step): the loop then stops the workers and their process
groups, records what ran, marks the run failed and raises
:class:`~reelflow.errors.RunInterruptedError` (exit 130 / 143). A heartbeat every
few seconds lets readers tell a live run from a dead one. A batch of task rows
the database refuses is written row by row, so one bad row costs only its task.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..store import Store, TaskRecord
from ._state import RunState
from ._task import TaskResult

__all__ = ["RunLifecycle", "Beater", "HEARTBEAT_SECONDS", "INTERRUPTED"]

HEARTBEAT_SECONDS = 5.0
INTERRUPTED = "Interrupted:"  # how the exception of a task stopped by an interruption starts


class RunLifecycle:
    """Starting, stopping and recording a run (its state is ``self.state``, a :class:`RunState`)."""

    flow_cls: Any
    flow_name: str
    store: Store
    quiet: bool
    state: RunState

    if TYPE_CHECKING:
        def _worker_ended(self, w: Any, result: TaskResult) -> None: ...  # the scheduler records the task

    def _flush_records(self) -> None:
        """Write the task rows collected since the last flush (finished and cloned tasks).

        One transaction for the batch; if the database refuses it, row by row, so one
        bad row costs only its own task: that task is recorded as failed (without the
        values the database refused) and the run fails naming it and the cause.
        """
        if not self.state.records:
            return
        items, self.state.records = self.state.records, []
        md = self.store.metadata
        try:
            md.record_tasks(self.state.run_id, items)
            return
        except Exception:  # noqa: BLE001 - retried row by row below, which names the culprit
            pass
        for rec, arts in items:
            try:
                md.record_task(self.state.run_id, rec, arts)
                continue
            except Exception as exc:  # noqa: BLE001 - the database refused this row
                cause = _one_line(exc)
            pathspec = f"{self.flow_name}/{self.state.run_id}/{rec.step_name}/{rec.task_id}"
            why = f"its record could not be written to the metadata database: {cause}"
            try:
                md.record_task(self.state.run_id, dataclasses.replace(rec, status="failed", metrics=[], exception=why), {})
            except Exception:  # noqa: BLE001 - nothing more to keep; the run fails below
                pass
            if self.state.failure is None:
                self.state.failure = (
                    f"step {rec.step_name!r} failed (task {pathspec}): {why}. The run's other tasks were "
                    f"recorded; fix the step (e.g. the metrics it logs), then resume: `{self._resume_hint()}`"
                )

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """While a run is recorded: SIGINT and SIGTERM stop it cleanly instead of killing this process."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            # The first signal only sets the flag: the loop stops the workers and records the
            # run within a fraction of a second. An in-process step, or a second signal while
            # that takes too long, is stopped where it is.
            again = self.state.interrupted is not None
            if not again:
                self.state.interrupted = signum
            if self.state.in_step or again:
                raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_workers(self) -> None:
        """Stop the running workers (and their process groups); record them as failed."""
        executor = self.state.executor
        if executor is None:
            return
        reason = (f"{signal.Signals(self.state.interrupted).name} (the run was interrupted)" if self.state.interrupted is not None
                  else "the scheduler: another task failed")
        for w, result in executor.cancel():
            if result is not None and result.status == "succeeded":  # it finished just in time
                self._worker_ended(w, result)
                continue
            spec = w.spec
            rec = TaskRecord(
                step_name=spec.step_name, task_id=spec.task_id, attempt=spec.attempt, status="failed",
                task_key=spec.task_key, started_at=w.started_at, finished_at=time.time(),
                split_index=spec.foreach_frames[-1]["index"] if spec.foreach_frames else None,
                foreach_stack=[[f["index"], f["num_splits"]] for f in spec.foreach_frames],
                input_paths=spec.input_paths,
                exception=f"{INTERRUPTED} stopped by {reason}",
                stdout_key=w.logs["stdout"].close() if w.logs else None,
                stderr_key=w.logs["stderr"].close() if w.logs else None,
            )
            self.state.records.append((rec, {}))

    def _salvage_records(self) -> None:
        try:
            self._flush_records()
        except Exception:  # noqa: BLE001 - already failing; the first error is the one to show
            pass

    def _finish_run(self, status: str, reason: str | None) -> None:
        self.store.metadata.finish_run(self.state.run_id, status, reason=reason)

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.state.last_beat < HEARTBEAT_SECONDS:
            return
        self.state.last_beat = now
        try:
            self.store.metadata.heartbeat(self.state.run_id)
        except Exception:  # noqa: BLE001 - a missed beat must not fail the run
            pass

    def _resume_hint(self) -> str:
        module = sys.modules.get(self.flow_cls.__module__)
        path = getattr(module, "__file__", None)
        if not path:
            return f"reelflow resume <flow file> --origin-run-id {self.state.run_id}"
        try:
            shown = os.path.relpath(path)
        except ValueError:
            shown = path
        shown = shown if not shown.startswith("..") else path
        if sys.argv and os.path.abspath(sys.argv[0]) == os.path.abspath(path):
            return f"python {shown} resume --origin-run-id {self.state.run_id}"
        return f"reelflow resume {shown} --origin-run-id {self.state.run_id}"

    def _where(self) -> str:
        describe = getattr(self.store, "describe", None)
        if callable(describe):
            try:
                return str(describe())
            except Exception:  # noqa: BLE001 - only a message
                pass
        return str(self.store.config.home)

    def _say(self, msg: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(msg, flush=True)



class Beater:
    """Heartbeats from a thread while steps run in-process (the loop is blocked in them)."""

    def __init__(self, runtime: RunLifecycle) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(runtime,), name="reelflow-heartbeat", daemon=True)
        self._thread.start()

    def _run(self, runtime: RunLifecycle) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            runtime._heartbeat(force=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


