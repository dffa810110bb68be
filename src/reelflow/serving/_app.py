"""The HTTP model server: FastAPI over a registered recommender, hot-swapping on alias moves.

The event loop parses, checks and routes, and answers only tiny requests itself
(one user of a modest catalogue: less work than a thread hop). Scoring and building
the response body of anything larger run in worker threads, at most
``max_concurrent`` at once, so ``/healthz`` and ``/readyz`` answer while heavy
requests run. Limits, each answered with a status that names it:

- body size: ``max_body_bytes`` (413, before parsing; see ``_guard``);
- one request's work: users x k at most ``max_work`` (422);
- requests waiting for a scoring thread: at most ``max_pending`` (503 + Retry-After).

Request bodies are JSON validated by pydantic; nothing from a request is ever
unpickled. User ids are parsed strictly against the model's id type (``_ids``);
a user the model does not know gets its popularity list, and the response says so
(``"fallback": "popularity"``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from ._guard import Guard, RequestMetrics
from ._holder import Loaded, ModelHolder
from ._ids import BadUserId, parse_user_id

__all__ = ["create_app", "ModelHolder", "ServeConfig", "MAX_K", "MAX_BATCH", "MAX_WORK", "MAX_BODY_BYTES"]

MAX_K = 1000
MAX_BATCH = 1000
MAX_WORK = 100_000  # users x k in one request: 1000 users x k=100, or 100 users x k=1000
MAX_BODY_BYTES = 1 << 20  # 1000 ids of 256 characters fit with room to spare
MAX_ID_LENGTH = 256
# A request this small (users x catalogue scores, and at most 1000 items back) is answered on
# the event loop: it takes well under a millisecond, less than the hop to a thread would.
INLINE_CELLS = 50_000
INLINE_ITEMS = 1000

T = TypeVar("T")


def _default_concurrency() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServeConfig:
    """How one server runs; the limits are per server process (per worker)."""

    spec: str
    token: str | None = None
    poll_interval: float = 1.0
    access_log: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    max_work: int = MAX_WORK
    max_concurrent: int = 0  # scoring threads; 0: min(4, CPUs)
    max_pending: int = 64
    inline_cells: int = INLINE_CELLS  # users x catalogue at most this (and k x users <= 1000): score on the loop
    freeze_gc: bool = False  # gc.freeze() after each load: for a dedicated server process only
    max_generate_queue: int = 16  # generation models: jobs waiting at most (429 beyond)
    # log served requests + accept POST /v1/feedback (serving/_feedback.py); REELFLOW_SERVE_FEEDBACK=0 turns it off
    feedback: bool = field(default_factory=lambda: os.environ.get("REELFLOW_SERVE_FEEDBACK", "1") != "0")
    # seconds; a kill -9 loses at most this much of the log (REELFLOW_SERVE_FEEDBACK_FLUSH)
    feedback_flush_interval: float = field(
        default_factory=lambda: float(os.environ.get("REELFLOW_SERVE_FEEDBACK_FLUSH", "1.0")))
    # what this process serves, written to the store every `heartbeat` seconds (serving/_heartbeat.py; the UI
    # shows it); needs the address it listens on. 0: off (an app embedded elsewhere writes nothing)
    heartbeat: float = 0.0
    host: str | None = None
    port: int | None = None


UserId = StrictInt | Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)]


class RecommendRequest(BaseModel):
    """Either ``user_id`` or ``user_ids`` (a batch of at most 1000)."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId | None = None
    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    k: StrictInt = Field(default=10, ge=1, le=MAX_K)
    exclude_seen: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.user_id is None) == (self.user_ids is None):
            raise ValueError("give exactly one of user_id (one user) or user_ids (a batch)")
        return self


class _Scoring:
    """Runs scoring off the event loop: a bounded number of threads, a bounded queue."""

    def __init__(self, max_concurrent: int, max_pending: int) -> None:
        self.max_concurrent = max_concurrent or _default_concurrency()
        self.max_pending = max_pending
        self.pending = 0
        self._limiter: Any = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        import anyio.to_thread

        if self.pending >= self.max_pending:
            raise HTTPException(503, f"the server is busy: {self.pending} requests are already waiting to be "
                                     "scored; retry shortly", headers={"Retry-After": "1"})
        if self._limiter is None:  # created on the event loop that uses it
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self.pending -= 1


