"""Pages of deployments and schedules: triggers, next fire times, firings, versions, pause/resume."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ._ops_queries import FIRINGS_PAGE, PAGE_SIZE, deployment_detail, deployments_page, recent_firings

__all__ = ["add_deploy_routes"]


def _pages(total: int, size: int) -> int:
    return max(1, -(-total // size))


def add_deploy_routes(app: Any) -> None:
    render = app.state.render
    checked_form = app.state.checked_form

    def store() -> Any:
        return app.state.store

    @app.get("/deployments", response_class=HTMLResponse)
    def deployments(request: Request, q: str = "", page: int = 1) -> HTMLResponse:
        st = store()
        if not st.exists():
            return render(request, "empty.html", title="No store yet")
        page = max(1, page)
        rows, total = deployments_page(st, q=q.strip(), page=page)
        pages = _pages(total, PAGE_SIZE)

        def url(n: int) -> str | None:
            return ("/deployments?" + urlencode([*([("q", q)] if q else []), ("page", str(n))])
                    if 1 <= n <= pages and n != page else None)

        return render(request, "deployments.html", title="Deployments", deployments=rows, total=total, q=q,
                      page=page, pages=pages, prev_url=url(page - 1), next_url=url(page + 1),
                      recent=recent_firings(st) if page == 1 and not q else [])

    @app.get("/deployments/{name}", response_class=HTMLResponse)
    def deployment(request: Request, name: str, page: int = 1, done: str = "") -> HTMLResponse:
        page = max(1, page)
        d = deployment_detail(store(), name, page=page)
        pages = _pages(d["total"], FIRINGS_PAGE)
        base = f"/deployments/{quote(name, safe='')}?page="
        return render(request, "deployment.html", title=f"Deployment {name}", **d, page=page, pages=pages,
                      prev_url=base + str(page - 1) if page > 1 else None,
                      next_url=base + str(page + 1) if page < pages else None,
                      done=done if done in ("paused", "resumed") else "")

    @app.post("/deployments/{name}/{action}")
    async def toggle(request: Request, name: str, action: str) -> Response:
        from ..errors import NotFoundError
        from ..operate._deploy import pause, resume

        await checked_form(request)
        if action not in ("pause", "resume"):
            raise NotFoundError(f"no action {action!r} on deployments; POST .../pause or .../resume")
        (pause if action == "pause" else resume)(name, store=store())
        return RedirectResponse(f"/deployments/{quote(name, safe='')}?done={action}d", status_code=303)
