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
=========================  ==========================================  =====================
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
    metadata_url: str
    store_url: str
    user: str
    store_options: tuple[tuple[str, Any], ...] = ()  # fsspec storage options (hashable)


def _default_user() -> str:
    try:
        return os.environ.get("REELFLOW_USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def load_config(home: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration from the environment (``home`` overrides ``REELFLOW_HOME``)."""
    root = Path(home or os.environ.get("REELFLOW_HOME") or ".reelflow").absolute()
    metadata_url = os.environ.get("REELFLOW_METADATA_URL") or f"sqlite:///{root / 'metadata.db'}"
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
    return Config(home=root, metadata_url=metadata_url, store_url=store_url, user=_default_user(),
                  store_options=tuple(sorted(options.items())))
