"""The local web UI: ``reelflow ui`` shows runs, graphs, logs, metrics, cards and models.

Server-rendered pages (FastAPI and Jinja2, autoescaped) with a little JavaScript
for live parts; every asset ships inside the package (no CDN, no Node at install).
It reads through the store's metadata API, so the same UI serves the local SQLite
store and a team's PostgreSQL/S3 store::

    reelflow ui                       # http://127.0.0.1:8080/
    REELFLOW_UI_TOKEN=... reelflow ui --host 0.0.0.0

Needs ``reelflow[ui]`` (FastAPI, uvicorn, Jinja2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "serve_ui", "NAV"]

if TYPE_CHECKING:
    from ._app import NAV, create_app
    from ._serve import serve_ui


def __getattr__(name: str) -> Any:
    if name in ("create_app", "NAV"):
        from . import _app

        return getattr(_app, name)
    if name == "serve_ui":
        from ._serve import serve_ui

        return serve_ui
    raise AttributeError(f"module 'reelflow.ui' has no attribute {name!r}")
