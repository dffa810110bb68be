"""``reelflow ui``: start the web UI on 127.0.0.1 (or another host with a token)."""

from __future__ import annotations

import os

from ..errors import ParameterError

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
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def announce() -> None:  # print the bound address once uvicorn listens (port 0 included)
        import asyncio

        while not server.started:
            await asyncio.sleep(0.05)
        for srv in getattr(server, "servers", []):
            for sock in srv.sockets:
                addr = sock.getsockname()
                shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
                print(f"reelflow ui: http://{shown}:{addr[1]}/ ({app.state.store.describe()})", flush=True)
                return

    import asyncio

    async def main() -> None:
        task = asyncio.create_task(announce())
        await server.serve()
        task.cancel()

    asyncio.run(main())
