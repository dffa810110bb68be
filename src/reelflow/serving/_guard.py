"""The ASGI layer in front of the app: token check, body size limit, metrics, access log.

It runs before FastAPI parses anything, so a request without the token or with an
oversized body costs no parsing and no memory beyond the limit:

- ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235); a request
  with two Authorization headers is a 400, one without the right token a 401.
  ``/healthz`` stays open so that liveness probes need no secret.
- A body over the limit is a 413: at once when ``Content-Length`` says so, else
  as soon as the bytes read (chunked bodies included) pass the limit. At most the
  limit is ever held in memory.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["Guard", "RequestMetrics", "OPEN_PATHS"]

access_log = logging.getLogger("reelflow.serving.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})  # answered without the token (probes)


class RequestMetrics:
    """Prometheus request counts and latency histograms per route and status."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("reelflow_requests", "HTTP requests", ["route", "method", "status"], registry=registry)
        self.latency = Histogram(
            "reelflow_request_seconds", "Request latency", ["route", "method", "status"], registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        # (route, method, status) -> its counter and histogram children: labels() takes a lock and
        # builds keys on every call (~7 us a request); routes, methods and statuses are few.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        key = (path, scope.get("method", ""), status)
        pair = self._children.get(key)
        if pair is None:
            labels = (key[0], key[1], str(status))
            pair = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        pair[0].inc()
        pair[1].observe(seconds)


class _Reject(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


class Guard:
    """ASGI middleware: authentication, body size limit, request metrics, access log."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int, metrics: RequestMetrics,
                 access_log: bool = False) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            try:
                self._authenticate(scope)
                receive = await self._limit_body(scope, receive)
            except _Reject as r:
                resp = JSONResponse({"detail": r.detail}, status_code=r.status, headers=r.headers)
                await resp(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.observe(scope, status[0], elapsed)
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                access_log.info('%s:%s "%s %s" %d %.1fms', client[0], client[1], scope.get("method", ""),
                                scope.get("path", ""), status[0], elapsed * 1000)

    def _authenticate(self, scope: Scope) -> None:
        if self.token is None or scope.get("path") in OPEN_PATHS:
            return
        # ASGI servers lower-case header names; the same header twice arrives twice.
        values = [v for k, v in scope.get("headers") or () if k.lower() == b"authorization"]
        if len(values) > 1:
            raise _Reject(400, f"the request has {len(values)} Authorization headers; send exactly one: "
                               "Authorization: Bearer <token>")
        challenge = {"WWW-Authenticate": "Bearer"}
        if not values:
            raise _Reject(401, "missing token: send Authorization: Bearer <token>", challenge)
        scheme, _, credentials = values[0].strip().partition(b" ")
        if scheme.lower() != b"bearer":
            raise _Reject(401, "the Authorization header must use the Bearer scheme: Authorization: Bearer <token>",
                          challenge)
        if not hmac.compare_digest(credentials.strip(), self.token):
            raise _Reject(401, "wrong token: send Authorization: Bearer <token> with the server's token", challenge)

    async def _limit_body(self, scope: Scope, receive: Receive) -> Receive:
        """Read the body (at most the limit) before the app does; replay it to the app."""
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        limit = self.max_body_bytes
        too_big = _Reject(413, f"the request body is over the {_size(limit)} limit; send smaller batches "
                               "(at most 1000 user ids per request)")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise _Reject(400, "Content-Length is not a number") from None
            if declared > limit:
                raise too_big
            if declared == 0:
                return receive
        elif b"transfer-encoding" not in headers:
            return receive  # no body
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                first = message

                async def gone() -> Message:
                    return first

                return gone
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise too_big
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return whole
            return await receive()

        return replay
