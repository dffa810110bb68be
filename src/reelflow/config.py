"""reelflow's configuration: one explicit, typed object read from the environment.

=========================  ==========================================  =====================
variable                   meaning                                     default
=========================  ==========================================  =====================
``REELFLOW_HOME``          the store root (blobs, SQLite file, logs)   ``./.reelflow``
``REELFLOW_METADATA_URL``  SQLAlchemy URL of the metadata database     SQLite in the home
``REELFLOW_STORE_URL``     where blobs live (folder or fsspec URL)     ``<home>/blobs``
``REELFLOW_STORE_OPTIONS`` JSON of fsspec options for that URL, e.g.   none
                           ``{"endpoint_url": "http://minio:9000"}``
``REELFLOW_USER``          user name recorded on runs                  ``$USER``
``REELFLOW_HEARTBEAT_      seconds without a heartbeat after which a   ``60``
TIMEOUT``                  ``running`` run on another host reads as
                           ``abandoned``
``REELFLOW_FSYNC``         ``0`` skips the blob flush (one syncfs      ``1``
                           before each metadata commit naming blobs;
                           faster; not safe against power loss)
=========================  ==========================================  =====================

The default SQLite URL is built from the home *path* (``Config.metadata_path``), so
a home whose name holds ``?``, ``#``, ``%`` or spaces keeps its database inside it;
``metadata_url`` is then for display only.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoreError

__all__ = ["Config", "load_config"]


@dataclass(frozen=True)
class Config:
    """Where the store lives and who is using it."""

    home: Path
    metadata_url: str  # for display when metadata_path is set
    store_url: str
    user: str
    store_options: tuple[tuple[str, Any], ...] = ()  # fsspec storage options (hashable)
    metadata_path: Path | None = None  # the SQLite file when the metadata lives in the home
    heartbeat_timeout: float = 60.0


def _default_user() -> str:
    try:
        return os.environ.get("REELFLOW_USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def load_config(home: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration from the environment (``home`` overrides ``REELFLOW_HOME``)."""
    root = Path(home or os.environ.get("REELFLOW_HOME") or ".reelflow").absolute()
    metadata_url = os.environ.get("REELFLOW_METADATA_URL")
    metadata_path = None if metadata_url else root / "metadata.db"
    if metadata_path is not None:
        metadata_url = f"sqlite:///{metadata_path}"
    raw_timeout = os.environ.get("REELFLOW_HEARTBEAT_TIMEOUT") or "60"
    try:
        heartbeat_timeout = float(raw_timeout)
        if not heartbeat_timeout > 0:
            raise ValueError
    except ValueError:
        raise StoreError(
            f"REELFLOW_HEARTBEAT_TIMEOUT={raw_timeout!r} is not a positive number of seconds; write e.g. 60"
        ) from None
    store_url = os.environ.get("REELFLOW_STORE_URL") or str(root / "blobs")
    raw = os.environ.get("REELFLOW_STORE_OPTIONS") or "{}"
    try:
        options = json.loads(raw)
        if not isinstance(options, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise StoreError(
            f"REELFLOW_STORE_OPTIONS is not a JSON object ({exc}); write e.g. '{{\"endpoint_url\": \"http://host:9000\"}}'"
        ) from None
    assert metadata_url is not None
    return Config(home=root, metadata_url=metadata_url, store_url=store_url, user=_default_user(),
                  store_options=tuple(sorted(options.items())), metadata_path=metadata_path,
                  heartbeat_timeout=heartbeat_timeout)
