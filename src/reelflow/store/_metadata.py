"""Metadata store: runs, tasks and artifacts in SQLite (default) or PostgreSQL.

The same SQLAlchemy Core code serves both. SQLite runs in WAL mode with a busy
timeout; write transactions start with ``BEGIN IMMEDIATE`` so that two processes
writing at once queue on the lock instead of failing on a lock upgrade.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, inspect, insert, select, update
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from ..errors import NotFoundError, SchemaVersionError, StoreError
from . import _schema as s
from ._engine import db_error, mask_url, parse_url, sqlite_pragmas
from ._liveness import abandoned_reason, host_name, process_token
from ._migrate import upgrade
from ._registry_db import RegistryTables
from ._types import METRIC_NAME_MAX, METRIC_STEP_MAX, METRIC_STEP_MIN, ArtifactRef, TaskRecord

__all__ = ["MetadataStore", "TaskRecord", "ArtifactRef"]


class MetadataStore(RegistryTables):
    """Runs, tasks, artifact references, metrics and the model registry behind one small API.

    ``url`` is a SQLAlchemy URL (a string, or a :class:`sqlalchemy.URL` built from a
    path so that characters such as ``?`` or ``%`` in it stay part of the path).
    ``stale_after`` is how long a run on another host may go without a heartbeat
    before it reads as abandoned.
    """

    def __init__(self, url: str | URL, *, stale_after: float = 60.0) -> None:
        self._url = parse_url(url)
        self.url = mask_url(url)
        self.stale_after = stale_after
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: Called before a write transaction that may reference blobs begins: the
        #: :class:`~reelflow.store.Store` sets it to its blob store's ``flush``, so a blob
        #: is durable before any committed row names it (see ``_blobs.py``).
        self.before_write: Callable[[], None] | None = None

    def _sqlite_path(self) -> str | None:
        """The database file of a SQLite URL (None for other databases and in-memory ones)."""
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
                return bool(inspect(conn).has_table("meta"))
        except DBAPIError as exc:
            raise db_error(exc, f"at {self.url}") from None
        finally:
            engine.dispose()

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

    def _make_engine(self) -> Engine:
        try:
            if self._url.get_backend_name() == "sqlite":
                engine = create_engine(self._url, connect_args={"timeout": 60})
                sqlite_pragmas(engine)
                return engine
            return create_engine(self._url, pool_pre_ping=True)
        except NoSuchModuleError:
            raise StoreError(
                f"REELFLOW_METADATA_URL {self.url!r} names an unknown database "
                f"{self._url.drivername!r}; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            ) from None
        except ImportError as exc:
            raise StoreError(
                f"the database driver for {self.url} is not installed ({exc}); install it, "
                "e.g. pip install 'psycopg[binary]' for postgresql+psycopg"
            ) from None
        except ArgumentError as exc:
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
        except DBAPIError as exc:
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
        except DBAPIError as exc:
            raise db_error(exc, f"at {self.url} (writing)") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise db_error(exc, f"at {self.url} (reading)") from None

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
                    host=host_name(),
                    proc_token=process_token(os.getpid()),
                    heartbeat_at=time.time(),
                )
            )
            pk = res.inserted_primary_key
            assert pk is not None
            return str(pk[0])

    def heartbeat(self, run_id: str) -> None:
        """Record that run ``run_id`` is still going (one UPDATE; the runtime calls it every few seconds)."""
        with self._write(flush_blobs=False) as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == self._pk(run_id)).values(heartbeat_at=time.time()))

    def finish_run(self, run_id: str, status: str, *, reason: str | None = None) -> None:
        """Record the run's end: ``status`` and, optionally, why (shown as its ``status_reason``)."""
        with self._write(flush_blobs=False) as conn:
            conn.execute(
                update(s.runs).where(s.runs.c.id == self._pk(run_id))
                .values(status=status, finished_at=time.time(), status_reason=reason)
            )

    def set_tags(self, run_id: str, tags: Sequence[str]) -> None:
        with self._write(flush_blobs=False) as conn:
            conn.execute(
                update(s.runs).where(s.runs.c.id == self._pk(run_id)).values(tags=json.dumps(sorted(set(tags))))
            )

    def _pk(self, run_id: str | int) -> int:
        """``run_id`` as the runs table's key; anything that cannot be one is :class:`NotFoundError`."""
        try:
            rid = int(str(run_id).strip())
        except ValueError:
            rid = -1
        top = 2**31 - 1 if self._url.get_backend_name() == "postgresql" else 2**63 - 1
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
        with self._read() as conn:
            row = conn.execute(
                select(s.runs).where(s.runs.c.id == rid, s.runs.c.flow_name == flow_name)
            ).mappings().first()
        if row is None:
            raise NotFoundError(f"run {flow_name}/{run_id} does not exist in the store at {self.url}")
        return self._run_dict(row)

    def get_run_flow(self, run_id: str) -> str:
        """The flow name of run ``run_id`` (run ids are unique in a store)."""
        rid = self._pk(run_id)
        with self._read() as conn:
            row = conn.execute(select(s.runs.c.flow_name).where(s.runs.c.id == rid)).first()
        if row is None:
            raise NotFoundError(f"run id {run_id} does not exist in the store at {self.url}")
        return str(row[0])

    def list_runs(self, flow_name: str | None = None) -> list[dict[str, Any]]:
        """Run rows, newest first (see :meth:`get_run` for ``status``)."""
        q = select(s.runs).order_by(s.runs.c.id.desc())
        if flow_name is not None:
            q = q.where(s.runs.c.flow_name == flow_name)
        with self._read() as conn:
            return [self._run_dict(r) for r in conn.execute(q).mappings()]

    def runs_page(
        self,
        *,
        flow_name: str | None = None,
        statuses: Sequence[str] = (),
        user: str | None = None,
        tags: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 50,
        offset: int = 0,
        run_ids: Sequence[str] | None = None,
        keys_only: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of run rows, newest first, filtered in SQL, and how many rows match in all.

        ``statuses`` are recorded statuses (``running`` includes runs that read as
        abandoned); ``tags`` must all be among a run's user or system tags;
        ``since``/``until`` bound ``created_at``; ``run_ids`` limits to those runs.
        ``limit=None`` returns every match. ``keys_only`` returns just ``run_id`` and
        ``params`` of each row (cheap, for filtering many runs further in Python).
        (Added for the web UI: LIMIT/OFFSET on the primary key keeps a page fast on
        10,000 runs.)
        """
        from sqlalchemy import and_, func, or_

        conds: list[Any] = []
        if flow_name:
            conds.append(s.runs.c.flow_name == flow_name)
        if statuses:
            conds.append(s.runs.c.status.in_(list(statuses)))
        if user:
            conds.append(s.runs.c.user == user)
        for tag in tags:
            pat = "%" + json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append(or_(s.runs.c.tags.like(pat, escape="\\"), s.runs.c.system_tags.like(pat, escape="\\")))
        if since is not None:
            conds.append(s.runs.c.created_at >= since)
        if until is not None:
            conds.append(s.runs.c.created_at < until)
        if run_ids is not None:
            conds.append(s.runs.c.id.in_([self._pk(r) for r in run_ids]))
        where = and_(*conds) if conds else None
        cols = [s.runs.c.id, s.runs.c.params] if keys_only else [s.runs]
        q = select(*cols).order_by(s.runs.c.id.desc()).offset(max(0, offset))
        cq = select(func.count()).select_from(s.runs)
        if where is not None:
            q, cq = q.where(where), cq.where(where)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            total = int(conn.execute(cq).scalar() or 0)
            if keys_only:
                rows = [{"run_id": str(r[0]), "params": r[1]} for r in conn.execute(q)]
            else:
                rows = [self._run_dict(r) for r in conn.execute(q).mappings()]
        return rows, total

    def last_metric_values(self, names: Sequence[str]) -> dict[str, dict[str, float]]:
        """``{run_id: {name: last logged value}}`` of the metrics ``names`` over every run
        (one query on the metric names only; for filters such as ``metrics.ndcg@10 > 0.3``)."""
        out: dict[str, dict[str, float]] = {}
        if not names:
            return out
        q = (select(s.metrics.c.run_id, s.metrics.c.name, s.metrics.c.value)
             .where(s.metrics.c.name.in_(list(names))).order_by(s.metrics.c.id))
        with self._read() as conn:
            for rid, name, value in conn.execute(q):
                out.setdefault(str(rid), {})[name] = math.nan if value is None else value
        return out

    def _run_dict(self, row: Any) -> dict[str, Any]:
        d = _run_dict(row)
        d["recorded_status"] = d["status"]
        d["abandoned_reason"] = abandoned_reason(d, self.stale_after)
        if d["abandoned_reason"] is not None:
            d["status"] = "abandoned"
            d["status_reason"] = d["abandoned_reason"]
        return d

    def recent_runs(
        self,
        flow_name: str | None = None,
        *,
        limit: int = 1,
        statuses: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (of ``flow_name``; with one of ``statuses``; carrying all
        ``tags`` among their user or system tags), newest first.

        Indexed: a seek on ``(flow_name, status, id)`` or ``(flow_name, id)`` walked
        newest first, stopping after ``limit`` matches -- the cost does not grow with
        the number of runs in the store (``Flow.latest_run``, ``runs list --limit``).
        """
        from sqlalchemy import and_

        conds: list[Any] = []
        if flow_name is not None:
            conds.append(s.runs.c.flow_name == flow_name)
        if statuses:
            conds.append(s.runs.c.status.in_(list(statuses)))
        conds.extend(_has_tag(t) for t in tags)
        want = max(0, int(limit))
        out: list[dict[str, Any]] = []
        before: int | None = None
        with self._read() as conn:
            while len(out) < want:
                n = want - len(out)
                page = conds + ([s.runs.c.id < before] if before is not None else [])
                q = select(s.runs).order_by(s.runs.c.id.desc()).limit(n)
                if page:
                    q = q.where(and_(*page))
                rows = list(conn.execute(q).mappings())
                for r in rows:
                    d = self._run_dict(r)
                    # SQLite's LIKE ignores ASCII case: keep exact tag matches only
                    if set(tags) <= set(d["tags"]) | set(d["system_tags"]):
                        out.append(d)
                if len(rows) < n:
                    break  # no more matches
                before = int(rows[-1]["id"])
        return out

    def has_flow(self, flow_name: str) -> bool:
        """Whether any run of ``flow_name`` is recorded (one index seek)."""
        q = select(s.runs.c.id).where(s.runs.c.flow_name == flow_name).limit(1)
        with self._read() as conn:
            return conn.execute(q).first() is not None

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
            _check_metrics(rec)
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
        q = select(s.tasks).where(s.tasks.c.run_id == self._pk(run_id)).order_by(s.tasks.c.id)
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
            q = q.where(s.metrics.c.run_id.in_([self._pk(r) for r in run_ids]))
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        for r in rows:
            if r["value"] is None:
                r["value"] = math.nan  # how SQLite stores NaN
        return rows


    def referenced_blob_keys(self) -> tuple[set[str], set[str]]:
        """Blob keys rows refer to: (artifacts, parameters and models; task logs).

        Log keys may name manifests whose chunks the caller must follow.
        """
        keys: set[str] = set()
        logs: set[str] = set()
        with self._read() as conn:
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


def _has_tag(tag: str) -> Any:
    """SQL: ``tag`` is an element of the run's ``tags`` or ``system_tags`` JSON list.

    Lists are written by ``json.dumps`` (``["a", "b"]``): an element starts after ``[``
    or ``, `` outside any string, and inside a string a quote is always escaped, so
    ``["tag"`` / ``, "tag"`` match whole elements only (no false hit on ``x"tag"``).
    """
    from sqlalchemy import or_

    enc = json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pats = ["%[" + enc + "%", "%, " + enc + "%"]
    return or_(*(col.like(p, escape="\\") for col in (s.runs.c.tags, s.runs.c.system_tags) for p in pats))


def _check_metrics(rec: TaskRecord) -> None:
    """Refuse metric points the schema cannot hold (the runtime checks them first, at log time)."""
    for name, _value, step, _ts in rec.metrics:
        if len(name) > METRIC_NAME_MAX:
            raise StoreError(
                f"metric name {name[:40]!r}... of step {rec.step_name!r} is {len(name)} characters; "
                f"the limit is {METRIC_NAME_MAX}"
            )
        if step is not None and not METRIC_STEP_MIN <= step <= METRIC_STEP_MAX:
            raise StoreError(
                f"metric {name!r} of step {rec.step_name!r} has step={step}, outside the signed 64-bit range"
            )


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
