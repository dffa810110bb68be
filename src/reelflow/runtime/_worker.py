"""Worker processes: one per task attempt, forked from the parent that already imported
the flow (no interpreter start-up), with a spawn fallback where fork is unavailable.

A worker's stdout and stderr are pipes the scheduler reads live; its result is a
pickle written to a file in the run's private temporary directory (mode 0700,
see ``_tmp.py``) that the scheduler reads once the worker has exited. A worker
that dies without a result (``os._exit``, a segfault, SIGKILL) is reported as
failed with its exit status.

Each worker leads its own process group, so a timeout or an interrupted run
stops the processes a step started too (``os.killpg``), and a terminal's Ctrl-C
reaches only the scheduler, which decides how to stop the workers.
"""

from __future__ import annotations

import ctypes
import gc
import faulthandler
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._task import TaskResult, TaskSpec, execute_task

__all__ = ["Worker", "start_worker", "fork_available", "set_group"]


def fork_available() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


@dataclass
class Worker:
    spec: TaskSpec
    pid: int
    fds: dict[int, str]  # fd -> "stdout" | "stderr"
    result_path: Path
    started_at: float
    deadline: float | None = None
    popen: subprocess.Popen[bytes] | None = None
    logs: dict[str, Any] = field(default_factory=dict)  # stream -> _logs.LogSink (set by the pool)
    partial: dict[str, bytes] = field(default_factory=lambda: {"stdout": b"", "stderr": b""})
    exit_status: int | None = None
    killed_reason: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)

    def read_result(self) -> TaskResult | None:
        try:
            # The run's private directory (0700, checked when made) holds only what our own
            # workers wrote; a link or another user's file there is refused, never unpickled.
            fd = os.open(self.result_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with open(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if hasattr(os, "getuid") and st.st_uid != os.getuid():
                    return None
                return pickle.load(f)  # noqa: S301 - written by this run's worker
        except (OSError, EOFError, pickle.UnpicklingError):
            return None
        finally:
            try:
                os.unlink(self.result_path)
            except OSError:
                pass


_libc: Any = None


def _load_libc() -> None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    if _libc:
        _libc.prctl(1, sig)  # PR_SET_PDEATHSIG: no orphans if the scheduler is killed


def set_group(pid: int) -> None:
    """Put a just-forked worker in its own group from the parent's side too, so the group
    exists before anyone signals it (the child does the same; whichever runs first wins)."""
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child already did it, or has exited
        pass


def _write_result(path: Path, result: TaskResult) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        data = pickle.dumps(result, protocol=5)
    except Exception as exc:  # an exception message that does not pickle
        data = pickle.dumps(TaskResult("failed", exception=f"unpicklable result: {exc}"))
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _own_group() -> None:
    """Make this process the leader of a new process group (the worker's and its children's)."""
    try:
        os.setpgid(0, 0)
    except OSError:  # already a group leader (spawned with a new session)
        pass


def _child_main(flow_cls: Any, spec: TaskSpec, store: Any, result_path: Path, out_w: int, err_w: int) -> None:
    code = 1
    try:
        _own_group()
        _die_with_parent()
        # Objects inherited from the parent are never collected here, so the GC does
        # not touch (and copy) their pages; freezing after the fork is O(1) and leaves
        # the parent's collector alone.
        gc.freeze()
        # Not the scheduler's handlers (a forked worker inherits them): a signal stops the task.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        # A crash in native code leaves its Python traceback in the task's stderr log.
        faulthandler.enable(sys.stderr)
        result = execute_task(flow_cls, spec, store)
        if result.status == "failed" and result.traceback:
            sys.stderr.write(result.traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        _write_result(result_path, result)
        code = 0 if result.status == "succeeded" else 1
    except BaseException:  # noqa: BLE001 - last resort: the parent sees the exit status
        try:
            import traceback

            os.write(2, traceback.format_exc().encode())
        except Exception:
            pass
    finally:
        os._exit(code)


def start_worker(
    flow_cls: Any, spec: TaskSpec, store: Any, tmp_dir: Path, *, now: float, use_fork: bool = True,
    zygote: Any = None,
) -> Worker:
    result_path = tmp_dir / f"{spec.run_id}-{spec.task_id}-{spec.attempt}-{os.getpid()}.result"
    if zygote is not None:  # fork from the small fork server (see _zygote.py)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = zygote.spawn(spec, result_path, out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        return Worker(spec, pid, {out_r: "stdout", err_r: "stderr"}, result_path, now)
    if use_fork and fork_available():
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        _load_libc()
        pid = os.fork()
        if pid == 0:  # child
            os.close(out_r)
            os.close(err_r)
            _child_main(flow_cls, spec, store, result_path, out_w, err_w)
        set_group(pid)
        os.close(out_w)
        os.close(err_w)
        return Worker(spec, pid, {out_r: "stdout", err_r: "stderr"}, result_path, now)
    return _spawn(flow_cls, spec, store, result_path, now)


def _spawn(flow_cls: Any, spec: TaskSpec, store: Any, result_path: Path, now: float) -> Worker:
    module = sys.modules[flow_cls.__module__]
    payload = pickle.dumps(
        {
            "file": os.path.abspath(module.__file__ or ""),
            "cls": flow_cls.__name__,
            "spec": spec,
            "result": str(result_path),
            "config": store.config,
        }
    )
    popen = subprocess.Popen(
        [sys.executable, "-m", "reelflow.runtime._spawn"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a forked worker
    )
    assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
    popen.stdin.write(payload)
    popen.stdin.close()
    # Own duplicates of the pipes, so the scheduler may close them without
    # Popen closing a reused descriptor later.
    fds = {os.dup(popen.stdout.fileno()): "stdout", os.dup(popen.stderr.fileno()): "stderr"}
    popen.stdout.close()
    popen.stderr.close()
    return Worker(spec, popen.pid, fds, result_path, now, popen=popen)


def spawn_entry() -> None:
    """Entry point of a spawned worker: import the flow file, run the task."""
    import importlib.util

    from ..store import get_store

    _load_libc()
    _die_with_parent()  # like a forked worker: no orphan if the scheduler is killed
    job = pickle.loads(sys.stdin.buffer.read())
    path = job["file"]
    mod_spec = importlib.util.spec_from_file_location("__reelflow_flow__", path)
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules["__reelflow_flow__"] = mod
    mod_spec.loader.exec_module(mod)
    flow_cls = getattr(mod, job["cls"])
    result = execute_task(flow_cls, job["spec"], get_store(job["config"]))
    if result.status == "failed" and result.traceback:
        sys.stderr.write(result.traceback)
    _write_result(Path(job["result"]), result)
    sys.exit(0 if result.status == "succeeded" else 1)
