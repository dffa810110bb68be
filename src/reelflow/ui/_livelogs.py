"""Live output of running tasks: the runtime publishes the tail of each log every few seconds.

A task's log is recorded with its task row when the attempt ends; until then the
UI shows the last :data:`TAIL` bytes, which the worker pool stores (a blob plus a
row of the ``live_logs`` table, in the metadata database like the ``cards``
table) every :data:`INTERVAL` seconds while the output grows. Tasks that end
sooner publish nothing, so short tasks cost nothing. Publishing never fails a
run: an error switches it off for the run, with one line on stderr.

Importing this module loads nothing heavy (no FastAPI).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["LivePublisher", "publish_tail", "live_tails", "INTERVAL", "TAIL"]

INTERVAL = 2.0  # seconds between two publications of one task's output
TAIL = 64 << 10  # bytes of the end of a log shown while the task runs

_table: Any = None
_created: set[str] = set()
_lock = threading.Lock()


def _live_table() -> Any:
    global _table
    if _table is None:
        from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

        _table = Table(
            "live_logs",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("run_id", Integer, nullable=False),
            Column("step_name", String(255), nullable=False),
            Column("task_id", Integer, nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("stream", String(16), nullable=False),
            Column("key", String(64), nullable=False),
            Column("size", BigInteger, nullable=False),  # bytes written so far (the blob holds the tail)
            Column("updated_at", Float, nullable=False),
        )
        Index("ix_live_logs_task", _table.c.run_id, _table.c.step_name, _table.c.task_id)
    return _table


def publish_tail(store: Store, *, run_id: str, step_name: str, task_id: int, attempt: int, stream: str,
                 tail: bytes, size: int) -> None:
    """Store ``tail`` as the live end of one log of a running task attempt."""
    from sqlalchemy import delete, insert

    t = _live_table()
    url = store.metadata.url
    if url not in _created:
        with _lock:
            if url not in _created:
                with store.metadata.write(lock="live-logs-schema") as conn:
                    t.create(conn, checkfirst=True)
                _created.add(url)
    ref = store.save(bytes(tail))
    with store.metadata.write() as conn:
        conn.execute(delete(t).where(t.c.run_id == int(run_id), t.c.step_name == step_name,
                                     t.c.task_id == int(task_id), t.c.attempt == int(attempt), t.c.stream == stream))
        conn.execute(insert(t).values(run_id=int(run_id), step_name=step_name, task_id=int(task_id),
                                      attempt=int(attempt), stream=stream, key=ref.key, size=int(size),
                                      updated_at=time.time()))


def live_tails(store: Store, run_id: str, step_name: str | None = None,
               task_id: int | None = None) -> list[dict[str, Any]]:
    """Live log rows of a run (optionally one task), oldest attempt first; none if nothing was published."""
    from ..cards._storage import task_rows

    t = _live_table()
    return task_rows(store, t, run_id, step_name, task_id, (t.c.step_name, t.c.task_id, t.c.attempt, t.c.stream))


class LivePublisher:
    """Used by the runtime's worker pool: publishes the tails of running tasks' logs."""

    def __init__(self, store: Store, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self.enabled = True
        self._seen: dict[tuple[str, int, int, str], tuple[float, int]] = {}

    def maybe_publish(self, spec: Any, logs: dict[str, Any], started_at: float, now: float) -> None:
        """Publish the logs of the task attempt ``spec`` that grew since their last publication,
        once the task has run for ``interval`` seconds, at most every ``interval`` seconds."""
        if not self.enabled or now - started_at < self.interval:
            return
        for stream, sink in logs.items():
            k = (str(spec.run_id), int(spec.task_id), int(spec.attempt), stream)
            last_t, last_size = self._seen.get(k, (0.0, 0))
            if sink.size == last_size or now - last_t < self.interval:
                continue
            self._seen[k] = (now, sink.size)
            try:
                publish_tail(self.store, run_id=spec.run_id, step_name=spec.step_name, task_id=spec.task_id,
                             attempt=spec.attempt, stream=stream, tail=sink.tail()[-TAIL:], size=sink.size)
            except Exception as exc:  # noqa: BLE001 - live output is a convenience, never a failure
                self.enabled = False
                print(f"reelflow: live task output for the UI is off for this run: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return
