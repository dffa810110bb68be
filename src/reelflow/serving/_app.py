"""The HTTP model server: FastAPI over a registered recommender, hot-swapping on alias moves.

A background thread polls the registry; when ``NAME@ALIAS`` points at a new
version it loads it off the request path and swaps it in with one reference
assignment, so requests see either the old or the new model, never neither. A
version that fails to load (corrupt blob, foreign object) is logged and the old
one keeps serving. Request bodies are JSON validated by pydantic; nothing from a
request is ever unpickled.
"""

from __future__ import annotations

import gc
import hmac
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import registry
from ..errors import ReelflowError

__all__ = ["create_app", "ModelHolder", "ServeConfig"]

log = logging.getLogger("reelflow.serving")

MAX_K = 1000
MAX_BATCH = 1000

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class ServeConfig:
    spec: str
    token: str | None = None
    poll_interval: float = 1.0


@dataclass(frozen=True)
class _Loaded:
    version: int
    model: Any
    loaded_at: float
    titles: dict[Any, str]


def _loaded(version: int, model: Any) -> _Loaded:
    titles: dict[Any, str] = {}
    meta = getattr(model, "item_meta_", None)
    if meta is not None and "title" in getattr(meta, "columns", ()):
        titles = {k: str(v) for k, v in meta["title"].items()}  # plain dict: no pandas on the request path
    loaded = _Loaded(version, model, time.time(), titles)
    # Long-lived objects (model, imports) leave the GC's scans: no multi-ms pauses in requests.
    gc.collect()
    gc.freeze()
    return loaded


def check_servable(model: Any, spec: str) -> None:
    if not callable(getattr(model, "recommend", None)):
        raise ReelflowError(
            f"model {spec} is a {type(model).__name__}, not a recommender (it has no recommend method); "
            "register a fitted reelflow.recs model"
        )


