"""Where cards live: a blob per card version plus a row in the ``cards`` table.

Why a table of its own and not artifacts: task rows (and their artifacts) are
written once, when an attempt ends, so a card refreshed *while* the task runs
needs somewhere to be found before that; a failed attempt records no artifacts;
and an artifact named ``_card_...`` would be carried forward into every later
step. The ``cards`` table sits in the same metadata database (SQLite or
PostgreSQL) and is created on first use through the store's public
:meth:`~reelflow.store.MetadataStore.write` transaction, so it needs no schema
migration; the card document itself is a content-addressed blob like any
artifact (local folder or S3).

A row: run, step, task id, attempt, card id, blob key, size, time, and ``final``
(0 while the task runs, 1 once the attempt ended).
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["save_card", "card_rows", "load_card", "card_blob_keys"]

_created: set[str] = set()
_lock = threading.Lock()
_table: Any = None


def _cards_table() -> Any:
    global _table
    if _table is None:
        from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

        md = MetaData()
        _table = Table(
            "cards",
            md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("run_id", Integer, nullable=False),
            Column("step_name", String(255), nullable=False),
            Column("task_id", Integer, nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("card_id", String(255), nullable=False),
            Column("card_type", String(32), nullable=False),
            Column("key", String(64), nullable=False),
            Column("size", BigInteger, nullable=False),
            Column("updated_at", Float, nullable=False),
            Column("final", Integer, nullable=False),
        )
        Index("ix_cards_task", _table.c.run_id, _table.c.step_name, _table.c.task_id)
    return _table


def _ensure(store: Store) -> Any:
    t = _cards_table()
    url = store.metadata.url
    if url not in _created:
        with _lock:
            if url not in _created:
                with store.metadata.write(lock="cards-schema") as conn:
                    t.create(conn, checkfirst=True)
                _created.add(url)
    return t


def save_card(store: Store, *, run_id: str, step_name: str, task_id: int, attempt: int, card_id: str,
              card_type: str, doc: dict[str, Any], final: bool) -> str:
    """Store the card document ``doc`` and point the card's row at it; return the blob key."""
    from sqlalchemy import delete, insert

    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    ref = store.save(data)
    t = _ensure(store)
    where = (t.c.run_id == int(run_id), t.c.step_name == step_name, t.c.task_id == int(task_id),
             t.c.attempt == int(attempt), t.c.card_id == card_id)
    with store.metadata.write() as conn:
        conn.execute(delete(t).where(*where))
        conn.execute(insert(t).values(
            run_id=int(run_id), step_name=step_name, task_id=int(task_id), attempt=int(attempt), card_id=card_id,
            card_type=card_type, key=ref.key, size=ref.size, updated_at=time.time(), final=int(final),
        ))
    return ref.key


def _missing_table(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or "does not exist" in text or "undefinedtable" in text


def task_rows(store: Store, table: Any, run_id: str, step_name: str | None, task_id: int | None,
              order_by: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Rows of a per-task side table created on first use (cards, live logs) for a run, optionally
    one step or task; none while the table does not exist yet."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    q = select(table).where(table.c.run_id == int(run_id)).order_by(*order_by)
    if step_name is not None:
        q = q.where(table.c.step_name == step_name)
    if task_id is not None:
        q = q.where(table.c.task_id == int(task_id))
    try:
        with store.metadata.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
    except DBAPIError as exc:
        if _missing_table(exc):
            return []
        raise


def card_rows(store: Store, run_id: str, step_name: str | None = None, task_id: int | None = None) -> list[dict[str, Any]]:
    """Card rows of a run (optionally one step or task), oldest first; none when no card was ever saved."""
    t = _cards_table()
    return task_rows(store, t, run_id, step_name, task_id, (t.c.step_name, t.c.task_id, t.c.attempt, t.c.id))


def load_card(store: Store, key: str, what: str = "card") -> dict[str, Any]:
    """The card document stored under ``key`` (hash-checked, then JSON: never unpickled code)."""
    data = store.load(key, what=what)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what}: blob {key} is not a card document")
    doc = json.loads(bytes(data).decode())
    if not isinstance(doc, dict):
        raise TypeError(f"{what}: blob {key} is not a card document")
    return doc


def card_blob_keys(metadata: Any) -> set[str]:
    """Every blob key a card row of the metadata store ``metadata`` refers to (the garbage
    collector keeps them)."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    t = _cards_table()
    try:
        with metadata.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(t.c.key).distinct())}
    except DBAPIError as exc:
        if _missing_table(exc):
            return set()
        raise
