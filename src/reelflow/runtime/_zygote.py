"""A fork server: a small process, forked before the runtime's heavy imports, that forks
the task workers.

``fork`` costs time in proportion to the forking process's memory: forking from the
scheduler (SQLAlchemy, click, the metadata engine: ~40 MB) costs ~2 ms per task,
forking from this process (the flow module and reelflow's light modules) a
fraction of that. The scheduler sends each task (a pickled spec in a file, plus
the write ends of the task's stdout/stderr pipes over ``SCM_RIGHTS``); the zygote
forks, answers with the worker's pid, reaps it and reports its exit status.
Workers die with the zygote, and the zygote with the scheduler (``PDEATHSIG``).
"""

from __future__ import annotations

import gc
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
from collections import deque
from pathlib import Path
from typing import Any

from ._task import TaskSpec

__all__ = ["Zygote", "zygote_available"]

_MSG = struct.Struct("<cii")  # kind (b"P" pid started, b"X" exited), pid, wait status


def zygote_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class Zygote:
    """Handle on the fork server, used by the scheduler's worker pool."""

    def __init__(self, flow_cls: Any) -> None:
        from ._worker import _load_libc

        _load_libc()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        scheduler = os.getpid()
        pid = os.fork()
        if pid == 0:  # the zygote
            parent_sock.close()
            code = 0
            try:
                _zygote_main(flow_cls, child_sock, scheduler)
            except BaseException:  # noqa: BLE001 - reported by the scheduler as a failed start
                code = 1
            finally:
                os._exit(code)
        child_sock.close()
        self.pid = pid
        self.sock = parent_sock
        self.exits: dict[int, int] = {}
        self._pending_starts: deque[int] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def spawn(self, spec: TaskSpec, result_path: Path, out_w: int, err_w: int) -> int:
        """Start a worker for ``spec``; returns its pid."""
        spec_path = result_path.with_suffix(".spec")
        with open(spec_path, "wb") as f:
            pickle.dump(spec, f, protocol=5)
        socket.send_fds(self.sock, [os.fsencode(f"{spec_path}\0{result_path}")], [out_w, err_w])
        while not self._pending_starts:
            self._receive(block=True)
        return self._pending_starts.popleft()

    def _receive(self, block: bool) -> bool:
        """Read one message; False when none was ready (non-blocking) or the zygote is gone."""
        try:
            data = self.sock.recv(_MSG.size, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        if not data:
            raise RuntimeError("the worker fork server exited unexpectedly")
        kind, pid, status = _MSG.unpack(data)
        if kind == b"P":
            self._pending_starts.append(pid)
        else:
            self.exits[pid] = status
        return True

    def collect(self) -> None:
        """Take every exit report that is ready."""
        while self._receive(block=False):
            pass

    def wait_exit(self, pid: int) -> int:
        """Block until worker ``pid`` has been reaped; its wait status."""
        while pid not in self.exits:
            self._receive(block=True)
        return self.exits.pop(pid)

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


def _zygote_main(flow_cls: Any, sock: socket.socket, scheduler: int) -> None:
    from ..store import get_store
    from ._worker import _child_main, _die_with_parent, set_group

    # When the scheduler dies (even by SIGKILL) its end of the socket closes and the kernel
    # sends SIGHUP here: stop the process group of every worker still running, so what its
    # step started goes too, then exit. (A scheduler that ends normally has no workers left.)
    children: set[int] = set()

    def stop_children() -> None:
        for child in children:
            try:
                os.killpg(child, signal.SIGKILL)
            except OSError:
                pass

    def parent_gone(*_: Any) -> None:
        stop_children()
        os._exit(0)

    signal.signal(signal.SIGHUP, parent_gone)
    _die_with_parent(signal.SIGHUP)
    if os.getppid() != scheduler:  # the scheduler died before the line above
        parent_gone()
    # Ctrl-C and SIGTERM to the process group are the scheduler's to handle (it stops the
    # workers, then closes this server); workers restore the default handlers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store = get_store()
    # What every task imports, imported once here: each worker is a fork of this process, and a
    # module first imported in a worker is imported again by the next one (reelflow.cards alone
    # was ~8 ms of a 14 ms trivial task).
    from ..cards._collector import TaskCards  # noqa: F401
    gc.freeze()
    # SIGCHLD wakes the loop through a pipe, so exits are reported at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "task")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    while True:
        events = {key.data for key, _ in sel.select(1.0 if children else None)}
        if "child" in events:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if "task" in events:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 2)
            except ConnectionResetError:
                msg, fds = b"", []
            if not msg:  # the scheduler closed (or died): done
                stop_children()
                return
            spec_path, result_path = os.fsdecode(msg).split("\0")
            with open(spec_path, "rb") as f:
                spec = pickle.load(f)  # written by the scheduler of this run, never by a user
            os.unlink(spec_path)
            out_w, err_w = fds
            pid = os.fork()
            if pid == 0:
                sock.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                _child_main(flow_cls, spec, store, Path(result_path), out_w, err_w)
            set_group(pid)  # before the scheduler learns the pid and may signal the group
            os.close(out_w)
            os.close(err_w)
            children.add(pid)
            sock.send(_MSG.pack(b"P", pid, 0))
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            sock.send(_MSG.pack(b"X", pid, status))