class ModelHolder:
    """The model being served and the poller that swaps in new versions of its alias."""

    def __init__(self, spec: str, poll_interval: float = 1.0) -> None:
        self.spec = spec
        self.name, self.alias, _ = registry.parse_spec(spec)
        self.poll_interval = poll_interval
        mv = registry.get(spec)
        model = mv.load()
        check_servable(model, spec)
        self.current = _loaded(mv.version, model)
        self.last_error: str | None = None
        self._failed: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.alias is None or self.poll_interval <= 0:
            return  # a pinned version never changes
        self._thread = threading.Thread(target=self._poll, name="reelflow-model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the poller must survive anything
                log.error("polling %s failed: %s", self.spec, exc)

    def refresh(self) -> bool:
        """Swap in the alias's version if it moved; True when a swap happened."""
        if self.alias is not None:  # the cheap check first: requests share this process's GIL
            v = registry.alias_version(self.name, self.alias)
            if v is None or v == self.current.version:
                return False
        mv = registry.get(self.spec)
        if mv.version == self.current.version:
            return False
        if time.time() - self._failed.get(mv.version, -1e9) < 30.0:
            return False  # retry a broken version only now and then
        try:
            model = mv.load()
            check_servable(model, f"{self.name}/{mv.version}")
        except Exception as exc:  # noqa: BLE001 - keep serving the old version
            self._failed[mv.version] = time.time()
            self.last_error = f"version {mv.version} failed to load: {exc}"
            log.error("%s: %s; still serving version %s", self.spec, self.last_error, self.current.version)
            return False
        self.current = _loaded(mv.version, model)  # one atomic reference swap
        self.last_error = None
        log.warning("%s: now serving version %s", self.spec, mv.version)
        return True


UserId = int | str


class RecommendRequest(BaseModel):
    """Either ``user_id`` or ``user_ids`` (a batch of at most 1000)."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId | None = None
    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    k: int = Field(default=10, ge=1, le=MAX_K)
    exclude_seen: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.user_id is None) == (self.user_ids is None):
            raise ValueError("give exactly one of user_id (one user) or user_ids (a batch)")
        return self


def _coerce(model: Any, users: list[UserId]) -> list[Any]:
    known = getattr(model, "_user_pos", {})
    out: list[Any] = []
    for u in users:
        if u not in known and isinstance(u, str) and u.lstrip("-").isdigit() and int(u) in known:
            out.append(int(u))
        else:
            out.append(u)
    return out


def _items(titles: dict[Any, str], ids: Any, scores: Any) -> list[dict[str, Any]]:
    out = []
    for i, sc in zip(ids.tolist(), scores.tolist()):
        if math.isinf(sc):  # no eligible item left for this user
            break
        t = titles.get(i)
        out.append({"item_id": i, "score": sc, "title": t} if t is not None else {"item_id": i, "score": sc})
    return out


class _Metrics:
    """Prometheus request counts and latency histograms per route and status."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("reelflow_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "reelflow_request_seconds", "Request latency", ["route", "method", "status"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.version = Gauge("reelflow_model_version", "Model version being served", ["model"], registry=self.registry)

    def wrap(self, app: ASGIApp, token: str | None) -> ASGIApp:
        expected = f"Bearer {token}".encode() if token else None

        async def middleware(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = [500]

            async def send_wrapper(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            if expected is not None:
                got = dict(scope.get("headers") or ()).get(b"authorization", b"")
                if not hmac.compare_digest(got, expected):
                    resp = JSONResponse({"detail": "missing or wrong token: send Authorization: Bearer <token>"},
                                        status_code=401)
                    await resp(scope, receive, send_wrapper)
                    self._observe(scope, 401, start)
                    return
            try:
                await app(scope, receive, send_wrapper)
            finally:
                self._observe(scope, status[0], start)

        return middleware

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        labels = (path, scope.get("method", ""), str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - start)


def create_app(config: ServeConfig, holder: ModelHolder | None = None) -> Any:
    """The ASGI app serving ``config.spec`` (raises before serving if it cannot load)."""
    holder = holder or ModelHolder(config.spec, config.poll_interval)
    metrics = _Metrics()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        holder.start()
        yield
        holder.stop()

    app = FastAPI(title="reelflow model server", version="1", lifespan=lifespan,
                  description=f"Serves {config.spec}; hot-swaps when the alias moves.")
    app.state.holder = holder

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Any, exc: RequestValidationError) -> JSONResponse:
        # Echo where and why, not the raw input: bytes that are not UTF-8 would break
        # FastAPI's own encoder (a 500 instead of a 422).
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/v1/models/{name}/recommend")
    async def recommend(name: str, req: RecommendRequest) -> JSONResponse:
        """Top-k items for one user (``user_id``) or a batch (``user_ids``); unknown users get
        the model's popularity fallback."""
        cur = holder.current  # read once: a swap mid-request cannot mix versions
        if name != holder.name:
            raise HTTPException(404, f"model {name!r} is not served here; this server serves {holder.name!r}")
        model = cur.model
        n_items = len(model.item_ids_)
        if req.k > n_items:
            raise HTTPException(422, f"k={req.k} exceeds the catalogue ({n_items} items)")
        users = [req.user_id] if req.user_ids is None else list(req.user_ids)
        ids, scores = model.recommend(_coerce(model, users), n=req.k, exclude_seen=req.exclude_seen)  # type: ignore[arg-type]
        if req.user_ids is None:
            return JSONResponse({"model": holder.name, "version": cur.version, "user_id": req.user_id,
                                 "items": _items(cur.titles, ids[0], scores[0])})
        results = [{"user_id": u, "items": _items(cur.titles, i, s)} for u, i, s in zip(users, ids, scores)]
        return JSONResponse({"model": holder.name, "version": cur.version, "results": results})

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """What is loaded: name, version, alias, when it was loaded, the last load error."""
        cur = holder.current
        return {"models": [{"name": holder.name, "version": cur.version, "alias": holder.alias, "spec": holder.spec,
                            "loaded_at": cur.loaded_at, "last_error": holder.last_error}]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", "version": holder.current.version}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.version.labels(holder.name).set(holder.current.version)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    wrapped = metrics.wrap(app, config.token)
    wrapped.fastapi = app  # type: ignore[attr-defined]
    return wrapped


def app_from_env() -> Any:
    """uvicorn factory for ``--workers N``: each worker process loads the model itself."""
    import os

    return create_app(ServeConfig(
        spec=os.environ["REELFLOW_SERVE_SPEC"],
        token=os.environ.get("REELFLOW_SERVE_TOKEN") or None,
        poll_interval=float(os.environ.get("REELFLOW_SERVE_POLL", "1.0")),
    ))
