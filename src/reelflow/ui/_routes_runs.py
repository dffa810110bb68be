"""Pages of runs, tasks, logs, artifacts and cards."""

from __future__ import annotations

import io
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from ..errors import NotFoundError, ParameterError, ReelflowError
from ._logs import WINDOW, log_search, log_stream, log_window
from ._queries import PAGE_SIZE, RunFilter, find_runs_page, run_detail
from ._svg import dag_svg, gantt_svg, line_chart_svg

__all__ = ["add_run_routes", "PREVIEW_LIMIT"]

#: Artifacts larger than this are not loaded for a preview (their type and size are shown).
PREVIEW_LIMIT = 64 << 20


def _float(v: str | None, what: str) -> float | None:
    if v is None or not v.strip():
        return None
    try:
        return float(v)
    except ValueError:
        raise ParameterError(f"{what}={v!r} is not a number; e.g. {what}=24") from None


def _task_row(store: Any, flow: str, run_id: str, step: str, task_id: str, attempt: int | None = None
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's chosen attempt (latest by default) and all its attempts; NotFoundError if none."""
    store.metadata.get_run(flow, run_id)
    if not task_id.isdigit():
        raise NotFoundError(f"task id {task_id!r} is not a number; task pathspecs are FLOW/RUN/STEP/TASK_ID")
    rows = [r for r in store.metadata.tasks_of_run(run_id, step) if r["task_id"] == int(task_id)]
    if not rows:
        raise NotFoundError(f"task {flow}/{run_id}/{step}/{task_id} has no finished attempt")
    if attempt is not None:
        pick = [r for r in rows if r["attempt"] == attempt]
        if not pick:
            raise NotFoundError(f"task {flow}/{run_id}/{step}/{task_id} has no attempt {attempt}")
        return pick[-1], rows
    return rows[-1], rows


def add_run_routes(app: Any) -> None:

    render = app.state.render

    def store() -> Any:
        return app.state.store

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request, flow: str = "", status: str = "", user: str = "",
                  tag: list[str] = Query(default=[]), where: list[str] = Query(default=[]),  # noqa: B008
                  since: str = "", page: int = 1) -> HTMLResponse:
        st = store()
        if not st.exists():
            return render(request, "empty.html", title="No store yet")
        f = RunFilter(flow=flow.strip(), status=status.strip(), user=user.strip(),
                      tags=[t for t in (x.strip() for x in tag) if t], where=[w for w in where if w.strip()],
                      since_hours=_float(since, "since"), page=max(1, page))
        if f.status and f.status not in ("running", "succeeded", "failed", "abandoned"):
            raise ParameterError(f"status={f.status!r} is not a run status; use running, succeeded, failed or abandoned")
        rows, total = find_runs_page(st, f)
        pages = max(1, -(-total // PAGE_SIZE))
        from urllib.parse import urlencode

        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]

        def page_url(n: int) -> str | None:
            return "/?" + urlencode([*keep, ("page", str(n))]) if 1 <= n <= pages and n != f.page else None

        return render(request, "runs.html", title="Runs", runs=rows, total=total, f=f, page=f.page, pages=pages,
                      flows=st.metadata.list_flows(), prev_url=page_url(f.page - 1), next_url=page_url(f.page + 1))

    @app.get("/api/runs/status")
    def runs_status(ids: str = "") -> JSONResponse:
        st = store()
        out: dict[str, str] = {}
        for rid in [i for i in ids.split(",") if i.strip().isdigit()][:200]:
            try:
                out[rid] = st.metadata.get_run(st.metadata.get_run_flow(rid), rid)["status"]
            except NotFoundError:
                out[rid] = "missing"
        return JSONResponse(out)

    @app.get("/runs/{flow}/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, flow: str, run_id: str) -> HTMLResponse:
        st = store()
        d = run_detail(st, flow, run_id)
        from ..cards._storage import card_rows
        from ..operate._trigger_lookup import run_trigger

        from ._livelogs import live_tails

        done = {(a["step_name"], a["task_id"], a["attempt"]) for a in d["attempts"]}
        live = {(r["step_name"], r["task_id"]): r for r in [*card_rows(st, run_id), *live_tails(st, run_id)]
                if (r["step_name"], r["task_id"], r["attempt"]) not in done}
        return render(request, "run.html", title=f"{flow}/{run_id}", run=d["run"], steps=d["steps"],
                      dag=dag_svg(d["run"]["graph"] or {}, d["steps"]),
                      gantt=gantt_svg(d["gantt"], d["run"]["created_at"]), attempts=d["attempts"],
                      retried=d["retried"], live_tasks=sorted(live.values(), key=lambda r: r["task_id"]),
                      flow=flow, run_id=run_id, trigger=run_trigger(run_id, st))

    @app.get("/api/runs/{flow}/{run_id}/state")
    def run_state(flow: str, run_id: str) -> JSONResponse:
        st = store()
        run = st.metadata.get_run(flow, run_id)
        from ..cards._storage import card_rows

        n = len(st.metadata.tasks_of_run(run_id))
        cards = sorted(f'{r["step_name"]}/{r["task_id"]}/{r["card_id"]}:{r["key"]}' for r in card_rows(st, run_id))
        return JSONResponse({"status": run["status"], "attempts": n, "cards": cards})

    @app.get("/runs/{flow}/{run_id}/{step}/{task_id}", response_class=HTMLResponse)
    def task_page(request: Request, flow: str, run_id: str, step: str, task_id: str, attempt: int | None = None,
                  q: str = "") -> HTMLResponse:
        st = store()
        from ..cards._read import cards_of_task

        run = st.metadata.get_run(flow, run_id)
        try:
            row, rows = _task_row(st, flow, run_id, step, task_id, attempt)
        except NotFoundError:
            # a task still running has no row yet; it may have refreshed cards or published output
            cards = cards_of_task(st, flow, run_id, step, int(task_id)) if task_id.isdigit() else []
            tails = _live_logs(st, run_id, step, int(task_id)) if task_id.isdigit() else {}
            if not cards and not tails:
                raise
            return render(request, "task.html", title=f"{flow}/{run_id}/{step}/{task_id}", run=run, task=None,
                          attempts=[], artifacts=[], metrics=[], charts=[], cards=cards, logs={}, tails=tails,
                          flow=flow, run_id=run_id, step=step, task_id=task_id, q=q, matches={}, live=True)
        arts = sorted(st.metadata.artifacts_of([row["id"]])[row["id"]].items())
        metrics = st.metadata.metrics_of([], task_row=row["id"])
        history: dict[str, list[tuple[float, float]]] = {}
        for m in metrics:
            pts = history.setdefault(m["name"], [])
            pts.append((float(m["step"]) if m["step"] is not None else float(len(pts)), float(m["value"])))
        from markupsafe import Markup

        charts = [Markup(line_chart_svg([(name, pts)], title=name)) for name, pts in history.items() if len(pts) > 1]
        cards = cards_of_task(st, flow, run_id, step, int(task_id), row["attempt"])
        if not cards and row.get("cloned_from"):
            o = row["cloned_from"].split("/")
            if len(o) == 4 and o[3].isdigit():
                cards = cards_of_task(st, o[0], o[1], o[2], int(o[3]))
        logs: dict[str, dict[str, Any]] = {}
        matches: dict[str, Any] = {}
        for which in ("stdout", "stderr"):
            key = row[f"{which}_key"]
            if key:
                text, nxt, more = log_window(st, key, 0, WINDOW, what=f"{which} of {flow}/{run_id}/{step}/{task_id}")
                logs[which] = {"text": text, "next": nxt, "more": more}
                if q:
                    matches[which] = log_search(st, key, q)
            else:
                logs[which] = {"text": "", "next": 0, "more": False}
        return render(request, "task.html", title=f"{flow}/{run_id}/{step}/{task_id}", run=run, task=row,
                      attempts=rows, artifacts=arts, metrics=metrics, charts=charts, cards=cards, logs=logs,
                      flow=flow, run_id=run_id, step=step, task_id=task_id, q=q, matches=matches, live=False)

    @app.get("/api/live/{flow}/{run_id}/{step}/{task_id}")
    def live_api(flow: str, run_id: str, step: str, task_id: str) -> JSONResponse:
        st = store()
        st.metadata.get_run(flow, run_id)
        if not task_id.isdigit():
            raise NotFoundError(f"task id {task_id!r} is not a number")
        finished = any(r["task_id"] == int(task_id) for r in st.metadata.tasks_of_run(run_id, step))
        return JSONResponse({"finished": finished, "streams": _live_logs(st, run_id, step, int(task_id))})

    @app.get("/runs/{flow}/{run_id}/{step}/{task_id}/logs/{which}")
    def task_log(flow: str, run_id: str, step: str, task_id: str, which: str, offset: int = 0,
                 limit: int = WINDOW, attempt: int | None = None, download: int = 0, q: str = "") -> Response:
        if which not in ("stdout", "stderr"):
            raise NotFoundError(f"log {which!r} does not exist; logs are stdout and stderr")
        st = store()
        row, _ = _task_row(st, flow, run_id, step, task_id, attempt)
        key = row[f"{which}_key"]
        what = f"{which} of {flow}/{run_id}/{step}/{task_id}"
        if download:
            name = f"{flow}-{run_id}-{step}-{task_id}-{which}.txt"
            body = log_stream(st, key, what) if key else iter([b""])
            return StreamingResponse(body, media_type="text/plain; charset=utf-8",
                                     headers={"Content-Disposition": f'attachment; filename="{name}"'})
        if q:
            found, cut = log_search(st, key, q, what) if key else ([], False)
            return JSONResponse({"matches": found, "truncated": cut})
        if not key:
            return JSONResponse({"text": "", "next": 0, "more": False})
        text, nxt, more = log_window(st, key, offset, min(max(limit, 1), 4 * WINDOW), what)
        return JSONResponse({"text": text, "next": nxt, "more": more})

    def _artifact(flow: str, run_id: str, step: str, task_id: str, name: str, attempt: int | None) -> tuple[Any, Any]:
        st = store()
        row, _ = _task_row(st, flow, run_id, step, task_id, attempt)
        refs = st.metadata.artifacts_of([row["id"]])[row["id"]]
        if name not in refs:
            raise NotFoundError(f"task {flow}/{run_id}/{step}/{task_id} has no artifact {name!r}")
        return st, refs[name]

    @app.get("/runs/{flow}/{run_id}/{step}/{task_id}/artifacts/{name}", response_class=HTMLResponse)
    def artifact_preview(request: Request, flow: str, run_id: str, step: str, task_id: str, name: str,
                         attempt: int | None = None, fragment: int = 0) -> HTMLResponse:
        st, ref = _artifact(flow, run_id, step, task_id, name, attempt)
        from ..cards._preview import preview
        from ..cards._render import render_preview

        from markupsafe import Markup

        if ref.size > PREVIEW_LIMIT:
            body = str(Markup('<p class="muted">{}</p>').format(
                f"{ref.type}, {ref.size} bytes: too large to preview here (limit {PREVIEW_LIMIT >> 20} MiB); "
                "use the download link or the client"))
        else:
            value = st.load(ref.key, what=f"artifact {name!r} of {flow}/{run_id}/{step}/{task_id}")
            body = render_preview(preview(value, name=name))
        if fragment:
            return HTMLResponse(body)
        return render(request, "artifact.html", title=f"{name} of {flow}/{run_id}/{step}/{task_id}", ref=ref,
                      name=name, body=Markup(body), flow=flow, run_id=run_id, step=step, task_id=task_id)

    @app.get("/runs/{flow}/{run_id}/{step}/{task_id}/artifacts/{name}/download")
    def artifact_download(flow: str, run_id: str, step: str, task_id: str, name: str,
                          attempt: int | None = None) -> Response:
        st, ref = _artifact(flow, run_id, step, task_id, name, attempt)
        value = st.load(ref.key, what=f"artifact {name!r} of {flow}/{run_id}/{step}/{task_id}")
        base = f"{flow}-{run_id}-{step}-{task_id}-{name}"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Response(bytes(value), media_type="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{base}.bin"'})
        if isinstance(value, str):
            return Response(value.encode(), media_type="text/plain; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{base}.txt"'})
        frame = _as_frame(value)
        if frame is not None:
            buf = io.BytesIO()
            frame.columns = [str(c) for c in frame.columns]
            try:
                frame.to_parquet(buf)
            except ImportError:  # no Parquet engine installed: the same table as CSV
                return Response(frame.to_csv(index=False).encode(), media_type="text/csv; charset=utf-8",
                                headers={"Content-Disposition": f'attachment; filename="{base}.csv"'})
            return Response(buf.getvalue(), media_type="application/vnd.apache.parquet",
                            headers={"Content-Disposition": f'attachment; filename="{base}.parquet"'})
        raise NotFoundError(f"artifact {name!r} is a {ref.type}; only bytes, text and tables (as Parquet) download "
                            "here; read it with the client: Task(pathspec).data." + name)

    @app.get("/api/cards/{flow}/{run_id}/{step}/{task_id}")
    def cards_api(flow: str, run_id: str, step: str, task_id: str) -> JSONResponse:
        st = store()
        st.metadata.get_run(flow, run_id)
        from ..cards._read import cards_of_task

        if not task_id.isdigit():
            raise NotFoundError(f"task id {task_id!r} is not a number")
        cards = cards_of_task(st, flow, run_id, step, int(task_id))
        return JSONResponse([{"id": c.id, "key": c.key, "final": c.final, "updated_at": c.updated_at,
                              "attempt": c.attempt} for c in cards])

    @app.get("/runs/{flow}/{run_id}/{step}/{task_id}/cards/{card_id}")
    def card_page(flow: str, run_id: str, step: str, task_id: str, card_id: str, attempt: int | None = None,
                  download: int = 0) -> Response:
        st = store()
        st.metadata.get_run(flow, run_id)
        from ..cards._read import cards_of_task
        from ._security import CARD_HEADERS

        if not task_id.isdigit():
            raise NotFoundError(f"task id {task_id!r} is not a number")
        cards = [c for c in cards_of_task(st, flow, run_id, step, int(task_id), attempt) if c.id == card_id]
        if not cards:
            raise NotFoundError(f"task {flow}/{run_id}/{step}/{task_id} has no card {card_id!r}")
        headers = dict(CARD_HEADERS)
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{flow}-{run_id}-{step}-{task_id}-{card_id}.html"'
        return HTMLResponse(cards[0].html(), headers=headers)


def _live_logs(store: Any, run_id: str, step: str, task_id: int) -> dict[str, dict[str, Any]]:
    """The published tails of a running task's logs (its latest attempt): stream -> text, size, time."""
    from ._livelogs import live_tails

    rows = live_tails(store, run_id, step, task_id)
    if not rows:
        return {}
    top = max(r["attempt"] for r in rows)
    out = {}
    for r in rows:
        if r["attempt"] == top:
            try:
                data = store.load(r["key"], what=f"live {r['stream']} of task {task_id}")
            except ReelflowError:  # a tail of a dead run, since collected: nothing to show
                continue
            out[r["stream"]] = {"text": bytes(data).decode("utf-8", "replace"), "size": r["size"],
                                "updated_at": r["updated_at"], "attempt": top}
    return out


def _as_frame(value: Any) -> Any:
    mod = type(value).__module__.split(".")[0]
    if mod == "pandas":
        import pandas as pd

        if isinstance(value, pd.Series):
            return value.to_frame()
        if isinstance(value, pd.DataFrame):
            return value
    if mod == "numpy" and getattr(value, "ndim", 0) in (1, 2):
        import pandas as pd

        return pd.DataFrame(value)
    return None
