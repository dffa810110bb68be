"""Queries over many runs: filtered pages (the UI), the newest runs (latest run, ``runs list
--limit``) and last metric values. Mixed into :class:`~reelflow.store.MetadataStore`;
the newest-runs query has a fast-route twin (``_fastsqlite.py``) with the same conditions.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from ._fastsqlite import FastSqlite
from ._lazy import lazy_module

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import Connection

    from . import _schema as s
else:
    sa = lazy_module("sqlalchemy")
    s = lazy_module("reelflow.store._schema")

__all__ = ["RunQueries"]


class RunQueries:
    """Run queries (mixin of the metadata store)."""

    if TYPE_CHECKING:
        def read(self) -> AbstractContextManager[Connection]: ...

        def _fast(self) -> FastSqlite | None: ...

        def _fast_read(self, fast: FastSqlite) -> AbstractContextManager[sqlite3.Connection]: ...

        def _run_dict(self, row: Any) -> dict[str, Any]: ...

        def _pk(self, run_id: str | int) -> int: ...

        _read = read

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
        from sqlalchemy import and_, func, or_, select

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
        q = (sa.select(s.metrics.c.run_id, s.metrics.c.name, s.metrics.c.value)
             .where(s.metrics.c.name.in_(list(names))).order_by(s.metrics.c.id))
        with self._read() as conn:
            for rid, name, value in conn.execute(q):
                out.setdefault(str(rid), {})[name] = math.nan if value is None else value
        return out

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
        want = max(0, int(limit))
        out: list[dict[str, Any]] = []
        before: int | None = None
        with self._any_read() as (conn, fast):
            while len(out) < want:
                n = want - len(out)
                if fast is not None:
                    rows = self._fast_recent(fast, conn, flow_name, statuses, tags, before, n)
                else:
                    rows = self._sa_recent(conn, flow_name, statuses, tags, before, n)
                for r in rows:
                    d = self._run_dict(r)
                    # SQLite's LIKE ignores ASCII case: keep exact tag matches only
                    if set(tags) <= set(d["tags"]) | set(d["system_tags"]):
                        out.append(d)
                if len(rows) < n:
                    break  # no more matches
                before = int(rows[-1]["id"])
        return out

    @contextmanager
    def _any_read(self) -> Iterator[tuple[Any, FastSqlite | None]]:
        """A read transaction on whichever path serves this store: ``(connection, fast or None)``."""
        if (fast := self._fast()) is not None:
            with self._fast_read(fast) as fconn:
                yield fconn, fast
        else:
            with self._read() as conn:
                yield conn, None

    @staticmethod
    def _sa_recent(conn: Connection, flow_name: str | None, statuses: Sequence[str], tags: Sequence[str],
                   before: int | None, n: int) -> list[Any]:
        conds: list[Any] = []
        if flow_name is not None:
            conds.append(s.runs.c.flow_name == flow_name)
        if statuses:
            conds.append(s.runs.c.status.in_(list(statuses)))
        conds.extend(_has_tag(t) for t in tags)
        if before is not None:
            conds.append(s.runs.c.id < before)
        q = sa.select(s.runs).order_by(s.runs.c.id.desc()).limit(n)
        if conds:
            q = q.where(sa.and_(*conds))
        return list(conn.execute(q).mappings())

    @staticmethod
    def _fast_recent(fast: FastSqlite, conn: sqlite3.Connection, flow_name: str | None, statuses: Sequence[str],
                     tags: Sequence[str], before: int | None, n: int) -> list[Any]:
        """:meth:`_sa_recent`'s statement for the fast path (the same conditions, so the same index seek)."""
        conds: list[str] = []
        args: list[Any] = []
        if flow_name is not None:
            conds.append("runs.flow_name = ?")
            args.append(flow_name)
        if statuses:
            conds.append(f"runs.status IN ({', '.join('?' * len(statuses))})")
            args += list(statuses)
        for t in tags:
            pats = _tag_patterns(t)
            conds.append("(" + " OR ".join(f"runs.{col} LIKE ? ESCAPE '\\'" for col in ("tags", "system_tags")
                                           for _ in pats) + ")")
            args += pats * 2
        if before is not None:
            conds.append("runs.id < ?")
            args.append(before)
        return fast.select(conn, "runs", " AND ".join(conds), [*args, n], "ORDER BY runs.id DESC LIMIT ?")


def _tag_patterns(tag: str) -> list[str]:
    """LIKE patterns (escape ``\\``) matching ``tag`` as a whole element of a JSON list.

    Lists are written by ``json.dumps`` (``["a", "b"]``): an element starts after ``[``
    or ``, `` outside any string, and inside a string a quote is always escaped, so
    ``["tag"`` / ``, "tag"`` match whole elements only (no false hit on ``x"tag"``).
    """
    enc = json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ["%[" + enc + "%", "%, " + enc + "%"]


def _has_tag(tag: str) -> Any:
    """SQL: ``tag`` is an element of the run's ``tags`` or ``system_tags`` JSON list (:func:`_tag_patterns`)."""
    pats = _tag_patterns(tag)
    return sa.or_(*(col.like(p, escape="\\") for col in (s.runs.c.tags, s.runs.c.system_tags) for p in pats))
