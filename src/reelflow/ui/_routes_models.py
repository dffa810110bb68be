"""Pages of metrics (charts, comparison) and of the model registry (versions, aliases, history)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import NotFoundError, ParameterError

__all__ = ["add_model_routes", "MAX_COMPARE"]

MAX_COMPARE = 12  # runs overlaid on one page


def _run_refs(store: Any, specs: list[str]) -> list[dict[str, Any]]:
    runs = []
    for spec in specs:
        spec = spec.strip().strip("/")
        if not spec:
            continue
        flow, _, rid = spec.rpartition("/")
        if not flow:  # a bare run id: run ids are unique in a store
            rid = spec
            flow = store.metadata.get_run_flow(rid)
        runs.append(store.metadata.get_run(flow, rid))
    return runs


def add_model_routes(app: Any) -> None:
    from markupsafe import Markup

    from ._queries import compare_table, metric_series
    from ._svg import line_chart_svg

    render = app.state.render
    checked_form = app.state.checked_form

    def store() -> Any:
        return app.state.store

    @app.get("/metrics", response_class=HTMLResponse)
    def metrics_page(request: Request, run: list[str] = Query(default=[])) -> HTMLResponse:  # noqa: B008
        st = store()
        specs = [s for r in run for s in r.replace(",", " ").split()]
        if len(specs) > MAX_COMPARE:
            raise ParameterError(f"{len(specs)} runs selected; compare at most {MAX_COMPARE} at a time")
        runs = _run_refs(st, specs) if specs else []
        series = metric_series(st, [r["run_id"] for r in runs]) if runs else {}
        labels = {r["run_id"]: f'{r["flow_name"]}/{r["run_id"]}' for r in runs}
        charts = []
        for name in sorted(series):
            data = [(labels[rid], pts) for rid, pts in series[name].items()]
            multi = any(len(p) > 1 for _, p in data)
            charts.append({"name": name, "points": sum(len(p) for _, p in data), "multi": multi,
                           "svg": Markup(line_chart_svg(data, title=name))})
        table = compare_table(st, runs) if runs else []
        return render(request, "metrics.html", title="Metrics", runs=runs, charts=charts, table=table,
                      specs=" ".join(labels[r["run_id"]] for r in runs))

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        st = store()
        if not st.exists():
            return render(request, "empty.html", title="No store yet")
        md = st.metadata
        from ..store._servers_db import live_servers

        served: dict[str, list[int]] = {}
        for sv in live_servers(md):
            served.setdefault(sv["model"], []).append(sv["version"])
        models = []
        for name in md.model_names():
            rows = md.model_version_rows(name)
            aliases = md.model_aliases(name)
            models.append({"name": name, "latest": rows[-1] if rows else None, "versions": len(rows),
                           "aliases": sorted(aliases.items()), "served": sorted(served.get(name, []))})
        return render(request, "models.html", title="Models", models=models)

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str, moved: str = "") -> HTMLResponse:
        st = store()
        md = st.metadata
        rows = md.model_version_rows(name)
        if not rows:
            raise NotFoundError(f"no model named {name!r} is registered in this store; see the Models page")
        aliases = md.model_aliases(name)
        by_version: dict[int, list[str]] = {}
        for a, v in aliases.items():
            by_version.setdefault(v, []).append(a)
        from ..registry._promote import annotate_history

        history = annotate_history(name, md.alias_history(name), metadata=md)  # with the promotion gate's verdicts
        since: dict[str, float] = {}
        for h in history:
            if h["decision"] != "kept" and h["version"] is not None and aliases.get(h["alias"]) == h["version"]:
                since[h["alias"]] = h["at"]
        gate = [h for h in history if h["decision"] in ("moved", "kept")]
        from ..store._servers_db import live_servers

        now = time.time()
        servers = [{**sv, "ago": now - sv["last_seen"],
                    "behind": sv["alias"] is not None and aliases.get(sv["alias"]) not in (None, sv["version"])}
                   for sv in live_servers(md, name, now=now)]
        metric_names = sorted({k for r in rows for k in r["metrics"]})
        versions = []
        for r in reversed(rows):
            src = r["source"]
            link = None
            if src and len(src.split("/")) == 4:
                link = "/runs/" + src
            versions.append({**r, "aliases": sorted(by_version.get(r["version"], [])), "link": link})
        return render(request, "model.html", title=f"Model {name}", name=name, versions=versions,
                      aliases=sorted(aliases.items()), since=since, history=list(reversed(history)),
                      metric_names=metric_names, moved=moved,
                      servers=servers, gate={"moved": sum(h["decision"] == "moved" for h in gate),
                            "kept": sum(h["decision"] == "kept" for h in gate)})

    @app.post("/models/{name}/alias")
    async def move_alias(request: Request, name: str) -> Response:
        from ..registry._registry import _check_name

        form = await checked_form(request)
        alias = str(form.get("alias") or "").strip()
        version_s = str(form.get("version") or "").strip()
        _check_name("alias", alias)
        if not version_s.isdigit():
            raise ParameterError(f"version {version_s!r} is not a version number; pick one of the listed versions")
        st = store()
        st.metadata.set_model_alias(name, alias, int(version_s), user=app.state.user, at=time.time())
        from urllib.parse import quote

        return RedirectResponse(f"/models/{quote(name, safe='')}?moved={quote(alias, safe='')}", status_code=303)
