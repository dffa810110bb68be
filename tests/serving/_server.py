"""`reelflow serve` as a real process for tests: its own process group, always ended.

The server runs in a new session (process group), so stopping it ends uvicorn's
worker processes too; its output goes to a file (a pipe nobody reads would block
a chatty server). Waiting for it watches the process: if it exits, the test fails
at once with its output; otherwise the deadline is generous (loaded CI machines).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

READY_DEADLINE = 180.0  # seconds; a loaded 2-core machine can take long to import and load

_live: set[int] = set()  # process groups of servers not yet stopped


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (an interrupted session that skipped fixture teardown)."""
    for pgid in list(_live):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def small_model(seed: int = 0, cls: type | None = None, n_items: int = 200, n_users: int = 50):
    from reelflow.recs import EASE, Interactions

    cls = cls or EASE
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user_id": rng.integers(0, n_users, 3000), "item_id": rng.integers(0, n_items, 3000)})
    meta = pd.DataFrame({"title": [f"Title {i}" for i in range(n_items)]},
                        index=pd.Index(range(n_items), name="item_id"))
    data = Interactions.from_frame(df, item_meta=meta)
    return cls(l2=10.0).fit(data) if cls is EASE else cls().fit(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``reelflow serve SPEC ...`` on 127.0.0.1, ready when constructed; ``stop()`` ends its group."""

    def __init__(self, spec: str, *extra: str, home: Path, log_dir: Path, env: dict[str, str] | None = None,
                 token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = log_dir / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        full_env = {**os.environ, "REELFLOW_HOME": str(home), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelflow.cli", "serve", spec, "--port", str(self.port), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        _live.add(self.proc.pid)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < READY_DEADLINE:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode} before it was ready:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5, headers=self.headers).status_code == 200:
                    self.ready_after = time.monotonic() - started
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {READY_DEADLINE:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        """End the server and every process of its group (uvicorn workers included)."""
        try:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever is left of the group (a worker that ignored SIGTERM)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(30)
            _live.discard(self.proc.pid)
        finally:
            self._log.close()

    def post(self, body: object, client: httpx.Client | None = None, **kw: object) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        return (client or httpx).post(f"{self.url}/v1/models/recs/recommend", json=body, timeout=60,
                                      headers=headers, **kw)  # type: ignore[arg-type]


def register_in(home: Path, name: str, model: object, alias: str | None = "champion") -> None:
    """Register ``model`` in the store at ``home`` (not the test's own store)."""
    import pytest

    from reelflow import models

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REELFLOW_HOME", str(home))
        models.register(name, model, alias=alias)
