"""Retention of runs' metadata: ``reelflow gc --keep-last N --older-than 30d``.

A run is deleted when it is past every given policy: not among the newest
``keep_last`` runs of its flow, and created more than ``older_than`` seconds ago.
Never deleted, whatever the policy: runs still recorded as running, runs a
registered model version came from (its lineage), and runs tagged ``keep``.
Deleting a run removes its rows (metrics, artifacts, tasks, cards, live logs,
checkpoints, step-cache keys, the run); the blobs it alone referenced become unreferenced and the blob collection
that follows frees them (deployments' code snapshots, model versions and
generated outputs keep theirs).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ParameterError

if TYPE_CHECKING:
    from . import Store

__all__ = ["RetentionReport", "parse_age", "select_expired_runs", "delete_runs", "KEEP_TAG"]

KEEP_TAG = "keep"
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` (a bare number is days) as seconds."""
    m = _AGE.match(str(text))
    if not m:
        raise ParameterError(f"--older-than {text!r}: write a number with a unit, e.g. 30d, 12h, 90m or 2w")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass
class RetentionReport:
    """Runs deleted (or, dry, that would be) and the protected ones the policy matched."""

    deleted: list[str] = field(default_factory=list)  # pathspecs
    protected: dict[str, str] = field(default_factory=dict)  # pathspec -> why kept

    def summary(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        kept = f"; kept {len(self.protected)} the policy matched ({_why(self.protected)})" if self.protected else ""
        return f"{verb} the metadata of {len(self.deleted)} run(s){kept}"


def _why(protected: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for why in protected.values():
        counts[why] = counts.get(why, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in sorted(counts.items()))


def select_expired_runs(store: Store, *, keep_last: int | None, older_than: float | None,
                        now: float | None = None) -> RetentionReport:
    """The runs past the policy, split into those to delete and those protected (with why)."""
    import json

    from sqlalchemy import select

    from . import _schema as s

    if keep_last is None and older_than is None:
        return RetentionReport()
    now = time.time() if now is None else now
    md = store.metadata
    with md.read() as conn:
        rows = conn.execute(select(s.runs.c.id, s.runs.c.flow_name, s.runs.c.status, s.runs.c.created_at,
                                   s.runs.c.tags).order_by(s.runs.c.flow_name, s.runs.c.id.desc())).all()
        sources = [r[0] for r in conn.execute(select(s.models.c.source).where(s.models.c.source.is_not(None)))]
    model_runs = {src.split("/")[1] for src in sources if src.count("/") >= 1}
    report = RetentionReport()
    seen: dict[str, int] = {}
    for rid, flow, status, created, tags in rows:
        rank = seen[flow] = seen.get(flow, 0) + 1
        if keep_last is not None and rank <= keep_last:
            continue
        if older_than is not None and created > now - older_than:
            continue
        path = f"{flow}/{rid}"
        if status == "running":
            report.protected[path] = "running"
        elif str(rid) in model_runs:
            report.protected[path] = "source of a registered model"
        elif KEEP_TAG in json.loads(tags or "[]"):
            report.protected[path] = f"tagged {KEEP_TAG!r}"
        else:
            report.deleted.append(path)
    return report


def delete_runs(store: Store, pathspecs: list[str], *, batch: int = 200) -> int:
    """Delete the rows of runs ``pathspecs`` (``Flow/ID``) that are not running; return how many went."""
    from sqlalchemy import delete, inspect, select

    from . import _schema as s

    ids = [int(p.split("/")[1]) for p in pathspecs]
    md = store.metadata
    with md.read() as conn:
        have = set(inspect(conn).get_table_names())
    extra = []
    if "cards" in have:
        from ..cards._storage import _cards_table

        extra.append(_cards_table())
    if "live_logs" in have:
        from ..ui._livelogs import _live_table

        extra.append(_live_table())
    if "checkpoints" in have:  # @checkpoint saves (their blobs then go with `reelflow gc`)
        from ..runtime._checkpoint import _checkpoints_table

        extra.append(_checkpoints_table())
    if "step_cache" in have:  # step-cache keys: a deleted run is no cache source
        from ..runtime._cache import _cache_table

        extra.append(_cache_table())
    gone = 0
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        with md.write(flush_blobs=False) as conn:
            # checked again inside the transaction: a run resumed or restarted meanwhile stays
            chunk = [r[0] for r in conn.execute(select(s.runs.c.id).where(s.runs.c.id.in_(chunk),
                                                                          s.runs.c.status != "running"))]
            if not chunk:
                continue
            task_rows = select(s.tasks.c.id).where(s.tasks.c.run_id.in_(chunk))
            conn.execute(delete(s.metrics).where(s.metrics.c.run_id.in_(chunk)))
            conn.execute(delete(s.artifacts).where(s.artifacts.c.task_row.in_(task_rows)))
            conn.execute(delete(s.tasks).where(s.tasks.c.run_id.in_(chunk)))
            for t in extra:
                conn.execute(delete(t).where(t.c.run_id.in_(chunk)))
            conn.execute(delete(s.runs).where(s.runs.c.id.in_(chunk)))
            gone += len(chunk)
    return gone
