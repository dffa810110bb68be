"""Which model servers run and what they serve: one heartbeat row per ``reelflow serve`` process.

Each server process (each uvicorn worker) upserts its row every few seconds
(:class:`reelflow.serving._heartbeat.Heartbeat`) and deletes it when it stops.
A process killed without a goodbye leaves its row behind; readers drop a row once
it missed :data:`MISSED_BEATS` beats, and writers delete rows an hour stale.
Like the review and operate tables, the table is created on first write (no
schema migration); readers create nothing.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._metadata import MetadataStore

__all__ = ["servers_table", "beat", "goodbye", "live_servers", "MISSED_BEATS", "FORGET_AFTER"]

MISSED_BEATS = 3  # a server that missed this many beats is shown no more
FORGET_AFTER = 3600.0  # seconds; rows this stale are deleted by the next beat of any server

_table: Any = None
_created: set[str] = set()
_lock = threading.Lock()


def servers_table() -> Any:
    global _table
    if _table is None:
        from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

        md = MetaData()
        _table = Table(
            "model_servers", md,
            Column("id", String(255), primary_key=True),  # hostname:pid:random
            Column("model", String(255), nullable=False),
            Column("alias", String(255)),  # None: a pinned version
            Column("version", Integer, nullable=False),  # the version answering requests now
            Column("status", String(16), nullable=False),  # ready | degraded
            Column("detail", String(1000)),  # why degraded
            Column("host", String(255), nullable=False),  # the address it listens on
            Column("port", Integer, nullable=False),
            Column("hostname", String(255), nullable=False),
            Column("pid", Integer, nullable=False),
            Column("started_at", Float, nullable=False),
            Column("last_seen", Float, nullable=False),
            Column("beat_interval", Float, nullable=False),  # seconds between beats
        )
        Index("ix_model_servers_model", _table.c.model)
    return _table


def _ensure(metadata: MetadataStore) -> Any:
    t = servers_table()
    url = str(metadata.url)
    if url not in _created:
        with _lock:
            if url not in _created:
                with metadata.write(lock="servers-schema", flush_blobs=False) as conn:
                    t.metadata.create_all(conn, checkfirst=True)
                _created.add(url)
    return t


def beat(metadata: MetadataStore, row: dict[str, Any], *, now: float | None = None) -> None:
    """Insert or refresh this server's row (``row`` has every column; ``last_seen`` is set here)."""
    from sqlalchemy import delete, insert, update

    t = _ensure(metadata)
    now = time.time() if now is None else now
    vals = {**row, "last_seen": now}
    with metadata.write(flush_blobs=False) as conn:
        if conn.execute(update(t).where(t.c.id == row["id"]).values(**vals)).rowcount == 0:
            conn.execute(insert(t).values(**vals))
        conn.execute(delete(t).where(t.c.last_seen < now - FORGET_AFTER))


def goodbye(metadata: MetadataStore, server_id: str) -> None:
    """Remove this server's row (it stops serving)."""
    from sqlalchemy import delete

    t = _ensure(metadata)
    with metadata.write(flush_blobs=False) as conn:
        conn.execute(delete(t).where(t.c.id == server_id))


def live_servers(metadata: MetadataStore, model: str | None = None, *, now: float | None = None
                 ) -> list[dict[str, Any]]:
    """Servers seen within :data:`MISSED_BEATS` of their beat interval (of ``model`` when given),
    by model, version and address."""
    from sqlalchemy import inspect, select

    t = servers_table()
    url = str(metadata.url)
    with metadata.read() as conn:
        if url not in _created and not inspect(conn).has_table(t.name):
            return []
        q = select(t)
        if model is not None:
            q = q.where(t.c.model == model)
        rows = [dict(r) for r in conn.execute(q).mappings()]
    now = time.time() if now is None else now
    live = [r for r in rows if r["last_seen"] >= now - MISSED_BEATS * r["beat_interval"]]
    return sorted(live, key=lambda r: (r["model"], -r["version"], r["hostname"], r["port"], r["pid"]))
