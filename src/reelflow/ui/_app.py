"""The UI's FastAPI application: middleware (token, Host, headers), templates, error pages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._extras import require

require("ui", "reelflow ui", ("fastapi", "uvicorn", "jinja2", "python_multipart"))

from fastapi import FastAPI, Request  # noqa: E402 - after the check that names the extra
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from ..config import load_config  # noqa: E402
from ..errors import NotFoundError, ParameterError, ReelflowError, StoreError
from ..store import Store, get_store
from ._security import CSRF_COOKIE, SECURITY_HEADERS, SESSION_COOKIE, Guard, csrf_ok, new_csrf

__all__ = ["create_app", "NAV"]

HERE = Path(__file__).resolve().parent
#: Top navigation: (label, path).
NAV: list[tuple[str, str]] = [("Runs", "/"), ("Metrics", "/metrics"), ("Models", "/models"),
                              ("Deployments", "/deployments"), ("Review", "/review")]


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _fmt_dur(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.2f}s" if s < 120 else f"{s / 60:.1f} min"


def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["time"] = _fmt_time
    env.filters["size"] = _fmt_size
    env.filters["dur"] = _fmt_dur
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.globals["NAV"] = NAV
    return env


def create_app(store: Store | None = None, *, token: str | None = None, loopback_only: bool = True) -> Any:
    """The UI as an ASGI app over ``store`` (default: the environment's store).

    ``token`` guards every route but ``/login`` and ``/healthz``; ``loopback_only``
    refuses requests whose ``Host`` is not a loopback name (set when no token is used).
    """
    guard = Guard(token, loopback_only=loopback_only and not token)
    app = FastAPI(title="reelflow ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store or get_store(load_config())
    app.state.env = _templates()
    app.state.guard = guard
    app.state.user = app.state.store.config.user

    @app.middleware("http")
    async def security(request: Request, call_next: Any) -> Any:
        if not guard.host_ok(request.headers.get("host")):
            return PlainTextResponse("this UI answers only on 127.0.0.1/localhost; use --token to serve other hosts",
                                     status_code=421)
        path = request.url.path
        if path not in ("/login", "/healthz") and not path.startswith("/static/"):
            if guard.token is not None and request.method == "GET" and "token" in request.query_params:
                if guard.token_ok(request.query_params["token"]):  # a link with ?token=: log in, drop it from the URL
                    resp: Response = RedirectResponse(path, status_code=303)
                    _set_session(resp, guard, request)
                    return resp
            if not guard.authorised(cookie=request.cookies.get(SESSION_COOKIE),
                                    authorization=request.headers.get("authorization")):
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    return RedirectResponse(f"/login?next={quote(path, safe='/')}", status_code=303)
                return JSONResponse({"detail": "this UI needs its token: log in at /login or send "
                                               "Authorization: Bearer TOKEN"}, status_code=401)
        response = await call_next(request)
        if not path.startswith("/static/") and "/cards/" not in path:
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
        if request.cookies.get(CSRF_COOKIE) is None:
            response.set_cookie(CSRF_COOKIE, request.state.csrf if hasattr(request.state, "csrf") else new_csrf(),
                                httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    def _set_session(resp: Response, g: Guard, request: Request) -> None:
        resp.set_cookie(SESSION_COOKIE, g.session_value(), httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")

    def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE)
        if csrf is None:
            csrf = new_csrf()
            request.state.csrf = csrf
        html = app.state.env.get_template(template).render(request=request, csrf_token=csrf, path=request.url.path,
                                                      store_desc=app.state.store.describe(), **ctx)
        return HTMLResponse(html, status_code=status_code)

    app.state.render = render

    async def checked_form(request: Request) -> Any:
        """The POSTed form, after its CSRF token was checked (403 otherwise)."""
        from fastapi import HTTPException

        form = await request.form()
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), str(form.get("csrf_token") or "")):
            raise HTTPException(403, "the form's CSRF token is missing or stale; reload the page and try again")
        return form

    app.state.checked_form = checked_form

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> HTMLResponse:
        return render(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(ParameterError)
    async def bad_input(request: Request, exc: ParameterError) -> HTMLResponse:
        return render(request, "error.html", 400, title="Bad request", message=str(exc))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> HTMLResponse:
        return render(request, "error.html", 503, title="The store cannot be read", message=str(exc))

    @app.exception_handler(ReelflowError)
    async def other_error(request: Request, exc: ReelflowError) -> HTMLResponse:
        return render(request, "error.html", 400, title="Error", message=str(exc))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002
        return render(request, "login.html", next=next if next.startswith("/") else "/", error=None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        nxt = str(form.get("next") or "/")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        if guard.token is None:
            return RedirectResponse(nxt, status_code=303)
        if not guard.token_ok(str(form.get("token") or "")):
            return render(request, "login.html", 401, next=nxt, error="wrong token")
        resp = RedirectResponse(nxt, status_code=303)
        _set_session(resp, guard, request)
        return resp

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from ._routes_deploy import add_deploy_routes
    from ._routes_models import add_model_routes
    from ._routes_review import add_review_routes
    from ._routes_runs import add_run_routes

    add_run_routes(app)
    add_model_routes(app)
    add_deploy_routes(app)  # deployments and schedules (reelflow.operate)
    add_review_routes(app)  # generated images: the review gallery (reelflow.generate)
    return app