def _items(titles: dict[Any, str], ids: Any, scores: Any) -> list[dict[str, Any]]:
    out = []
    for i, sc in zip(ids.tolist(), scores.tolist()):
        if math.isinf(sc):  # no eligible item left for this user
            break
        score = None if math.isnan(sc) else sc
        t = titles.get(i)
        out.append({"item_id": i, "score": score, "title": t} if t is not None else {"item_id": i, "score": score})
    return out


def _answer(name: str, cur: Loaded, raw: list[Any], users: list[Any], k: int, exclude_seen: bool,
            batch: bool) -> tuple[bytes, Any, Any]:
    """Score and encode (in a worker thread: both are heavy for large batches); returns the
    body and the item ids and scores it was made from."""
    ids, scores = cur.model.recommend(users, n=k, exclude_seen=exclude_seen)
    fallbacks = cur.fallbacks(users)
    payload: dict[str, Any] = {"model": name, "version": cur.version}
    if batch:
        payload["results"] = [{"user_id": u, "fallback": f, "items": _items(cur.titles, i, s)}
                              for u, f, i, s in zip(raw, fallbacks, ids, scores)]
    else:
        payload.update(user_id=raw[0], fallback=fallbacks[0], items=_items(cur.titles, ids[0], scores[0]))
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(), ids, scores


class _StateCollector:
    """Prometheus gauges read from the holder at scrape time."""

    def __init__(self, holder: ModelHolder, scoring: _Scoring) -> None:
        self.holder, self.scoring = holder, scoring

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        h = self.holder
        version = GaugeMetricFamily("reelflow_model_version", "Model version being served", labels=["model"])
        version.add_metric([h.name], h.current.version)
        degraded = GaugeMetricFamily(
            "reelflow_model_degraded",
            "1 while the alias names a version that did not load (the previous version keeps serving)",
            labels=["model"])
        degraded.add_metric([h.name], 1.0 if h.degraded else 0.0)
        failures = CounterMetricFamily("reelflow_model_load_failures", "Attempts to load a new version that failed",
                                       labels=["model"])
        failures.add_metric([h.name], h.load_failures)
        pending = GaugeMetricFamily("reelflow_scoring_pending", "Requests scoring or waiting for a scoring thread")
        pending.add_metric([], self.scoring.pending)
        yield from (version, degraded, failures, pending)


