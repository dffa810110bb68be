"""Promotion gates and rollback: move an alias only when the candidate is better, and back again.

The comparison and the move happen in one write transaction holding the model's
lock, so two promotions racing cannot both read the same holder and both move.
Every verdict, moved or kept, is a row (``promotion_decisions``) with both metric
values and the reason; :func:`reelflow.models.history` shows it beside the move.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError, ParameterError

__all__ = ["PromotionDecision", "promote", "rollback", "annotate_history"]


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict of a promotion gate (or a rollback)."""

    name: str
    alias: str
    moved: bool
    candidate: int
    incumbent: int | None
    metric: str | None
    candidate_value: float | None
    incumbent_value: float | None
    reason: str

    def __bool__(self) -> bool:
        return self.moved


def _metric(row: dict[str, Any], metric: str, what: str) -> float | None:
    v = (row.get("metrics") or {}).get(metric)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ParameterError(f"{what}: metric {metric!r} is {v!r}, not a number") from None
    return None if math.isnan(f) else f


def _record(conn: Any, d: PromotionDecision, decision: str, *, higher_is_better: bool | None,
            min_improvement: float | None, user: str, at: float) -> None:
    from sqlalchemy import insert

    from ..store._operate_db import OperateSchema

    conn.execute(insert(OperateSchema.get().promotions).values(
        name=d.name, alias=d.alias, decision=decision, candidate=d.candidate, incumbent=d.incumbent, metric=d.metric,
        candidate_value=d.candidate_value, incumbent_value=d.incumbent_value,
        higher_is_better=None if higher_is_better is None else int(higher_is_better),
        min_improvement=min_improvement, reason=d.reason, at=at, user=user))


