"""What the deployments pages show: deployments, their next fire times, firings and versions.

Reads the continuous-operation tables (:mod:`reelflow.store._operate_db`) of the
UI's store with one query per page (LIMIT/OFFSET in SQL), and computes fire times
with the scheduler's own :func:`reelflow.operate._deploy.next_slot` (croniter in
the deployment's time zone), so the page shows what the scheduler will do.
A store without those tables (nothing ever deployed) reads as empty; nothing is created.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["deployments_page", "deployment_detail", "recent_firings", "next_fires", "fmt_slot", "firing_view"]

PAGE_SIZE = 50
FIRINGS_PAGE = 50
NEXT_FIRES = 5


def _tables(store: Any) -> Any:
    from ..store._operate_db import OperateSchema, has_operate_tables

    return OperateSchema.get() if has_operate_tables(store.metadata) else None


def fmt_slot(t: float | None, tz: str | None) -> str:
    """``2026-11-27 03:00 CET`` in the schedule's time zone (UTC when none)."""
    if t is None:
        return "-"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(t, ZoneInfo(tz or "UTC")).strftime("%Y-%m-%d %H:%M %Z")


def next_fires(triggers: dict[str, Any], first: float | None, n: int = NEXT_FIRES) -> list[float]:
    """The next ``n`` schedule slots from the stored next slot, as the scheduler computes them."""
    cron = triggers.get("cron")
    if not cron or first is None or n <= 0:
        return []
    from ..operate._deploy import next_slot

    out = [float(first)]
    while len(out) < n:
        out.append(next_slot(cron, triggers.get("timezone"), out[-1]))
    return out


def _summary(triggers: dict[str, Any]) -> dict[str, Any]:
    return {"cron": triggers.get("cron"), "timezone": (triggers.get("timezone") or "UTC") if triggers.get("cron") else None,
            "events": [{"name": e["name"], "parameters": e.get("parameters") or {}} for e in triggers.get("events", [])],
            "flows": list(triggers.get("flows", []))}


def firing_view(f: dict[str, Any], flow_of: dict[int, str]) -> dict[str, Any]:
    """A firing row with what started it as text and links to the run it started and to an upstream run."""
    from ..flows._triggers import Trigger

    trig = json.loads(f["trigger"] or "{}")
    try:
        t = Trigger.from_json(trig)
        text = t.describe()
    except (KeyError, TypeError, ValueError):
        t, text = None, str(trig.get("type", "?"))
    payload = json.dumps(t.event.payload, sort_keys=True)[:200] if t is not None and t.event is not None else None
    flow = flow_of.get(int(f["version"]))
    run_link = f"/runs/{flow}/{f['run_id']}" if f["run_id"] and flow else None
    upstream = f"/runs/{t.run_pathspec}" if t is not None and t.type == "run" and t.run_pathspec else None
    return {**f, "kind": trig.get("type", "?"), "text": text, "payload": payload, "run_link": run_link,
            "upstream_link": upstream, "flow": flow,
            "params_text": ", ".join(f"{k}={v}" for k, v in json.loads(f["params"] or "{}").items())}


