"""Starting the server: checks first (so a bad spec exits before binding), then uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys

from ..errors import ParameterError

__all__ = ["serve", "is_loopback", "setup_process"]


def setup_process(access_log: bool = False) -> None:
    """Set up a server process (the parent, or each uvicorn worker).

    Logs go to stderr: load failures at ERROR, hot-swaps at INFO, and with
    ``access_log`` one line per request (logger ``reelflow.serving.access``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("reelflow.serving").setLevel(logging.INFO)
    logging.getLogger("reelflow.serving.access").setLevel(logging.INFO if access_log else logging.WARNING)
    # Scoring threads run Python (building responses); a shorter GIL switch interval lets
    # the event loop thread in sooner, so probes and small requests wait less behind them.
    sys.setswitchinterval(0.001)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def serve(
    spec: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    token: str | None = None,
    poll_interval: float = 1.0,
    log_level: str = "warning",
    access_log: bool = False,
    generate_queue: int = 16,
) -> None:
    """Serve ``spec`` (``NAME@ALIAS`` or ``NAME/VERSION``) over HTTP until interrupted.

    ``token`` (default: env ``REELFLOW_SERVE_TOKEN``) makes every route but
    ``/healthz`` require ``Authorization: Bearer <token>``; ``access_log`` logs one
    line per request on stderr. ``generate_queue``: for a generation model, how many
    jobs may wait per server process (more are answered 429). Each server process writes a heartbeat row (what it
    serves, where) to the store every ``REELFLOW_SERVE_HEARTBEAT`` seconds (default
    10; 0: off), which the UI's model page shows.
    """
    import uvicorn

    from ._app import ModelHolder, ServeConfig, create_app

    token = token or os.environ.get("REELFLOW_SERVE_TOKEN") or None
    if not is_loopback(host) and not token:
        raise ParameterError(
            f"--host {host} would expose the model beyond this machine; pass --token (or set "
            "REELFLOW_SERVE_TOKEN) so that every request must carry Authorization: Bearer <token>"
        )
    if workers < 1:
        raise ParameterError("--workers must be at least 1")
    if generate_queue < 1:
        raise ParameterError(f"--generate-queue {generate_queue}: give at least 1 (jobs that may wait)")
    from ._heartbeat import heartbeat_interval

    beat = heartbeat_interval()  # a bad REELFLOW_SERVE_HEARTBEAT is an error before anything starts
    setup_process(access_log)
    config = ServeConfig(spec=spec, token=token, poll_interval=poll_interval, access_log=access_log, freeze_gc=True,
                         heartbeat=beat if port else 0.0, host=host, port=port, max_generate_queue=generate_queue)
    holder = ModelHolder(spec, poll_interval, freeze_gc=True)  # raises NotFoundError / CorruptArtifactError before binding
    print(f"serving {spec} (version {holder.current.version}) on http://{host}:{port}", flush=True)
    if workers == 1:
        uvicorn.run(create_app(config, holder), host=host, port=port, log_level=log_level, access_log=False)
        return
    # Each worker is a fresh interpreter that rebuilds its app from the environment.
    os.environ.update({"REELFLOW_SERVE_SPEC": spec, "REELFLOW_SERVE_POLL": str(poll_interval),
                       "REELFLOW_SERVE_ACCESS_LOG": "1" if access_log else "0",
                       "REELFLOW_SERVE_HEARTBEAT_S": str(config.heartbeat), "REELFLOW_SERVE_HOST": host,
                       "REELFLOW_SERVE_PORT": str(port), "REELFLOW_SERVE_GENERATE_QUEUE": str(generate_queue)})
    if token:
        os.environ["REELFLOW_SERVE_TOKEN"] = token
    uvicorn.run("reelflow.serving._app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False)

