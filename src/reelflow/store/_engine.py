"""Connecting to the metadata database: URLs, SQLite settings and one-line errors."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

from ..errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import URL, Connection, Engine

__all__ = ["parse_url", "mask_url", "db_error", "sqlite_pragmas", "configure_sqlite"]


def configure_sqlite(dbapi_conn: sqlite3.Connection) -> None:
    """The settings of every connection to a SQLite store (SQLAlchemy's and the fast path's)."""
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")
    # Switching a new database to WAL needs it to itself and SQLite answers "locked"
    # at once (no busy wait) while another connection races to do the same; WAL is
    # persistent, so a short retry settles it.
    for attempt in range(200):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.01)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_pragmas(engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        configure_sqlite(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("reelflow_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def parse_url(url: str | URL, *, source: str = "REELFLOW_METADATA_URL") -> URL:
    """``url`` as a SQLAlchemy URL; a malformed string is a :class:`StoreError` naming ``source``."""
    from sqlalchemy import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{source}={mask_url(url)!r} is not a database URL; write e.g. "
            "'postgresql+psycopg://user:password@host/db' or 'sqlite:////path/to/metadata.db'"
        ) from None


def mask_url(url: str | URL) -> str:
    """``url`` for display, with any password replaced by ``***``."""
    from sqlalchemy import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, URL):
        if url.get_backend_name() == "sqlite" and url.database and not url.query:
            return f"sqlite:///{url.database}"  # the path as the user wrote it, unescaped
        return url.render_as_string(hide_password=True)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url.split("@", 1)[-1] if "@" in url else url
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def db_error(exc: BaseException, where: str) -> StoreError:
    """A one-line :class:`StoreError` for a database failure at ``where``, with the fix."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    low = text.lower()
    if "readonly" in low or "read-only" in low or "permission denied" in low:
        fix = "make it writable, or point REELFLOW_HOME / REELFLOW_METADATA_URL at a writable store"
    elif "disk is full" in low or "no space" in low:
        fix = "free disk space where it lives and run again"
    elif "unable to open" in low:
        fix = "check that its folder exists and is readable"
    elif "could not connect" in low or "connection refused" in low or "connection" in low and "failed" in low:
        fix = "check that the database server is running and REELFLOW_METADATA_URL points at it"
    else:
        fix = "check REELFLOW_METADATA_URL and that the database is reachable and writable"
    return StoreError(f"the metadata database {where} failed: {text}; {fix}")
