"""The server's heartbeat: what this process serves, written to the store every few seconds.

The UI's model page reads these rows to show which servers serve which version.
A beat is one small write transaction off the request path (its own thread); a
failed beat is logged and retried at the next one, and never stops serving.
``REELFLOW_SERVE_HEARTBEAT`` sets the interval in seconds (default 10; 0: off).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

__all__ = ["Heartbeat", "heartbeat_interval", "DEFAULT_INTERVAL"]

log = logging.getLogger("reelflow.serving")

DEFAULT_INTERVAL = 10.0


def heartbeat_interval() -> float:
    """Seconds between beats from ``REELFLOW_SERVE_HEARTBEAT`` (default 10; 0 turns heartbeats off)."""
    raw = os.environ.get("REELFLOW_SERVE_HEARTBEAT", "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        from ..errors import ParameterError

        raise ParameterError(f"REELFLOW_SERVE_HEARTBEAT={raw!r} is not a number of seconds >= 0; "
                             "e.g. 10, or 0 to turn the heartbeat off")
    return value


class Heartbeat:
    """Beats ``holder``'s model, version and state for the server at ``host:port`` until :meth:`stop`."""

    def __init__(self, holder: Any, *, host: str, port: int, interval: float = DEFAULT_INTERVAL,
                 store: Any = None) -> None:
        self.holder = holder
        self.host, self.port = host, int(port)
        self.interval = interval
        self.store = store
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _metadata(self) -> Any:
        if self.store is None:
            from ..store import get_store

            self.store = get_store(create=False)
        return self.store.metadata

    def row(self) -> dict[str, Any]:
        h = self.holder
        failure = h.failure
        return {"id": self.id, "model": h.name, "alias": h.alias, "version": int(h.current.version),
                "status": "degraded" if failure is not None else "ready",
                "detail": failure.error[:1000] if failure is not None else None,
                "host": self.host, "port": self.port, "hostname": socket.gethostname(), "pid": os.getpid(),
                "started_at": self.started_at, "beat_interval": self.interval}

    def beat(self) -> None:
        from ..store._servers_db import beat

        beat(self._metadata(), self.row())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reelflow-serve-heartbeat", daemon=True)
        self._thread.start()

    def _state(self) -> tuple[int, bool]:
        return int(self.holder.current.version), self.holder.failure is not None

    def _run(self) -> None:
        while True:
            shown = self._state()
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a heartbeat must never stop serving
                log.warning("heartbeat of %s failed (retrying in %gs): %s", self.holder.spec, self.interval, exc)
            due = time.monotonic() + self.interval
            # beat early when the version or state changed (a hot-swap), so the UI follows within a second
            while time.monotonic() < due and self._state() == shown:
                if self._stop.wait(min(1.0, max(0.0, due - time.monotonic()))):
                    return
            if self._stop.is_set():
                return

    def stop(self) -> None:
        """Stop beating and remove this server's row."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            from ..store._servers_db import goodbye

            goodbye(self._metadata(), self.id)
        except Exception as exc:  # noqa: BLE001 - shutting down regardless; the row goes stale
            log.warning("could not remove the heartbeat row of %s: %s", self.holder.spec, exc)
