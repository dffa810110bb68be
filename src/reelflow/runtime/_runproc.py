"""One ``python flow.py ...`` subprocess of :class:`~reelflow.Runner`, sync or asyncio.

Its stdout and stderr go to files (what ``ExecutingRun.stdout`` / ``stream_log`` read),
teed to this process's console when a blocking call shows output. A notebook's
interrupt reaches only the notebook, so a blocking call passes it on to the run
(SIGINT: the run stops its tasks and is recorded as failed) instead of killing it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["Command"]

STREAMS = ("stdout", "stderr")


class Command:
    """A subprocess whose output is kept in ``log_files`` (see the module docstring)."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.dir = Path(tempfile.mkdtemp(prefix="reelflow-runner-"))
        self.log_files = {s: self.dir / f"{s}.log" for s in STREAMS}
        self.process: subprocess.Popen[bytes] | asyncio.subprocess.Process | None = None
        self.timeout = False  # wait(timeout=...) ran out and stopped it
        self._final: dict[str, str] | None = None

    # -- starting ---------------------------------------------------------------------
    def run_blocking(self, show_output: bool) -> None:
        """Start and wait for the end; tee the output to the console when ``show_output``."""
        files = {s: open(self.log_files[s], "wb") for s in STREAMS}
        try:
            pipe = subprocess.PIPE if show_output else None
            proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                    stdout=pipe or files["stdout"], stderr=pipe or files["stderr"])
            self.process = proc
            threads = []
            if show_output:
                for s, console in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                    t = threading.Thread(target=_tee, args=(getattr(proc, s), files[s], console), daemon=True)
                    t.start()
                    threads.append(t)
            try:
                proc.wait()
            except KeyboardInterrupt:
                _stop(proc)
                raise
            finally:
                for t in threads:
                    t.join(timeout=30)
        finally:
            for f in files.values():
                f.close()

    async def start_async(self) -> None:
        """Start without waiting (output only to the log files)."""
        files = {s: open(self.log_files[s], "wb") for s in STREAMS}
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, cwd=self.cwd, stdout=files["stdout"], stderr=files["stderr"])
        finally:
            for f in files.values():
                f.close()  # the child holds its own copies

    # -- state ------------------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        p = self.process
        if p is None:
            return None
        if isinstance(p, subprocess.Popen):
            return p.poll()
        return p.returncode

    def read(self, stream: str) -> str:
        if self._final is not None:
            return self._final.get(stream, "")
        try:
            return self.log_files[stream].read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    async def wait(self, timeout: float | None = None, stream: str | None = None) -> None:
        """Wait for the end (stopping it after ``timeout`` s); print ``stream`` meanwhile."""
        p = self.process
        assert p is not None
        printer = asyncio.ensure_future(self._print(stream)) if stream else None
        try:
            if isinstance(p, subprocess.Popen):
                deadline = None if timeout is None else time.monotonic() + timeout
                while p.poll() is None:
                    if deadline is not None and time.monotonic() > deadline:
                        self.timeout = True
                        _stop(p, grace=10.0)
                        break
                    await asyncio.sleep(0.05)
            else:
                try:
                    await asyncio.wait_for(p.wait(), timeout)
                except asyncio.TimeoutError:
                    self.timeout = True
                    await self.kill_async()
        finally:
            if printer is not None:
                await printer

    async def _print(self, stream: str) -> None:
        async for _, line in self.stream_log(stream):
            print(line, flush=True)

    async def stream_log(self, stream: str, position: int | None = None) -> AsyncIterator[tuple[int, str]]:
        """``(position, line)`` of ``stream`` as it is written, until the process ended and all is read."""
        if stream not in STREAMS:
            raise ValueError(f"stream_log: stream is 'stdout' or 'stderr', not {stream!r}")
        pos = position or 0  # where the next unread line starts
        buf = b""
        while True:
            done = self.returncode is not None
            try:
                with open(self.log_files[stream], "rb") as f:
                    f.seek(pos + len(buf))
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                pos += len(line) + 1
                yield pos, line.decode("utf-8", "replace")  # the position to resume from
            if done and not chunk:
                if buf:
                    yield pos + len(buf), buf.decode("utf-8", "replace")
                return
            if not chunk:
                await asyncio.sleep(0.05)

    # -- stopping ---------------------------------------------------------------------
    async def kill_async(self, grace: float = 10.0) -> None:
        p = self.process
        if p is None or self.returncode is not None:
            return
        if isinstance(p, subprocess.Popen):
            _stop(p, grace)
            return
        p.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(p.wait(), grace)
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()

    def cleanup(self) -> None:
        """Keep the output in memory and remove the files; a process still running is stopped."""
        p = self.process
        if isinstance(p, subprocess.Popen) and p.poll() is None:
            _stop(p, grace=10.0)
        elif p is not None and self.returncode is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
        if self._final is None:
            self._final = {s: self.read(s) for s in STREAMS}
        shutil.rmtree(self.dir, ignore_errors=True)


def _tee(pipe: IO[bytes] | None, file: IO[bytes], console: Any) -> None:
    if pipe is None:
        return
    for line in iter(pipe.readline, b""):
        file.write(line)
        file.flush()
        try:
            console.write(line.decode("utf-8", "replace"))
            console.flush()
        except (ValueError, OSError):  # the console was closed
            pass
    pipe.close()


def _stop(proc: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    """SIGINT (what Ctrl-C in a terminal sends), then SIGKILL if the run does not stop in ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
