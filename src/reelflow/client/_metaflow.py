"""Metaflow's entry points of the client: ``Metaflow().flows``, ``get_metadata()``, ``metadata()``."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import load_config
from ..errors import ReelflowError
from ..store import Store, get_store
from ._core import Flow

__all__ = ["Metaflow", "get_metadata", "metadata", "default_metadata"]


class Metaflow:
    """The root of the client: ``Metaflow().flows`` lists every flow with runs in the store."""

    def __init__(self, *, _store: Store | None = None) -> None:
        self._store = _store or get_store(create=False)

    @property
    def flows(self) -> list[Flow]:
        """The flows with at least one run in the current namespace (every flow under
        ``namespace(None)``), by name, as Metaflow."""
        from ._core import get_namespace

        ns = get_namespace()
        md = self._store.metadata
        names = [n for n in sorted(md.list_flows()) if ns is None or md.recent_runs(n, limit=1, tags=(ns,))]
        return [Flow(name, _store=self._store) for name in names]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.flows)

    def __repr__(self) -> str:
        return "Metaflow()"


def get_metadata() -> str:
    """Where the client reads metadata, as Metaflow writes it: ``local@<home>`` for the default
    SQLite file in ``REELFLOW_HOME``, else the metadata database's URL (password hidden)."""
    config = load_config()
    if config.metadata_path is not None:
        return f"local@{config.home}"
    from sqlalchemy.engine import make_url

    return make_url(config.metadata_url).render_as_string(hide_password=True)


def default_metadata() -> str:
    """Go back to the environment's metadata (``REELFLOW_HOME`` / ``REELFLOW_METADATA_URL``)."""
    for k in ("REELFLOW_HOME", "REELFLOW_METADATA_URL"):
        if k in _saved:
            value = _saved.pop(k)
            if value is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = value
    return get_metadata()


_saved: dict[str, str | None] = {}


def metadata(ms: str) -> str:
    """Point the client at another store, as Metaflow's ``metadata("local")`` does; returns
    :func:`get_metadata`.

    ``"local"`` keeps the default home, ``"local@PATH"`` (or a folder) reads the store in
    ``PATH``, and a database URL (``postgresql://...``, ``sqlite:///...``) reads that database.
    """
    kind, _, where = ms.partition("@")
    is_url = "://" in ms and "@" not in ms.split("://", 1)[0]
    if kind == "local" and not where:
        return get_metadata()
    if kind == "local" or (not is_url and not where and Path(ms).is_dir()):
        _saved.setdefault("REELFLOW_HOME", os.environ.get("REELFLOW_HOME"))
        _saved.setdefault("REELFLOW_METADATA_URL", os.environ.get("REELFLOW_METADATA_URL"))
        os.environ["REELFLOW_HOME"] = str(Path(where or ms).expanduser().absolute())
        os.environ.pop("REELFLOW_METADATA_URL", None)
    elif is_url:
        _saved.setdefault("REELFLOW_METADATA_URL", os.environ.get("REELFLOW_METADATA_URL"))
        os.environ["REELFLOW_METADATA_URL"] = ms
    else:
        raise ReelflowError(
            f"metadata({ms!r}): reelflow reads 'local', 'local@PATH' (a store folder) or a database URL "
            "such as 'postgresql://host/db'; Metaflow's metadata service is not used"
        )
    return get_metadata()
