"""A warm run server: one process that imported reelflow's runtime once and forks the runs the scheduler starts.

A run started as a fresh interpreter (``python -m reelflow.cli run ...``) spends
most of its first half second importing reelflow, click, SQLAlchemy and numpy
before it records the run. The scheduler instead starts this server once (a fresh
interpreter, so it inherits none of the scheduler's open database connections or
threads); the server imports those modules and waits. For each run the scheduler
sends the command line, folder, environment and log file; the server forks a child
that becomes that command (its own process group, its own environment, output to
the log) and answers with the child's pid, then reports its exit status when it
ends. Which run is started, and that it is started exactly once, is still decided
by the scheduler's transaction before anything is sent here.

The server holds no state of its own: when the scheduler goes away (its end of the
socket closes) the server exits and the runs go on, as runs started as plain
processes do. ``REELFLOW_RUN_SERVER=0`` starts every run as a fresh interpreter.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["RunServer", "ForkedRun", "RunServerError", "run_server_wanted", "LOST"]

# What ``reelflow run`` imports before it records a run (measured with ``python -X importtime``),
# plus numpy, which nearly every flow imports.
WARM = (
    "reelflow", "reelflow.cli", "reelflow.flows", "reelflow.runtime._cli", "reelflow.runtime._scheduler",
    "reelflow.runtime._zygote", "reelflow.runtime._pool", "reelflow.runtime._worker", "reelflow.store",
    "reelflow.store._metadata", "reelflow.store._migrate", "reelflow.store._registry_db", "reelflow.ui._livelogs",
    "sqlalchemy.dialects.sqlite", "numpy",
)
LOST = -1000  # exit code of a run whose server died before reporting it (the run's row tells the outcome)
_REPLY_TIMEOUT = 120.0  # seconds to wait for the server's answer (its first one waits for its imports)


class RunServerError(RuntimeError):
    """The run server cannot start a run (it died or did not answer); start a plain process instead."""


def run_server_wanted() -> bool:
    """Whether runs are forked from a run server (Linux/macOS, unless ``REELFLOW_RUN_SERVER=0``)."""
    return (hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and sys.platform != "win32"
            and os.environ.get("REELFLOW_RUN_SERVER", "1") != "0")


class ForkedRun:
    """A run forked by the server, with the part of :class:`subprocess.Popen` the scheduler uses."""

    def __init__(self, server: RunServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout or 0.0)
            self.server.receive(block=True, timeout=0.2)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class RunServer:
    """The scheduler's handle on its run server (started at once; it imports in the background)."""

    def __init__(self, log: Path) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(log, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "reelflow.operate._runserver", str(child.fileno())],
                    pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)  # Ctrl-C on the scheduler's terminal is the scheduler's to handle
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.sock = parent
        self.log = log
        self.exits: dict[int, int] = {}
        self.alive = True

    def spawn(self, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> ForkedRun:
        """Fork ``reelflow <argv>`` in ``cwd`` with ``env``, output to ``log``; RunServerError if it cannot."""
        msg = json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "log": str(log)}).encode()
        try:
            self.sock.sendall(msg)
            while True:
                reply = self._recv(block=True, timeout=_REPLY_TIMEOUT)
                if reply is None:
                    raise RunServerError(f"the run server did not answer within {_REPLY_TIMEOUT:g}s")
                if "pid" in reply:
                    return ForkedRun(self, int(reply["pid"]))
                if "error" in reply:
                    raise RunServerError(f"the run server could not fork: {reply['error']}")
        except OSError as exc:
            self.alive = False
            raise RunServerError(f"the run server is gone ({exc}); see {self.log}") from None

    def _recv(self, *, block: bool, timeout: float | None = None) -> dict[str, Any] | None:
        """One message (exit reports are filed away and returned too); None when nothing came."""
        if not self.alive:
            return None
        try:
            self.sock.settimeout(timeout if block else 0.0)
            data = self.sock.recv(65536)
        except (BlockingIOError, TimeoutError, socket.timeout):
            return None
        except OSError:
            data = b""
        if not data:
            self.alive = False
            raise OSError("the run server closed its socket")
        reply: dict[str, Any] = json.loads(data)
        if "exit" in reply:
            self.exits[int(reply["exit"])] = int(reply["code"])
        return reply

    def receive(self, *, block: bool = False, timeout: float | None = None) -> None:
        """Take the exit reports that are ready (waiting up to ``timeout`` for one when ``block``)."""
        try:
            while self._recv(block=block, timeout=timeout) is not None:
                block = False
        except OSError:
            pass  # the server died: exit_code() watches its runs by pid

    def exit_code(self, pid: int) -> int | None:
        """The exit code of run ``pid`` once it ended (:data:`LOST` if the server died first), else None."""
        self.receive()
        if pid in self.exits:
            return self.exits.pop(pid)
        if self.alive:
            return None
        # Orphaned when the server died: the run goes on until it ends; its row tells how.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return LOST if state in ("Z", "X") else None  # a zombie nobody reaped yet has ended too
        except (OSError, IndexError):
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return LOST
        except PermissionError:
            pass
        return None

    def close(self) -> None:
        """Stop the server (runs still going keep going) and wait for it."""
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the server process ---------------------------------------------------------------------
def _warm() -> None:
    for name in WARM:
        try:
            importlib.import_module(name)
        except Exception:  # an optional module missing: that run imports what it needs itself
            pass
    try:  # the metadata database's driver, without connecting (no connection may cross a fork)
        from sqlalchemy.engine import make_url

        from ..config import load_config

        make_url(load_config().metadata_url).get_dialect().import_dbapi()
    except Exception:
        pass
    gc.collect()
    gc.freeze()  # the imported objects stay shared with the runs instead of being copied by the collector


def _serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "request")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    children: set[int] = set()
    while True:
        ready = {key.data for key, _ in sel.select(1.0 if children else None)}
        if "child" in ready:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if "request" in ready:
            try:
                msg = sock.recv(1 << 22)
            except ConnectionResetError:
                msg = b""
            if not msg:  # the scheduler closed or died: its runs go on without us
                return
            req = json.loads(msg)
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                pid = os.fork()
            except OSError as exc:
                sock.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
                continue
            if pid == 0:
                _become_run(req, closing=(sock.fileno(), wake_r, wake_w))
            try:
                os.setpgid(pid, pid)  # also done by the child: whichever runs first, the group exists
            except OSError:
                pass
            children.add(pid)
            sock.send(json.dumps({"pid": pid}).encode())
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _become_run(req: dict[str, Any], closing: tuple[int, ...]) -> None:
    """In the forked child: become ``reelflow <argv>`` as a fresh process started by the scheduler would be."""
    code = 1
    try:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        signal.set_wakeup_fd(-1)
        for fd in closing:
            os.close(fd)
        for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL if s != signal.SIGINT else signal.default_int_handler)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        out = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.path[0] = req["cwd"]  # as `python -m` started in the run's folder
        if "numpy.random" in sys.modules:  # the global generator would repeat the server's state in every run
            sys.modules["numpy.random"].seed()
        from ..cli import main

        sys.argv = ["reelflow", *req["argv"]]
        main.main(args=list(req["argv"]), prog_name="reelflow", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported in the run's log, as an interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:  # what an interpreter does on its way out: join threads, run atexit (ray.shutdown, ...), flush
            import atexit
            import threading

            threading._shutdown()  # type: ignore[attr-defined]
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str]) -> None:
    sock = socket.socket(fileno=int(argv[0]))
    # Signals for the scheduler's process group are not ours; the scheduler closing the socket ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _warm()
    _serve(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