def deployments_page(store: Any, *, q: str = "", page: int = 1, page_size: int = PAGE_SIZE
                     ) -> tuple[list[dict[str, Any]], int]:
    """One page of deployments by name (names containing ``q``), each with its triggers,
    next fire time and latest firing, and the number of matches."""
    from sqlalchemy import func, select

    sch = _tables(store)
    if sch is None:
        return [], 0
    d, v, fi = sch.deployments, sch.versions, sch.firings
    where = [d.c.name.contains(q, autoescape=True)] if q else []
    j = d.join(v, (v.c.name == d.c.name) & (v.c.version == d.c.version))
    cols = [d.c.name, d.c.version, d.c.flow_name, d.c.paused, d.c.next_slot, d.c.updated_at, v.c.triggers,
            v.c.catchup, v.c.max_concurrent, v.c.on_busy, v.c.created_at, v.c.user]
    with store.metadata.read() as conn:
        total = int(conn.execute(select(func.count()).select_from(d).where(*where)).scalar() or 0)
        rows = [dict(r) for r in conn.execute(select(*cols).select_from(j).where(*where).order_by(d.c.name)
                                              .limit(page_size).offset((max(page, 1) - 1) * page_size)).mappings()]
        names = [r["name"] for r in rows]
        last: dict[str, dict[str, Any]] = {}
        running: dict[str, int] = {}
        if names:
            newest = select(func.max(fi.c.id)).where(fi.c.deployment.in_(names)).group_by(fi.c.deployment)
            for f in conn.execute(select(fi).where(fi.c.id.in_(newest))).mappings():
                last[f["deployment"]] = dict(f)
            for name, n in conn.execute(select(fi.c.deployment, func.count()).where(
                    fi.c.deployment.in_(names), fi.c.status.in_(("queued", "running"))).group_by(fi.c.deployment)):
                running[name] = int(n)
    now = time.time()
    for r in rows:
        trig = json.loads(r.pop("triggers") or "{}")
        r["trig"] = _summary(trig)
        r["next_text"] = fmt_slot(r["next_slot"], trig.get("timezone")) if trig.get("cron") else None
        r["overdue"] = bool(trig.get("cron") and r["next_slot"] is not None and r["next_slot"] < now)
        f = last.get(r["name"])
        r["last"] = firing_view(f, {int(f["version"]): r["flow_name"]}) if f else None
        r["active"] = running.get(r["name"], 0)
    return rows, total


def recent_firings(store: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The newest firings over all deployments (what the scheduler decided last)."""
    from sqlalchemy import select

    sch = _tables(store)
    if sch is None:
        return []
    fi, v = sch.firings, sch.versions
    with store.metadata.read() as conn:
        rows = [dict(r) for r in conn.execute(select(fi).order_by(fi.c.id.desc()).limit(limit)).mappings()]
        keys = {(r["deployment"], int(r["version"])) for r in rows}
        flows: dict[tuple[str, int], str] = {}
        if keys:
            for name, ver, flow in conn.execute(select(v.c.name, v.c.version, v.c.flow_name).where(
                    v.c.name.in_({k[0] for k in keys}))):
                flows[(name, int(ver))] = flow
    return [firing_view(r, {int(r["version"]): flows.get((r["deployment"], int(r["version"])), "")}) for r in rows]


def deployment_detail(store: Any, name: str, *, page: int = 1, page_size: int = FIRINGS_PAGE) -> dict[str, Any]:
    """One deployment: current version, next fire times, a page of firings (newest first), every version."""
    from sqlalchemy import func, select

    from ..operate._deploy import get_deployment

    dep = get_deployment(name, store=store)  # NotFoundError naming the known deployments
    sch = _tables(store)
    fi, v = sch.firings, sch.versions
    with store.metadata.read() as conn:
        versions = [dict(r) for r in conn.execute(select(v).where(v.c.name == name)
                                                   .order_by(v.c.version.desc())).mappings()]
        total = int(conn.execute(select(func.count()).where(fi.c.deployment == name)).scalar() or 0)
        firings = [dict(r) for r in conn.execute(select(fi).where(fi.c.deployment == name).order_by(fi.c.id.desc())
                                                  .limit(page_size).offset((max(page, 1) - 1) * page_size)).mappings()]
    flow_of = {int(r["version"]): r["flow_name"] for r in versions}
    for r in versions:
        trig = json.loads(r["triggers"] or "{}")
        r["trig"] = _summary(trig)
        r["files"] = sorted(json.loads(r["code"] or "{}"))
        r["params_text"] = ", ".join(f"{k}={val}" for k, val in json.loads(r["params"] or "{}").items())
    tz = dep.triggers.get("timezone")
    fires = next_fires(dep.triggers, dep.next_slot)
    return {"dep": dep, "trig": _summary(dep.triggers), "versions": versions, "total": total,
            "firings": [firing_view(f, flow_of) for f in firings],
            "fires": [{"at": t, "local": fmt_slot(t, tz), "utc": fmt_slot(t, "UTC")} for t in fires],
            "overdue": bool(fires and fires[0] < time.time())}
