"""``reelflow ui``: start the web UI on 127.0.0.1 (or another host with a token)."""

from __future__ import annotations

import asyncio
import os
import socket

from ..errors import ParameterError, ReelflowError

__all__ = ["serve_ui", "check_bind"]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_bind(host: str, token: str | None) -> str | None:
    """The token to use (argument, else ``REELFLOW_UI_TOKEN``); a non-loopback ``host`` without one is an error."""
    token = token or os.environ.get("REELFLOW_UI_TOKEN") or None
    if host not in LOOPBACK and not token:
        raise ParameterError(
            f"--host {host} exposes the UI beyond this machine; it needs a token: set REELFLOW_UI_TOKEN "
            "(or pass --token), or keep the default --host 127.0.0.1"
        )
    return token


def serve_ui(*, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
    """Serve the UI over the environment's store until interrupted (blocks).

    Parameters
    ----------
    host : str
        Interface to bind; anything but loopback requires ``token``.
    port : int
        TCP port (0 picks a free one; the chosen address is printed).
    token : str, optional
        Required on every request (Bearer header or the login cookie); defaults to
        the ``REELFLOW_UI_TOKEN`` environment variable.
    """
    token = check_bind(host, token)
    from .._extras import require

    require("ui", "reelflow ui", ("fastapi", "uvicorn", "jinja2", "python_multipart"))
    import uvicorn

    from ._app import create_app

    app = create_app(token=token, loopback_only=token is None)
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    addr = sock.getsockname()
    shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]

    async def announce() -> None:  # once uvicorn listens, say where (the port too when --port 0)
        while not server.started:
            await asyncio.sleep(0.05)
        login = "; log in with the token at /login" if token else ""
        print(f"reelflow ui: http://{shown}:{addr[1]}/ ({app.state.store.describe()}){login}", flush=True)

    async def main() -> None:
        task = asyncio.create_task(announce())
        await server.serve(sockets=[sock])
        task.cancel()

    try:
        asyncio.run(main())
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a port in use or an unknown host is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ReelflowError(f"--host {host!r} cannot be resolved ({exc.strerror}); use an address such as 127.0.0.1")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ReelflowError(
            f"the UI cannot listen on {host}:{port}: {exc.strerror}; pick another port with --port "
            "(--port 0 picks a free one)"
        ) from None
    sock.set_inheritable(True)
    return sock
