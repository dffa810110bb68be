"""Metadata store: runs, tasks and artifacts in SQLite (default) or PostgreSQL.

The same SQLAlchemy Core code serves both. SQLite runs in WAL mode with a busy
timeout; write transactions start with ``BEGIN IMMEDIATE`` so that two processes
writing at once queue on the lock instead of failing on a lock upgrade.

A store's own SQLite file (``MetadataStore(path)``, the embedded default) sends the
statements of a run, a resume and a client read through ``sqlite3`` directly
(``_fastsqlite.py``) once its schema is current, so those never import SQLAlchemy;
the values written are built here, once, for both paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, SchemaVersionError, StoreError
from ._engine import db_error, mask_url, parse_url, sqlite_pragmas
from ._fastsqlite import FastSqlite
from ._lazy import lazy_module
from ._liveness import abandoned_reason, host_name, process_token
from ._registry_db import RegistryTables
from ._run_queries import RunQueries, _has_tag  # noqa: F401 - _has_tag: operate/_scheduler.py imports it from here
from ._task_db import TaskTables
from ._types import ArtifactRef, TaskRecord

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import URL, Connection, Engine

    from . import _schema as s
else:  # loaded on first use: the fast SQLite path never needs them
    sa = lazy_module("sqlalchemy")
    s = lazy_module("reelflow.store._schema")

__all__ = ["MetadataStore", "TaskRecord", "ArtifactRef"]


class MetadataStore(RunQueries, TaskTables, RegistryTables):
    """Runs, tasks, artifact references, metrics and the model registry behind one small API.

    ``url`` is a SQLAlchemy URL (a string, or a :class:`sqlalchemy.URL`), or the path of
    a SQLite file (a :class:`os.PathLike`: characters such as ``?`` or ``%`` stay part of
    the path, and the run's statements take the fast path, see ``_fastsqlite.py``).
    ``stale_after`` is how long a run on another host may go without a heartbeat
    before it reads as abandoned.
    """

    def __init__(self, url: str | URL | os.PathLike[str], *, stale_after: float = 60.0) -> None:
        self._path: str | None = None
        self._parsed: URL | None = None
        if isinstance(url, os.PathLike):
            self._path = os.fspath(url)
            self.url = f"sqlite:///{self._path}"
        else:
            self._parsed = parse_url(url)
            self.url = mask_url(url)
        self.stale_after = stale_after
        self._engine: Engine | None = None
        self._fast_db: FastSqlite | None = None
        self._fast_off = False  # the fast route cannot serve this database
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: Called before a write transaction that may reference blobs begins: the
        #: :class:`~reelflow.store.Store` sets it to its blob store's ``flush``, so a blob
        #: is durable before any committed row names it (see ``_blobs.py``).
        self.before_write: Callable[[], None] | None = None

    @property
    def _url(self) -> URL:
        if self._parsed is None:
            assert self._path is not None
            self._parsed = sa.URL.create("sqlite", database=self._path)
        return self._parsed

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql`` (without connecting)."""
        return "sqlite" if self._path is not None else self._url.get_backend_name()

    def _sqlite_path(self) -> str | None:
        """The database file of a SQLite URL (None for other databases and in-memory ones)."""
        if self._path is not None:
            return self._path
        if self._url.get_backend_name() != "sqlite":
            return None
        db = self._url.database
        return db if db and db != ":memory:" and not db.startswith("file:") else None

    def exists(self) -> bool:
        """Whether the database holds a reelflow store; creates nothing."""
        if self._engine is not None:
            return True
        path = self._sqlite_path()
        if path is not None:
            return os.path.isfile(path)
        engine = self._make_engine()
        try:
            with engine.connect() as conn:
                return bool(sa.inspect(conn).has_table("meta"))
        except sa.exc.DBAPIError as exc:
            raise db_error(exc, f"at {self.url}") from None
        finally:
            engine.dispose()

    # -- connection management -------------------------------------------------
    def open(self) -> None:
        """Connect, creating or migrating the schema if need be (a store's file: without SQLAlchemy
        when the schema is current)."""
        if self._fast() is None:
            self.engine

    def _fast(self) -> FastSqlite | None:
        """The fast path to a store's own SQLite file with a current schema; None for other databases."""
        if self._path is None or self._fast_off:
            return None
        if self._fast_db is not None:
            return self._fast_db
        with self._lock:
            if self._fast_db is None and not self._fast_off:
                self._fast_db = self._open_fast(self._path)
                self._fast_off = self._fast_db is None
            return self._fast_db

    def _open_fast(self, path: str) -> FastSqlite | None:
        from ._fastsqlite import SCHEMA_VERSION

        db = FastSqlite(path)
        try:
            if os.path.isfile(path) and db.schema_version() == SCHEMA_VERSION:
                return db
            # new, older or newer than this code: SQLAlchemy creates, migrates or refuses it
            self._engine_locked()
            if db.schema_version() == SCHEMA_VERSION:
                return db
        except sqlite3.Error as exc:
            db.close()
            raise db_error(exc, f"at {self.url}") from None
        # only if _sqlite_columns.py lags _schema.py (a test catches that): SQLAlchemy serves everything
        db.close()
        return None

    @property
    def engine(self) -> Engine:
        if self._engine is not None and self._pid == os.getpid():
            return self._engine
        with self._lock:  # threads of one process share one engine, created once
            return self._engine_locked()

    def _engine_locked(self) -> Engine:
        """:attr:`engine`, with ``self._lock`` held."""
        if self._engine is not None and self._pid != os.getpid():
            # A forked child must not share the parent's connections.
            self._engine.dispose(close=False)
            self._engine = None
        if self._engine is None:
            self._engine = self._connect()
            self._pid = os.getpid()
        return self._engine

    def _make_engine(self) -> Engine:
        try:
            if self._url.get_backend_name() == "sqlite":
                engine = sa.create_engine(self._url, connect_args={"timeout": 60})
                sqlite_pragmas(engine)
                return engine
            return sa.create_engine(self._url, pool_pre_ping=True)
        except sa.exc.NoSuchModuleError:
            raise StoreError(
                f"REELFLOW_METADATA_URL {self.url!r} names an unknown database "
                f"{self._url.drivername!r}; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            ) from None
        except ImportError as exc:
            raise StoreError(
                f"the database driver for {self.url} is not installed ({exc}); install it, "
                "e.g. pip install 'psycopg[binary]' for postgresql+psycopg"
            ) from None
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"REELFLOW_METADATA_URL {self.url!r} cannot be used: {exc}") from None

    def _connect(self) -> Engine:
        path = self._sqlite_path()
        if path is not None:
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store folder for {path}: {exc.strerror}; "
                    "make its parent writable or set REELFLOW_HOME to a writable folder"
                ) from None
        engine = self._make_engine()
        self._ensure_schema(engine)
        return engine

    def _ensure_schema(self, engine: Engine) -> None:
        from ._migrate import upgrade

        select, insert, update = sa.select, sa.insert, sa.update
        try:
            with engine.connect() as conn:  # fast path: an up-to-date store needs no DDL
                try:
                    row = conn.execute(select(s.meta.c.value).where(s.meta.c.key == "schema_version")).first()
                except Exception:
                    row = None
                    conn.rollback()
                if row is not None and int(row[0]) == s.SCHEMA_VERSION:
                    conn.rollback()
                    return
                conn.rollback()
            with engine.connect().execution_options(reelflow_write=True) as conn:
                with conn.begin():
                    _serialize_writers(conn, "schema")  # two first processes must not both create tables
                    s.metadata.create_all(conn, checkfirst=True)
                    row = conn.execute(select(s.meta.c.value).where(s.meta.c.key == "schema_version")).first()
                    if row is None:
                        conn.execute(insert(s.meta).values(key="schema_version", value=str(s.SCHEMA_VERSION)))
                    elif int(row[0]) < s.SCHEMA_VERSION:
                        upgrade(conn, int(row[0]))
                        conn.execute(
                            update(s.meta).where(s.meta.c.key == "schema_version").values(value=str(s.SCHEMA_VERSION))
                        )
                    elif int(row[0]) > s.SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"the metadata database {self.url} has schema version {row[0]}, newer than "
                            f"this reelflow understands ({s.SCHEMA_VERSION}); upgrade reelflow"
                        )
        except StoreError:
            raise
        except sa.exc.DBAPIError as exc:
            raise db_error(exc, f"at {self.url}") from None
        except Exception as exc:
            raise StoreError(f"cannot open the metadata database {self.url}: {type(exc).__name__}: {exc}") from None

    @contextmanager
    def write(self, lock: str | None = None, *, flush_blobs: bool = True) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), for other subsystems' tables.

        ``lock`` names a critical section (e.g. a read-then-insert) that concurrent
        writers must take in turn; SQLite's immediate transactions already do.
        ``flush_blobs`` (default) first makes the blobs written so far durable (one
        ``syncfs``, outside the database lock), so the rows may name them; writes that
        reference no blob (heartbeats, status, tags) pass False.
        """
        if flush_blobs and self.before_write is not None:
            self.before_write()
        try:
            with self.engine.connect().execution_options(reelflow_write=True) as conn:
                with conn.begin():
                    if lock is not None:
                        _serialize_writers(conn, lock)
                    yield conn
        except sa.exc.DBAPIError as exc:
            raise db_error(exc, f"at {self.url} (writing)") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as exc:
            raise db_error(exc, f"at {self.url} (reading)") from None

    _write = write
    _read = read

    @contextmanager
    def _fast_write(self, fast: FastSqlite, *, flush_blobs: bool = True) -> Iterator[sqlite3.Connection]:
        """:meth:`write` on the fast path (same blob flush, same errors)."""
        if flush_blobs and self.before_write is not None:
            self.before_write()
        try:
            with fast.write() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise db_error(exc, f"at {self.url} (writing)") from None

    @contextmanager
    def _fast_read(self, fast: FastSqlite) -> Iterator[sqlite3.Connection]:
        try:
            with fast.read() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise db_error(exc, f"at {self.url} (reading)") from None

    def close(self) -> None:
        if self._fast_db is not None:
            self._fast_db.close()
            self._fast_db = None
        self._fast_off = False
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- runs --------------------------------------------------------------------
    def create_run(
        self,
        flow_name: str,
        *,
        user: str,
        tags: Sequence[str] = (),
        system_tags: Sequence[str] = (),
        graph: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        origin_run_id: str | None = None,
    ) -> str:
        values = dict(
            flow_name=flow_name,
            user=user,
            status="running",
            created_at=time.time(),
            origin_run_id=origin_run_id,
            tags=json.dumps(sorted(set(tags))),
            system_tags=json.dumps(sorted(set(system_tags))),
            graph=json.dumps(graph or {}),
            params=json.dumps(params or {}, default=repr),
            pid=os.getpid(),
            host=host_name(),
            proc_token=process_token(os.getpid()),
            heartbeat_at=time.time(),
        )
        if (fast := self._fast()) is not None:
            with self._fast_write(fast) as fconn:
                return str(fast.insert(fconn, "runs", values))
        with self._write() as conn:
            res = conn.execute(sa.insert(s.runs).values(**values))
            pk = res.inserted_primary_key
            assert pk is not None
            return str(pk[0])

    def _update_run(self, run_id: str, **values: Any) -> None:
        """Set columns of run ``run_id`` (values that name no blob: no blob flush)."""
        rid = self._pk(run_id)
        if (fast := self._fast()) is not None:
            with self._fast_write(fast, flush_blobs=False) as fconn:
                fast.update(fconn, "runs", {"id": rid}, values)
            return
        with self._write(flush_blobs=False) as conn:
            conn.execute(sa.update(s.runs).where(s.runs.c.id == rid).values(**values))

    def heartbeat(self, run_id: str) -> None:
        """Record that run ``run_id`` is still going (one UPDATE; the runtime calls it every few seconds)."""
        self._update_run(run_id, heartbeat_at=time.time())

    def finish_run(self, run_id: str, status: str, *, reason: str | None = None) -> None:
        """Record the run's end: ``status`` and, optionally, why (shown as its ``status_reason``)."""
        self._update_run(run_id, status=status, finished_at=time.time(), status_reason=reason)

    def set_tags(self, run_id: str, tags: Sequence[str]) -> None:
        self._update_run(run_id, tags=json.dumps(sorted(set(tags))))

    def _pk(self, run_id: str | int) -> int:
        """``run_id`` as the runs table's key; anything that cannot be one is :class:`NotFoundError`."""
        try:
            rid = int(str(run_id).strip())
        except ValueError:
            rid = -1
        top = 2**31 - 1 if self.dialect_name == "postgresql" else 2**63 - 1
        if not 0 < rid <= top:
            raise NotFoundError(
                f"run id {run_id!r} does not exist in the store at {self.url}: run ids are positive "
                "integers (see `reelflow runs list`)"
            )
        return rid

    def get_run(self, flow_name: str, run_id: str) -> dict[str, Any]:
        """The run row, with ``status`` ``abandoned`` (and ``abandoned_reason``) for a dead ``running`` run.

        ``recorded_status`` keeps what the database says.
        """
        rid = self._pk(run_id)
        row: Any
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                rows = fast.select(fconn, "runs", "runs.id = ? AND runs.flow_name = ?", (rid, flow_name))
            row = rows[0] if rows else None
        else:
            with self._read() as conn:
                row = conn.execute(
                    sa.select(s.runs).where(s.runs.c.id == rid, s.runs.c.flow_name == flow_name)
                ).mappings().first()
        if row is None:
            raise NotFoundError(f"run {flow_name}/{run_id} does not exist in the store at {self.url}")
        return self._run_dict(row)

    def get_run_flow(self, run_id: str) -> str:
        """The flow name of run ``run_id`` (run ids are unique in a store)."""
        rid = self._pk(run_id)
        row: Any
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                row = fconn.execute("SELECT flow_name FROM runs WHERE id = ?", (rid,)).fetchone()
        else:
            with self._read() as conn:
                row = conn.execute(sa.select(s.runs.c.flow_name).where(s.runs.c.id == rid)).first()
        if row is None:
            raise NotFoundError(f"run id {run_id} does not exist in the store at {self.url}")
        return str(row[0])

    def list_runs(self, flow_name: str | None = None) -> list[dict[str, Any]]:
        """Run rows, newest first (see :meth:`get_run` for ``status``)."""
        if (fast := self._fast()) is not None:
            where, args = ("runs.flow_name = ?", (flow_name,)) if flow_name is not None else ("", ())
            with self._fast_read(fast) as fconn:
                return [self._run_dict(r) for r in fast.select(fconn, "runs", where, args, "ORDER BY runs.id DESC")]
        q = sa.select(s.runs).order_by(s.runs.c.id.desc())
        if flow_name is not None:
            q = q.where(s.runs.c.flow_name == flow_name)
        with self._read() as conn:
            return [self._run_dict(r) for r in conn.execute(q).mappings()]

    def _run_dict(self, row: Any) -> dict[str, Any]:
        d = _run_dict(row)
        d["recorded_status"] = d["status"]
        d["abandoned_reason"] = abandoned_reason(d, self.stale_after)
        if d["abandoned_reason"] is not None:
            d["status"] = "abandoned"
            d["status_reason"] = d["abandoned_reason"]
        return d

    def has_flow(self, flow_name: str) -> bool:
        """Whether any run of ``flow_name`` is recorded (one index seek)."""
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                return fconn.execute("SELECT id FROM runs WHERE flow_name = ? LIMIT 1", (flow_name,)).fetchone() is not None
        q = sa.select(s.runs.c.id).where(s.runs.c.flow_name == flow_name).limit(1)
        with self._read() as conn:
            return conn.execute(q).first() is not None

    def list_flows(self) -> list[str]:
        with self._read() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(s.runs.c.flow_name).distinct()))

    def referenced_blob_keys(self) -> tuple[set[str], set[str]]:
        """Blob keys rows refer to: (artifacts, parameters and models; task logs).

        Log keys may name manifests whose chunks the caller must follow.
        """
        keys: set[str] = set()
        logs: set[str] = set()
        with self._read() as conn:
            select = sa.select
            keys.update(r[0] for r in conn.execute(select(s.artifacts.c.key).distinct()))
            for col in (s.tasks.c.stdout_key, s.tasks.c.stderr_key):
                logs.update(r[0] for r in conn.execute(select(col).distinct().where(col.is_not(None))))
            for (params,) in conn.execute(select(s.runs.c.params)):
                for p in json.loads(params or "{}").values():
                    if isinstance(p, dict) and isinstance(p.get("key"), str):
                        keys.add(p["key"])
        keys |= self.model_blob_keys()
        from ..cards._storage import card_blob_keys  # cards keep their blobs (rows of their own table)

        keys |= card_blob_keys(self)
        from ..runtime._checkpoint import checkpoint_blob_keys  # @checkpoint folders (their own table)

        keys |= checkpoint_blob_keys(self)
        from ._review_db import generated_blob_keys  # generated images and their inputs (reelflow.generate)

        keys |= generated_blob_keys(self)
        from ._operate_db import operate_blob_keys  # deployments' code snapshots (reelflow.operate)

        keys |= operate_blob_keys(self)
        return keys, logs


def _serialize_writers(conn: Connection, name: str) -> None:
    """Hold a transaction-scoped lock named ``name`` (PostgreSQL advisory lock)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")


def _run_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["run_id"] = str(d.pop("id"))
    for k in ("tags", "system_tags"):
        d[k] = json.loads(d[k] or "[]")
    d["graph"] = json.loads(d["graph"] or "{}")
    d["params"] = json.loads(d["params"] or "{}")
    return d
