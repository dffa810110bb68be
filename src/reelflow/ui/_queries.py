"""What the pages show, read through the store's metadata API (no second copy of the data).

List pages use only metadata rows (type and size of artifacts, never their values);
a value is loaded for one artifact at a time, on its own request, under a size limit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client._search import _matches, parse_condition
from ..store import Store

__all__ = ["RunFilter", "find_runs_page", "run_detail", "step_status", "metric_series", "compare_table"]

PAGE_SIZE = 50


@dataclass
class RunFilter:
    """The runs page's filters (query string parameters of ``/``)."""

    flow: str = ""
    status: str = ""
    user: str = ""
    tags: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    since_hours: float | None = None
    page: int = 1

    def conditions(self) -> list[tuple[str, str, str, Any]]:
        """Parsed ``where`` conditions (ParameterError, with the fix, for one that cannot be read)."""
        return [parse_condition(w) for w in self.where if w.strip()]


def find_runs_page(store: Store, f: RunFilter, page_size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int]:
    """One page of matching runs (newest first) and the number of matches.

    Flow, user, tags, time and recorded status filter in SQL with LIMIT/OFFSET; a
    metric/parameter expression or the derived ``abandoned``/``running`` status is
    checked here, over the SQL matches.
    """
    md = store.metadata
    conds = f.conditions()
    since = time.time() - f.since_hours * 3600 if f.since_hours else None
    statuses = ["running"] if f.status in ("running", "abandoned") else [f.status] if f.status else []
    kw: dict[str, Any] = dict(flow_name=f.flow or None, statuses=statuses, user=f.user or None, tags=f.tags,
                              since=since)
    offset = (max(f.page, 1) - 1) * page_size
    if not conds and f.status not in ("running", "abandoned"):
        return md.runs_page(limit=page_size, offset=offset, **kw)
    if f.status in ("running", "abandoned"):  # derived from liveness: few rows, read whole
        rows, _ = md.runs_page(limit=None, **kw)
        rows = [r for r in rows if r["status"] == f.status]
        finals = md.last_metric_values(sorted({c[1] for c in conds if c[0] == "metrics"}))
        rows = [r for r in rows if all(_matches(r, finals.get(r["run_id"], {}), c) for c in conds)]
        return rows[offset:offset + page_size], len(rows)
    # a metric/parameter expression: match on (id, params) and the named metrics, then read one page of rows
    keys, _ = md.runs_page(limit=None, keys_only=True, **kw)
    finals = md.last_metric_values(sorted({c[1] for c in conds if c[0] == "metrics"}))
    need_params = any(c[0] == "params" for c in conds)
    hits = []
    for k in keys:
        row = {"params": json.loads(k["params"] or "{}") if need_params else {}}
        if all(_matches(row, finals.get(k["run_id"], {}), c) for c in conds):
            hits.append(k["run_id"])
    page_ids = hits[offset:offset + page_size]
    rows = md.runs_page(limit=None, run_ids=page_ids, **kw)[0] if page_ids else []
    return rows, len(hits)


def step_status(tasks: Sequence[dict[str, Any]], run_status: str) -> str:
    """A step's status from its latest task attempts and the run's status."""
    if not tasks:
        return "pending" if run_status == "running" else "not-run"
    if any(t["status"] == "failed" for t in tasks):
        return "failed"
    return "succeeded"


def run_detail(store: Store, flow: str, run_id: str) -> dict[str, Any]:
    """Everything the run page draws: the run, steps (status, tasks, duration), attempts, artifacts."""
    md = store.metadata
    run = md.get_run(flow, run_id)
    attempts = md.tasks_of_run(run_id)
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for a in attempts:
        latest[(a["step_name"], a["task_id"])] = a
    by_step: dict[str, list[dict[str, Any]]] = {}
    for (step, _), t in sorted(latest.items(), key=lambda kv: kv[1]["task_id"]):
        by_step.setdefault(step, []).append(t)
    graph = run["graph"] or {}
    order = list(graph) + [s for s in by_step if s not in graph]
    steps: dict[str, dict[str, Any]] = {}
    for name in order:
        ts = by_step.get(name, [])
        dur = (max(t["finished_at"] for t in ts) - min(t["started_at"] for t in ts)) if ts else None
        steps[name] = {"status": step_status(ts, run["status"]), "tasks": len(ts), "duration": dur,
                       "task_rows": ts, "failed": sum(t["status"] == "failed" for t in ts)}
    first_rows = [ts[0]["id"] for ts in by_step.values()]
    arts = md.artifacts_of(first_rows)
    for name, ts in by_step.items():
        steps[name]["artifacts"] = sorted(arts.get(ts[0]["id"], {}).items())
        steps[name]["artifact_task"] = ts[0]["task_id"]
    latest_ids = {t["id"] for t in latest.values()}
    gantt = [{"label": f'{a["step_name"]}/{a["task_id"]}', "task": f'{a["step_name"]}/{a["task_id"]}',
              "start": a["started_at"], "end": a["finished_at"], "status": a["status"], "attempt": a["attempt"],
              "latest": a["id"] in latest_ids, "href": f'/runs/{flow}/{run_id}/{a["step_name"]}/{a["task_id"]}'}
             for a in attempts]
    return {"run": run, "steps": steps, "attempts": attempts, "gantt": gantt,
            "retried": sum(1 for a in attempts if a["id"] not in latest_ids)}


def metric_series(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{metric name: {run id: [(step, value), ...]}}``; points without a step use their order."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    counters: dict[tuple[str, str], int] = {}
    for m in store.metadata.metrics_of(list(run_ids)):
        rid, name = str(m["run_id"]), m["name"]
        k = (rid, name)
        x = m["step"] if m["step"] is not None else counters.get(k, 0)
        counters[k] = counters.get(k, 0) + 1
        v = m["value"]
        out.setdefault(name, {}).setdefault(rid, []).append((float(x), float(v) if v is not None else math.nan))
    return out


def compare_table(store: Store, runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"key", "values": [...], "differs"}`` of status, parameters and final metrics, one value per run
    (what ``reelflow runs compare`` prints)."""
    finals: dict[str, dict[str, float]] = {r["run_id"]: {} for r in runs}
    if runs:
        for m in store.metadata.metrics_of([r["run_id"] for r in runs]):
            finals[str(m["run_id"])][m["name"]] = m["value"]
    keys: list[str] = ["status"]
    for r in runs:
        keys += [f"params.{k}" for k in r["params"] if f"params.{k}" not in keys]
    for r in runs:
        keys += [f"metrics.{k}" for k in finals[r["run_id"]] if f"metrics.{k}" not in keys]
    rows = []
    for key in keys:
        vals: list[Any] = []
        for r in runs:
            if key == "status":
                vals.append(r["status"])
            elif key.startswith("params."):
                p = r["params"].get(key[7:])
                vals.append(None if p is None else p.get("repr") if isinstance(p, dict) else p)
            else:
                vals.append(finals[r["run_id"]].get(key[8:]))
        shown = [("-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)) for v in vals]
        rows.append({"key": key, "values": shown, "differs": len(set(shown)) > 1})
    return rows
