"""Metadata store: runs, tasks and artifacts in SQLite (default) or PostgreSQL.

The same SQLAlchemy Core code serves both. SQLite runs in WAL mode with a busy
timeout; write transactions start with ``BEGIN IMMEDIATE`` so that two processes
writing at once queue on the lock instead of failing on a lock upgrade.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update

from ..errors import NotFoundError, SchemaVersionError, StoreError
from . import _schema as s
from ._types import ArtifactRef, TaskRecord

__all__ = ["MetadataStore", "TaskRecord", "ArtifactRef"]


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("reelflow_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


class MetadataStore:
    """Runs, tasks and artifact references behind one small API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    # -- connection management -------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is not None and self._pid == os.getpid():
            return self._engine
        with self._lock:  # threads of one process share one engine, created once
            if self._engine is not None and self._pid != os.getpid():
                # A forked child must not share the parent's connections.
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                self._engine = self._connect()
                self._pid = os.getpid()
            return self._engine

    def _connect(self) -> Engine:
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                try:
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the store folder for {path}: {exc}") from None
            engine = create_engine(self.url, connect_args={"timeout": 60})
            _sqlite_pragmas(engine)
        else:
            engine = create_engine(self.url, pool_pre_ping=True)
        self._ensure_schema(engine)
        return engine

    def _ensure_schema(self, engine: Engine) -> None:
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
                        # Migrations so far only add tables, which create_all just did.
                        conn.execute(
                            update(s.meta).where(s.meta.c.key == "schema_version").values(value=str(s.SCHEMA_VERSION))
                        )
                    elif int(row[0]) > s.SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"the metadata database {self.url} has schema version {row[0]}, newer than "
                            f"this reelflow understands ({s.SCHEMA_VERSION}); upgrade reelflow"
                        )
        except SchemaVersionError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot open the metadata database {self.url}: {exc}") from None

    @contextmanager
    def write(self, lock: str | None = None) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), for other subsystems' tables.

        ``lock`` names a critical section (e.g. a read-then-insert) that concurrent
        writers must take in turn; SQLite's immediate transactions already do.
        """
        with self.engine.connect().execution_options(reelflow_write=True) as conn:
            with conn.begin():
                if lock is not None:
                    _serialize_writers(conn, lock)
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    _write = write
    _read = read

    def close(self) -> None:
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
        with self._write() as conn:
            res = conn.execute(
                insert(s.runs).values(
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
                    host=socket.gethostname(),
                )
            )
            pk = res.inserted_primary_key
            assert pk is not None
            return str(pk[0])

    def finish_run(self, run_id: str, status: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(s.runs).where(s.runs.c.id == int(run_id)).values(status=status, finished_at=time.time())
            )

    def set_tags(self, run_id: str, tags: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == int(run_id)).values(tags=json.dumps(sorted(set(tags)))))

    def get_run(self, flow_name: str, run_id: str) -> dict[str, Any]:
        try:
            rid = int(run_id)
        except ValueError:
            raise NotFoundError(f"run id {run_id!r} is not a reelflow run id (run ids are integers)") from None
        with self._read() as conn:
            row = conn.execute(
                select(s.runs).where(s.runs.c.id == rid, s.runs.c.flow_name == flow_name)
            ).mappings().first()
        if row is None:
            raise NotFoundError(f"run {flow_name}/{run_id} does not exist in the store")
        return _run_dict(row)

    def get_run_flow(self, run_id: str) -> str:
        """The flow name of run ``run_id`` (run ids are unique in a store)."""
        with self._read() as conn:
            row = conn.execute(select(s.runs.c.flow_name).where(s.runs.c.id == int(run_id))).first()
        if row is None:
            raise NotFoundError(f"run id {run_id} does not exist in the store")
        return str(row[0])

    def list_runs(self, flow_name: str | None = None) -> list[dict[str, Any]]:
        q = select(s.runs).order_by(s.runs.c.id.desc())
        if flow_name is not None:
            q = q.where(s.runs.c.flow_name == flow_name)
        with self._read() as conn:
            return [_run_dict(r) for r in conn.execute(q).mappings()]

    def list_flows(self) -> list[str]:
        with self._read() as conn:
            return sorted(r[0] for r in conn.execute(select(s.runs.c.flow_name).distinct()))

    # -- tasks -------------------------------------------------------------------
    def record_task(self, run_id: str, rec: TaskRecord, artifacts: Mapping[str, ArtifactRef]) -> int:
        """Write one task attempt and its artifact references in one transaction."""
        with self._write() as conn:
            return self._insert_task(conn, run_id, rec, artifacts)

    def record_tasks(self, run_id: str, items: Sequence[tuple[TaskRecord, Mapping[str, ArtifactRef]]]) -> None:
        """Several task attempts in one transaction (used to clone tasks on resume)."""
        with self._write() as conn:
            for rec, arts in items:
                self._insert_task(conn, run_id, rec, arts)

    @staticmethod
    def _insert_task(conn: Connection, run_id: str, rec: TaskRecord, artifacts: Mapping[str, ArtifactRef]) -> int:
        res = conn.execute(
            insert(s.tasks).values(
                run_id=int(run_id),
                step_name=rec.step_name,
                task_id=rec.task_id,
                attempt=rec.attempt,
                status=rec.status,
                task_key=rec.task_key,
                split_index=rec.split_index,
                foreach_stack=json.dumps(rec.foreach_stack, default=repr),
                input_paths=json.dumps(rec.input_paths),
                started_at=rec.started_at,
                finished_at=rec.finished_at,
                exception=rec.exception,
                stdout_key=rec.stdout_key,
                stderr_key=rec.stderr_key,
                cloned_from=rec.cloned_from,
                resources=json.dumps(rec.resources) if rec.resources else None,
                result=json.dumps(rec.result) if rec.result else None,
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        row_id = int(pk[0])
        if rec.metrics:
            conn.execute(
                insert(s.metrics),
                [
                    {"run_id": int(run_id), "task_row": row_id, "step_name": rec.step_name, "task_id": rec.task_id,
                     "name": n, "value": float(v), "step": st, "timestamp": ts}
                    for n, v, st, ts in rec.metrics
                ],
            )
        if artifacts:
            conn.execute(
                insert(s.artifacts),
                [
                    {"task_row": row_id, "name": n, "key": a.key, "size": a.size, "type": a.type}
                    for n, a in artifacts.items()
                ],
            )
        return row_id

    def tasks_of_run(self, run_id: str, step_name: str | None = None) -> list[dict[str, Any]]:
        """Every task attempt of a run (oldest first), optionally of one step."""
        q = select(s.tasks).where(s.tasks.c.run_id == int(run_id)).order_by(s.tasks.c.id)
        if step_name is not None:
            q = q.where(s.tasks.c.step_name == step_name)
        with self._read() as conn:
            return [_task_dict(r) for r in conn.execute(q).mappings()]

    def artifacts_of(self, task_rows: Sequence[int]) -> dict[int, dict[str, ArtifactRef]]:
        out: dict[int, dict[str, ArtifactRef]] = {r: {} for r in task_rows}
        if not task_rows:
            return out
        with self._read() as conn:
            for r in conn.execute(select(s.artifacts).where(s.artifacts.c.task_row.in_(list(task_rows)))).mappings():
                out[r["task_row"]][r["name"]] = ArtifactRef(r["key"], r["size"], r["type"])
        return out


    def metrics_of(self, run_ids: Sequence[str], task_row: int | None = None) -> list[dict[str, Any]]:
        """Metric points of runs (or of one task attempt), in logging order."""
        q = select(s.metrics).order_by(s.metrics.c.id)
        if task_row is not None:
            q = q.where(s.metrics.c.task_row == task_row)
        else:
            q = q.where(s.metrics.c.run_id.in_([int(r) for r in run_ids]))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


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


def _task_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["foreach_stack"] = json.loads(d["foreach_stack"] or "[]")
    d["input_paths"] = json.loads(d["input_paths"] or "[]")
    d["resources"] = json.loads(d["resources"]) if d["resources"] else None
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d
