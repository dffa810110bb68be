"""Running one task in the scheduler's own process (``--inprocess``: breakpoints work).

The step's output still reaches the terminal and is also captured for ``logs``;
``@timeout`` is enforced with ``SIGALRM`` (main thread, POSIX), which raises
``TimeoutError`` inside the step; the previous handler and timer are restored.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ._logs import LogSink
from ._task import TaskResult, TaskSpec, execute_task

__all__ = ["run_inprocess"]


class _Tee(io.TextIOBase):
    """Writes go to the original stream and to a log sink."""

    def __init__(self, original: TextIO, sink: LogSink) -> None:
        self._original = original
        self._sink = sink

    def write(self, s: str) -> int:
        self._sink.write(s.encode("utf-8", "replace"))
        return self._original.write(s)

    def flush(self) -> None:
        self._original.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def buffer(self) -> Any:  # bytes written here reach the terminal but not the log
        return self._original.buffer

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


@contextmanager
def _deadline(seconds: float, step_name: str) -> Iterator[None]:
    usable = (seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(
            f"step {step_name!r} timed out after {seconds:.0f}s (@timeout); raise the limit or make the step faster"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_inprocess(flow_cls: Any, spec: TaskSpec, store: Any, timeout_seconds: float) -> tuple[TaskResult, dict[str, LogSink]]:
    """Run ``spec`` here; its result and its captured stdout/stderr."""
    sinks = {"stdout": LogSink(store), "stderr": LogSink(store)}
    out, err = sys.stdout, sys.stderr
    sys.stdout = _Tee(out, sinks["stdout"])  # type: ignore[assignment]
    sys.stderr = _Tee(err, sinks["stderr"])  # type: ignore[assignment]
    try:
        try:
            with _deadline(timeout_seconds, spec.step_name):
                result = execute_task(flow_cls, spec, store)
        except TimeoutError as exc:  # the alarm fired just after the step returned
            result = TaskResult("failed", exception=f"TimeoutError: {exc}")
        # Into the task's stderr log, as a worker does (not for Ctrl-C: the run says it was interrupted).
        if result.status == "failed" and result.traceback and not (result.exception or "").startswith(
                "KeyboardInterrupt"):
            sys.stderr.write(result.traceback)
    finally:
        sys.stdout, sys.stderr = out, err
    return result, sinks
