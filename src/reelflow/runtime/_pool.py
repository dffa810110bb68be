"""The running workers: start them, stream their output, enforce deadlines, reap them.

The scheduler decides *what* runs; this pool owns the processes: their pipes (read
without blocking through one selector, streamed to the store in bounded chunks),
their ``@timeout`` deadlines, and turning an exit into a :class:`TaskResult` (a
worker that died without one is reported as crashed, with its exit status or
signal). Every worker leads its own process group; stopping a worker stops the
whole group, so processes a step started do not outlive it.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._logs import LogSink
from ._task import TaskResult, TaskSpec
from ._worker import Worker, start_worker

__all__ = ["WorkerPool"]

_ZYGOTE = object()  # selector tag of the fork server's socket
_LONGEST_LINE = 1 << 16  # echoed in pieces beyond this, so memory stays bounded


class WorkerPool:
    """Worker processes of one run. ``echo(spec, stream, line)`` receives their output lines
    (None: output is only stored, never split into lines)."""

    def __init__(self, flow_cls: Any, store: Any, tmp_dir: Path, *, echo: Callable[[TaskSpec, str, bytes], None] | None,
                 use_fork: bool = True, zygote: Any = None) -> None:
        self.flow_cls = flow_cls
        self.store = store
        self.tmp_dir = tmp_dir
        self.echo = echo
        self.use_fork = use_fork
        self.zygote = zygote if use_fork else None
        self.running: dict[int, Worker] = {}
        from ..ui._livelogs import LivePublisher  # light: the UI's live view of long tasks' output

        self.live = LivePublisher(store)
        self.selector = selectors.DefaultSelector()
        if self.zygote is not None:
            self.selector.register(self.zygote.fileno(), selectors.EVENT_READ, _ZYGOTE)

    def __len__(self) -> int:
        return len(self.running)

    def start(self, spec: TaskSpec, frames: list[dict[str, Any]], timeout_seconds: float, now: float) -> None:
        w = start_worker(self.flow_cls, spec, self.store, self.tmp_dir, now=now, use_fork=self.use_fork,
                         zygote=self.zygote)
        w.frames = frames
        w.logs = {"stdout": LogSink(self.store), "stderr": LogSink(self.store)}
        if timeout_seconds:
            w.deadline = now + timeout_seconds
        for fd in w.fds:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, w)
        self.running[w.pid] = w

    def poll(self, max_wait: float = 0.2) -> list[tuple[Worker, TaskResult]]:
        """Read what is ready, enforce deadlines, and return the workers that ended."""
        now = time.time()
        deadlines = [w.deadline for w in self.running.values() if w.deadline]
        timeout = max_wait if not deadlines else max(0.0, min(max_wait, min(deadlines) - now))
        for key, _ in self.selector.select(timeout):
            if key.data is _ZYGOTE:
                assert self.zygote is not None
                self.zygote.collect()
            else:
                self._read(key.fd, key.data)
        now = time.time()
        for w in self.running.values():
            self.live.maybe_publish(w.spec, w.logs, w.started_at, now)
        ended = []
        for pid, w in list(self.running.items()):
            if w.deadline and now > w.deadline and w.killed_reason is None:
                w.killed_reason = (
                    f"step {w.spec.step_name!r} timed out after {w.deadline - w.started_at:.0f}s (@timeout); "
                    "raise the limit or make the step faster"
                )
                _kill_group(pid)
            # Once its pipes are closed the worker is exiting: wait for it rather
            # than poll an empty selector.
            done, status = self._reap(pid, block=not w.fds)
            if done:
                w.exit_status = status
                for fd in list(w.fds):
                    self._read(fd, w, final=True)
                del self.running[pid]
                ended.append((w, self._result(w)))
        return ended

    def _reap(self, pid: int, block: bool) -> tuple[int, int]:
        """(pid, wait status) once the worker has exited, else (0, 0)."""
        if self.zygote is None:
            return os.waitpid(pid, 0 if block else os.WNOHANG)
        if block:
            return pid, self.zygote.wait_exit(pid)
        self.zygote.collect()
        status = self.zygote.exits.pop(pid, None)
        return (0, 0) if status is None else (pid, status)

    def _read(self, fd: int, w: Worker, final: bool = False) -> None:
        stream = w.fds.get(fd)
        if stream is None:
            return
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                if final:
                    self._close_fd(fd, w)
                return
            if not data:
                self._close_fd(fd, w)
                return
            w.logs[stream].write(data)
            if self.echo is None:
                if not final:
                    return
                continue
            buf = w.partial[stream] + data
            *lines, w.partial[stream] = buf.split(b"\n")
            for line in lines:
                self.echo(w.spec, stream, line)
            if len(w.partial[stream]) > _LONGEST_LINE:  # no newline in sight: echo what there is
                self.echo(w.spec, stream, w.partial[stream])
                w.partial[stream] = b""
            if not final:
                return

    def _close_fd(self, fd: int, w: Worker) -> None:
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)
        stream = w.fds.pop(fd)
        rest = w.partial[stream]
        if rest and self.echo is not None:
            w.partial[stream] = b""
            self.echo(w.spec, stream, rest)

    @staticmethod
    def _result(w: Worker) -> TaskResult:
        if w.popen is not None:  # already reaped by waitpid; tell Popen so
            w.popen.returncode = os.waitstatus_to_exitcode(w.exit_status or 0)
        result = w.read_result()
        if w.killed_reason or result is None:
            _kill_group(w.pid)  # what the step started dies with a worker that did not finish
        if w.killed_reason:
            return TaskResult("failed", exception=f"TimeoutError: {w.killed_reason}")
        if result is None:
            return TaskResult("failed", exception=crash_message(w.spec.step_name, w.exit_status))
        return result

    def abort(self, grace: float = 2.0) -> list[tuple[Worker, TaskResult | None]]:
        """Stop every worker and its process group: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns the stopped workers, their output read to the end, with the result of
        those that finished before they were stopped (None for the others), so the
        scheduler records a finished task as finished and the rest as interrupted.
        """
        stopped: list[tuple[Worker, int]] = []
        for pid in list(self.running):
            _kill_group(pid, signal.SIGTERM)
        deadline = time.time() + grace
        while self.running and time.time() < deadline:
            for pid, w in list(self.running.items()):
                done, status = self._reap(pid, block=False)
                if done:
                    del self.running[pid]
                    self._drain(w)
                    stopped.append((w, status))
            if self.running:
                time.sleep(0.02)
        for pid, w in list(self.running.items()):
            _kill_group(pid)
            _, status = self._reap(pid, block=True)
            self._drain(w)
            stopped.append((w, status))
        out: list[tuple[Worker, TaskResult | None]] = []
        for w, status in stopped:
            _kill_group(w.pid)  # what a step started and that ignored SIGTERM
            w.exit_status = status
            if w.popen is not None:  # already reaped by waitpid; tell Popen so
                w.popen.returncode = os.waitstatus_to_exitcode(status)
            out.append((w, w.read_result()))
        self.running.clear()
        return out

    def _drain(self, w: Worker) -> None:
        for fd in list(w.fds):
            try:
                self._read(fd, w, final=True)
            except OSError:
                self._close_fd(fd, w)

    def close(self) -> None:
        self.selector.close()


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal worker ``pid``'s process group (the worker and what its step started)."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:  # no such group: the worker is not (yet) its leader
        pass
    except PermissionError:  # pid was reused by someone else's group: leave it alone
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def crash_message(step_name: str, status: int | None) -> str:
    """The failure of a worker that ended without a result, naming the real cause."""
    cause = "a crash in native code, os._exit or sys.exit outside the step"
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            cause = "SIGKILL: the out-of-memory killer or a `kill -9`"
        elif sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            cause = "a crash in native code; its stderr log holds the Python traceback"
        else:
            cause = "a signal sent to the worker from outside"
    elif status is not None and os.WIFEXITED(status):
        cause = "os._exit or a crash in native code"
    return (f"WorkerCrashed: the worker process of step {step_name!r} {_describe_exit(status)} "
            f"without reporting a result ({cause})")


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by signal {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended (status {status})"
