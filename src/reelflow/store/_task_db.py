"""Task attempts, their artifact references and metric points, behind methods of the metadata store.

Each write goes through the store's own SQLite file directly (``_fastsqlite.py``) when it
can, else through SQLAlchemy Core; the rows are built once, here, for both. Mixed into
:class:`~reelflow.store.MetadataStore`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ._fastsqlite import FastSqlite
from ._lazy import lazy_module
from ._types import METRIC_NAME_MAX, METRIC_STEP_MAX, METRIC_STEP_MIN, ArtifactRef, TaskRecord

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import Connection

    from . import _schema as s
else:  # loaded on first use: the fast SQLite path never needs them
    sa = lazy_module("sqlalchemy")
    s = lazy_module("reelflow.store._schema")

__all__ = ["TaskTables"]


class TaskTables:
    """Task attempts, artifacts and metrics (mixin of the metadata store)."""

    if TYPE_CHECKING:
        def write(self, lock: str | None = None, *, flush_blobs: bool = True) -> AbstractContextManager[Connection]: ...

        def read(self) -> AbstractContextManager[Connection]: ...

        def _fast(self) -> FastSqlite | None: ...

        def _fast_write(self, fast: FastSqlite, *, flush_blobs: bool = True) -> AbstractContextManager[sqlite3.Connection]: ...

        def _fast_read(self, fast: FastSqlite) -> AbstractContextManager[sqlite3.Connection]: ...

        def _pk(self, run_id: str | int) -> int: ...

        _write = write
        _read = read

    def record_task(self, run_id: str, rec: TaskRecord, artifacts: Mapping[str, ArtifactRef]) -> int:
        """Write one task attempt and its artifact references in one transaction."""
        return self._record(run_id, [(rec, artifacts)])[0]

    def record_tasks(self, run_id: str, items: Sequence[tuple[TaskRecord, Mapping[str, ArtifactRef]]]) -> None:
        """Several task attempts in one transaction (used to clone tasks on resume)."""
        self._record(run_id, items)

    def _record(self, run_id: str, items: Sequence[tuple[TaskRecord, Mapping[str, ArtifactRef]]]) -> list[int]:
        for rec, _ in items:
            _check_metrics(rec)
        if (fast := self._fast()) is not None:
            with self._fast_write(fast) as fconn:
                return [self._insert_task(fconn, run_id, rec, arts, fast) for rec, arts in items]
        with self._write() as conn:
            return [self._insert_task(conn, run_id, rec, arts) for rec, arts in items]

    @staticmethod
    def _insert_task(conn: Any, run_id: str, rec: TaskRecord, artifacts: Mapping[str, ArtifactRef],
                     fast: FastSqlite | None = None) -> int:
        task = dict(
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
        if fast is not None:
            row_id = fast.insert(conn, "tasks", task)
        else:
            pk = conn.execute(sa.insert(s.tasks).values(**task)).inserted_primary_key
            assert pk is not None
            row_id = int(pk[0])
        metrics = [
            {"run_id": int(run_id), "task_row": row_id, "step_name": rec.step_name, "task_id": rec.task_id,
             "name": n, "value": float(v), "step": st, "timestamp": ts}
            for n, v, st, ts in rec.metrics
        ]
        arts = [{"task_row": row_id, "name": n, "key": a.key, "size": a.size, "type": a.type}
                for n, a in artifacts.items()]
        for table, rows in (("metrics", metrics), ("artifacts", arts)):
            if not rows:
                continue
            if fast is not None:
                fast.insert_many(conn, table, rows)
            else:
                conn.execute(sa.insert(getattr(s, table)), rows)
        return row_id

    def tasks_of_run(self, run_id: str, step_name: str | None = None) -> list[dict[str, Any]]:
        """Every task attempt of a run (oldest first), optionally of one step."""
        rid = self._pk(run_id)
        args: list[Any]
        if (fast := self._fast()) is not None:
            where, args = "tasks.run_id = ?", [rid]
            if step_name is not None:
                where, args = where + " AND tasks.step_name = ?", [*args, step_name]
            with self._fast_read(fast) as fconn:
                return [_task_dict(r) for r in fast.select(fconn, "tasks", where, args, "ORDER BY tasks.id")]
        q = sa.select(s.tasks).where(s.tasks.c.run_id == rid).order_by(s.tasks.c.id)
        if step_name is not None:
            q = q.where(s.tasks.c.step_name == step_name)
        with self._read() as conn:
            return [_task_dict(r) for r in conn.execute(q).mappings()]

    def artifacts_of(self, task_rows: Sequence[int]) -> dict[int, dict[str, ArtifactRef]]:
        out: dict[int, dict[str, ArtifactRef]] = {r: {} for r in task_rows}
        if not task_rows:
            return out
        rows: list[Any]
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                rows = fast.select_in(fconn, "artifacts", "task_row", list(task_rows))
        else:
            with self._read() as conn:
                q = sa.select(s.artifacts).where(s.artifacts.c.task_row.in_(list(task_rows)))
                rows = list(conn.execute(q).mappings())
        for r in rows:
            out[r["task_row"]][r["name"]] = ArtifactRef(r["key"], r["size"], r["type"])
        return out

    def metrics_of(self, run_ids: Sequence[str], task_row: int | None = None) -> list[dict[str, Any]]:
        """Metric points of runs (or of one task attempt), in logging order."""
        rows: list[dict[str, Any]]
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                if task_row is not None:
                    rows = fast.select(fconn, "metrics", "metrics.task_row = ?", [task_row], "ORDER BY metrics.id")
                else:
                    rows = fast.select_in(fconn, "metrics", "run_id", [self._pk(r) for r in run_ids])
                    rows.sort(key=lambda r: r["id"])
        else:
            q = sa.select(s.metrics).order_by(s.metrics.c.id)
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


def _task_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["foreach_stack"] = json.loads(d["foreach_stack"] or "[]")
    d["input_paths"] = json.loads(d["input_paths"] or "[]")
    d["resources"] = json.loads(d["resources"]) if d["resources"] else None
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d
