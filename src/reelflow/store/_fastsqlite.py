"""The embedded default's hot path: a run's, a resume's and a client read's metadata
statements through the standard library's ``sqlite3`` instead of SQLAlchemy.

Importing SQLAlchemy takes ~0.2 s, half of a short run's start-up (issue #16), while
a run of the default store needs a handful of plain statements on a few tables.
So :class:`~reelflow.store.MetadataStore` of a store's own SQLite file sends those
statements here, and SQLAlchemy loads only for everything else (the registry, the
UI's queries, cards, the scheduler's tables) and for PostgreSQL.

One schema: tables are created and migrated by SQLAlchemy only (``_schema.py``,
``_migrate.py``). This path opens a database only when its schema version is the
current one (otherwise SQLAlchemy creates or migrates it first) and names the
columns listed in ``_sqlite_columns.py``, which is generated from ``_schema.py``;
tests check that file against the schema and each statement's results against the
SQLAlchemy path's. Connections get the same settings as SQLAlchemy's
(:func:`~._engine.configure_sqlite`: WAL, busy timeout) and writes start with
``BEGIN IMMEDIATE``, so concurrent runs queue on the lock and get distinct run ids.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ._engine import configure_sqlite
from ._sqlite_columns import AUTOINCREMENT, COLUMNS, SCHEMA_VERSION

__all__ = ["FastSqlite", "SCHEMA_VERSION"]

_IN_CHUNK = 500  # bound parameters per IN (...) list, well under SQLite's limit
_inherited: list[sqlite3.Connection] = []  # a parent's connections a forked child must never close


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(table: str) -> str:
    return ", ".join(f"{_q(table)}.{_q(c)}" for c, _ in COLUMNS[table])


_INSERT = {
    t: (
        [(c, d) for c, d in COLUMNS[t] if c != AUTOINCREMENT.get(t)],
        "INSERT INTO {} ({}) VALUES ({})".format(
            _q(t),
            ", ".join(_q(c) for c, _ in COLUMNS[t] if c != AUTOINCREMENT.get(t)),
            ", ".join(f":{c}" for c, _ in COLUMNS[t] if c != AUTOINCREMENT.get(t)),
        ),
    )
    for t in COLUMNS
}
SELECT = {t: f"SELECT {_columns(t)} FROM {_q(t)}" for t in COLUMNS}


class FastSqlite:
    """One connection to the SQLite file ``path``, shared by the threads of a process
    (a lock serialises them; a forked child opens its own)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                _inherited.append(self._conn)  # closing it here could disturb the parent's locks
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            try:
                configure_sqlite(conn)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def schema_version(self) -> int | None:
        """The database's schema version, or None when it has no reelflow schema yet."""
        try:
            with self.read() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else int(row[0])

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: writers queue on the database lock)."""
        with self._tx("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (one snapshot for every statement in it)."""
        with self._tx("BEGIN DEFERRED") as conn:
            yield conn

    @contextmanager
    def _tx(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- statements ------------------------------------------------------------------
    @staticmethod
    def insert(conn: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> int:
        """Insert one row (columns left out take the schema's default); its rowid."""
        cols, sql = _INSERT[table]
        unknown = set(values) - {c for c, _ in cols}
        if unknown:
            raise KeyError(f"table {table} has no column(s) {sorted(unknown)}")
        cur = conn.execute(sql, {c: values.get(c, d) for c, d in cols})
        assert cur.lastrowid is not None
        return cur.lastrowid

    @staticmethod
    def insert_many(conn: sqlite3.Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        cols, sql = _INSERT[table]
        conn.executemany(sql, [{c: r.get(c, d) for c, d in cols} for r in rows])

    @staticmethod
    def update(conn: sqlite3.Connection, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """``UPDATE table SET values WHERE`` every column of ``key`` equals its value."""
        known = {c for c, _ in COLUMNS[table]}
        if not set(values) | set(key) <= known:
            raise KeyError(f"table {table} has no column(s) {sorted((set(values) | set(key)) - known)}")
        sets = ", ".join(f"{_q(c)} = :v_{c}" for c in values)
        where = " AND ".join(f"{_q(c)} = :k_{c}" for c in key)
        params = {**{f"v_{c}": v for c, v in values.items()}, **{f"k_{c}": v for c, v in key.items()}}
        conn.execute(f"UPDATE {_q(table)} SET {sets} WHERE {where}", params)

    @staticmethod
    def select(conn: sqlite3.Connection, table: str, where: str = "", params: Sequence[Any] = (),
               tail: str = "") -> list[dict[str, Any]]:
        """Rows of ``table`` as dicts of every column; ``where`` and ``tail`` (ORDER BY, LIMIT)
        are SQL with ``?`` parameters, column names written ``table.column``."""
        sql = SELECT[table] + (f" WHERE {where}" if where else "") + (f" {tail}" if tail else "")
        names = [c for c, _ in COLUMNS[table]]
        return [dict(zip(names, row)) for row in conn.execute(sql, tuple(params))]

    @classmethod
    def select_in(cls, conn: sqlite3.Connection, table: str, column: str, values: Sequence[Any],
                  tail: str = "") -> list[dict[str, Any]]:
        """Rows whose ``column`` is one of ``values`` (in chunks), ``tail`` applied per chunk."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(values), _IN_CHUNK):
            chunk = list(values[i:i + _IN_CHUNK])
            out += cls.select(conn, table, f"{_q(table)}.{_q(column)} IN ({', '.join('?' * len(chunk))})",
                              chunk, tail)
        return out