def promote(
    name: str,
    version: int,
    alias: str = "champion",
    metric: str = "ndcg@10",
    higher_is_better: bool = True,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Move ``name@alias`` to ``version`` only if it beats the current holder on registered ``metric``.

    The candidate must improve on the holder by more than ``min_improvement``
    (``higher_is_better=False`` for losses and errors). With no holder yet, or a
    holder without the metric, the candidate moves in and the reason says so.
    The verdict is recorded either way and returned (truthy when the alias moved).

    Examples
    --------
    >>> from reelflow import models                                   # doctest: +SKIP
    >>> models.promote("recs", 4, metric="ndcg@10", min_improvement=0.002)
    PromotionDecision(name='recs', alias='champion', moved=False, ..., reason='...')
    """
    from sqlalchemy import select

    from ..store import _schema as s
    from ..store import get_store
    from ..store._operate_db import operate_tables
    from ..store._registry_db import _move_alias
    from ._registry import _alias

    alias = _alias(alias)
    if not isinstance(min_improvement, (int, float)) or not math.isfinite(min_improvement) or min_improvement < 0:
        raise ParameterError(f"promote: min_improvement={min_improvement!r} must be a finite number >= 0")
    store = get_store(create=False)
    md = store.metadata
    operate_tables(md)
    cand_row = md.model_version_row(name, int(version))
    if cand_row is None:
        from ._registry import get

        get(f"{name}/{int(version)}")  # raises the registry's NotFoundError naming the versions
        raise NotFoundError(f"model {name}/{version} is not registered")
    cand_val = _metric(cand_row, metric, f"model {name}/{version}")
    if cand_val is None:
        have = ", ".join(sorted(cand_row.get("metrics") or {})) or "none"
        raise ParameterError(f"promote: model {name}/{version} has no registered metric {metric!r} (its metrics: "
                             f"{have}); register it with metrics={{{metric!r}: value}} or pass --metric")
    user, at = store.config.user, time.time()
    with md.write(lock=f"model:{name}", flush_blobs=False) as conn:
        cur = conn.execute(select(s.model_aliases.c.version).where(
            s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
        inc_val = None
        if cur is not None:
            inc_row = conn.execute(select(s.models.c.metrics).where(
                s.models.c.name == name, s.models.c.version == cur)).scalar()
            import json

            inc_val = _metric({"metrics": json.loads(inc_row or "{}")}, metric, f"model {name}/{cur}")
        sign = "higher" if higher_is_better else "lower"
        if cur == int(version):
            moved, reason = False, f"version {version} already holds {name}@{alias}"
        elif cur is None:
            moved, reason = True, f"{name}@{alias} had no holder; version {version} ({metric}={cand_val:.6g}) moves in"
        elif inc_val is None:
            moved, reason = True, (f"current holder version {cur} has no {metric}; version {version} "
                                   f"({metric}={cand_val:.6g}) replaces it")
        else:
            gain = (cand_val - inc_val) if higher_is_better else (inc_val - cand_val)
            moved = gain > min_improvement
            verdict = "beats" if moved else "does not beat"
            reason = (f"version {version} {verdict} version {cur} on {metric} ({sign} is better): "
                      f"{cand_val:.6g} vs {inc_val:.6g}, improvement {gain:+.6g}, required > {min_improvement:g}")
        d = PromotionDecision(name, alias, moved, int(version), None if cur is None else int(cur), metric, cand_val,
                              inc_val, reason)
        if moved:
            _move_alias(conn, name, alias, int(version), user, at)
        _record(conn, d, "moved" if moved else "kept", higher_is_better=higher_is_better,
                min_improvement=float(min_improvement), user=user, at=at)
    return d


def rollback(name: str, alias: str = "champion") -> PromotionDecision:
    """Point ``name@alias`` back at the version that held it before the current one (recorded)."""
    from sqlalchemy import select

    from ..store import _schema as s
    from ..store import get_store
    from ..store._operate_db import operate_tables
    from ..store._registry_db import _move_alias
    from ._registry import _alias

    alias = _alias(alias)
    store = get_store(create=False)
    md = store.metadata
    operate_tables(md)
    user, at = store.config.user, time.time()
    with md.write(lock=f"model:{name}", flush_blobs=False) as conn:
        cur = conn.execute(select(s.model_aliases.c.version).where(
            s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
        if cur is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r} to roll back; see `reelflow models history "
                                f"{name}`")
        h = s.alias_history
        prev = conn.execute(select(h.c.previous_version).where(h.c.name == name, h.c.alias == alias,
                                                               h.c.version == cur)
                            .order_by(h.c.id.desc()).limit(1)).scalar()
        if prev is None:
            raise NotFoundError(f"{name}@{alias} has no previous holder to roll back to (version {cur} was its "
                                "first); set one with `reelflow models alias`")
        _move_alias(conn, name, alias, int(prev), user, at)
        d = PromotionDecision(name, alias, True, int(prev), int(cur), None, None, None,
                              f"rollback: {name}@{alias} back from version {cur} to version {prev}")
        _record(conn, d, "rollback", higher_is_better=None, min_improvement=None, user=user, at=at)
    return d


def annotate_history(name: str, rows: list[dict[str, Any]], *, metadata: Any = None) -> list[dict[str, Any]]:
    """``rows`` of the alias history with the gate's decisions merged in, oldest first.

    A move a gate or rollback made gets ``decision`` and ``reason`` (and the metric
    values); a gate that kept the holder adds a row with ``decision="kept"``; plain
    moves have ``decision`` None. ``metadata``: the store's metadata to read
    (default: the environment's store), e.g. the one a UI serves.
    """
    from sqlalchemy import select

    from ..store import get_store
    from ..store._operate_db import OperateSchema, has_operate_tables

    out = [{**r, "decision": None, "reason": None} for r in rows]
    md = metadata if metadata is not None else get_store(create=False).metadata
    if not has_operate_tables(md):
        return out
    p = OperateSchema.get().promotions
    with md.read() as conn:
        decs = conn.execute(select(p).where(p.c.name == name).order_by(p.c.id)).mappings().all()
    extra = {"metric", "candidate", "candidate_value", "incumbent_value", "higher_is_better", "min_improvement"}
    for dec in decs:
        info = {"decision": dec["decision"], "reason": dec["reason"], **{k: dec[k] for k in extra}}
        match = next((r for r in out if r["decision"] is None and r["alias"] == dec["alias"]
                      and r["version"] == dec["candidate"] and abs(r["at"] - dec["at"]) < 1e-6), None)
        if dec["decision"] != "kept" and match is not None:
            match.update(info)
        else:
            out.append({"alias": dec["alias"], "version": dec["incumbent"], "previous_version": dec["incumbent"],
                        "at": dec["at"], "user": dec["user"], **info})
    out.sort(key=lambda r: r["at"])
    return out