def create_app(config: ServeConfig, holder: ModelHolder | None = None) -> Any:
    """The ASGI app serving ``config.spec`` (raises before serving if it cannot load)."""
    from prometheus_client import CollectorRegistry

    holder = holder or ModelHolder(config.spec, config.poll_interval, freeze_gc=config.freeze_gc)
    scoring = _Scoring(config.max_concurrent, config.max_pending)
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    registry.register(_StateCollector(holder, scoring))  # type: ignore[arg-type]

    from contextlib import asynccontextmanager

    feedback: Any = None
    heartbeat: Any = None
    if config.heartbeat > 0 and config.host is not None and config.port is not None:
        from ._heartbeat import Heartbeat

        heartbeat = Heartbeat(holder, host=config.host, port=config.port, interval=config.heartbeat)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        holder.start()
        if feedback is not None:
            feedback.start()
        if heartbeat is not None:
            heartbeat.start()
        if config.freeze_gc:  # what starting imported (the feedback flusher's pyarrow) leaves the GC's scans too
            import gc

            gc.collect()
            gc.freeze()
        yield
        if heartbeat is not None:
            heartbeat.stop()  # removes this server's row
        if feedback is not None:
            feedback.stop()  # flushes what is buffered
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
    async def recommend(name: str, req: RecommendRequest) -> Response:
        """Top-k items for one user (``user_id``) or a batch (``user_ids``). Users the model
        does not know get its popularity list, marked ``"fallback": "popularity"``."""
        cur = holder.current  # read once: a swap mid-request cannot mix versions
        if name != holder.name:
            raise HTTPException(404, f"model {name!r} is not served here; this server serves {holder.name!r}")
        if req.k > cur.n_items:
            raise HTTPException(422, f"k={req.k} exceeds the catalogue ({cur.n_items} items)")
        batch = req.user_ids is not None
        raw: list[Any] = list(req.user_ids) if req.user_ids is not None else [req.user_id]
        if len(raw) * req.k > config.max_work:
            raise HTTPException(422, f"this request asks for {len(raw)} users x k={req.k} = {len(raw) * req.k} "
                                     f"recommendations; one request may ask for at most {config.max_work} "
                                     "(users x k): split the batch or lower k")
        try:
            users = [parse_user_id(u, cur.ids, f"user_ids[{i}]" if batch else "user_id") for i, u in enumerate(raw)]
        except BadUserId as exc:
            raise HTTPException(422, str(exc)) from None
        args = (holder.name, cur, raw, users, req.k, req.exclude_seen, batch)
        if len(users) * cur.n_items <= config.inline_cells and len(users) * req.k <= INLINE_ITEMS:
            body, ids, scores = _answer(*args)
        else:
            body, ids, scores = await scoring.run(_answer, *args)
        if feedback is not None:  # one append; the table is built later, off the request path
            rid = feedback.new_request_id()
            if batch:
                feedback.served(rid, body, batch=True)
            else:
                feedback.served_items(rid, str(raw[0]), ids[0], scores[0], holder.name, cur.version)
            body = b'{"request_id":"' + rid.encode() + b'",' + body[1:]
            return Response(body, media_type="application/json", headers={"X-Request-Id": rid})
        return Response(body, media_type="application/json")

    if config.feedback:
        from ._feedback_api import mount_feedback

        feedback = mount_feedback(app, holder, flush_interval=config.feedback_flush_interval)

    from ._generate import is_generator

    if is_generator(holder.current.model):  # reelflow.generate models: async generation jobs
        from ._generate import mount_generation

        mount_generation(app, holder, max_queue=config.max_generate_queue)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """What is loaded: name, version, alias, when it was loaded, the last load error,
        and which worker process answered."""
        cur = holder.current
        return {"models": [{"name": holder.name, "version": cur.version, "alias": holder.alias, "spec": holder.spec,
                            "loaded_at": cur.loaded_at, "last_error": holder.last_error,
                            "status": "degraded" if holder.degraded else "ready", "pid": os.getpid()}]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. Needs no token."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        """Readiness: ``ready``, or ``degraded`` (HTTP 200 too: the previous version still
        serves) while the alias names a version that failed to load. A generation model's
        server adds its queue: jobs ``waiting`` and ``max_queue``."""
        body = holder.readiness()
        jobs = getattr(app.state, "generation", None)
        if jobs is not None:
            body = {**body, "generation": {"waiting": jobs.waiting, "max_queue": jobs.max_queue}}
        return body

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    wrapped = Guard(app, token=config.token, max_body_bytes=config.max_body_bytes, metrics=metrics,
                    access_log=config.access_log)
    wrapped.fastapi = app  # type: ignore[attr-defined]
    return wrapped


def app_from_env() -> Any:
    """uvicorn factory for ``--workers N``: each worker process loads the model itself."""
    from ._serve import setup_process

    access = os.environ.get("REELFLOW_SERVE_ACCESS_LOG") == "1"
    setup_process(access)
    return create_app(ServeConfig(
        spec=os.environ["REELFLOW_SERVE_SPEC"],
        token=os.environ.get("REELFLOW_SERVE_TOKEN") or None,
        poll_interval=float(os.environ.get("REELFLOW_SERVE_POLL", "1.0")),
        access_log=access,
        freeze_gc=True,
        heartbeat=float(os.environ.get("REELFLOW_SERVE_HEARTBEAT_S", "0")),
        host=os.environ.get("REELFLOW_SERVE_HOST"),
        port=int(os.environ["REELFLOW_SERVE_PORT"]) if os.environ.get("REELFLOW_SERVE_PORT") else None,
        max_generate_queue=int(os.environ.get("REELFLOW_SERVE_GENERATE_QUEUE", "16")),
    ))
