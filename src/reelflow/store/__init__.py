"""The store: content-addressed artifact blobs plus metadata, the single source of truth.

Layout of the default local store (``REELFLOW_HOME``, default ``./.reelflow``)::

    .reelflow/
      metadata.db          SQLite (WAL): runs, tasks, artifacts; see _schema.py
      blobs/ab/abcdef...   one file per distinct artifact value or log, named by
                           its xxh3-128 content key; see _serialize.py
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..config import Config, load_config
from ._blobs import BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from ._serialize import decode, encode
from ._types import ArtifactRef, TaskRecord

if TYPE_CHECKING:
    from ._metadata import MetadataStore

__all__ = [
    "Store",
    "get_store",
    "BlobStore",
    "LocalBlobStore",
    "FsspecBlobStore",
    "open_blob_store",
    "MetadataStore",
    "ArtifactRef",
    "TaskRecord",
]


class Store:
    """Blobs and metadata opened from one :class:`~reelflow.config.Config`."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.blobs: BlobStore = open_blob_store(self.config.store_url, dict(self.config.store_options))
        self._metadata: MetadataStore | None = None

    @property
    def metadata(self) -> MetadataStore:
        """The metadata database (SQLAlchemy loads on first use: workers that only
        write blobs never import it)."""
        if self._metadata is None:
            with _lock:
                if self._metadata is None:
                    from ._metadata import MetadataStore

                    self._metadata = MetadataStore(self.config.metadata_url)
        return self._metadata

    def save(self, obj: Any) -> ArtifactRef:
        """Encode and store ``obj``; identical values share one blob."""
        blob = encode(obj)
        self.blobs.put(blob.key, blob.chunks)
        return ArtifactRef(blob.key, blob.raw_size, _type_name(obj))

    def load(self, key: str, what: str = "artifact") -> Any:
        """Read, verify and decode the blob ``key``; ``what`` names it in errors."""
        return decode(self.blobs.get(key), key, what)


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_stores: dict[tuple[Any, ...], Store] = {}
_lock = threading.RLock()


def get_store(config: Config | None = None) -> Store:
    """The process-wide :class:`Store` for ``config`` (default: the environment's)."""
    config = config or load_config()
    k = (config.metadata_url, config.store_url, config.store_options)
    st = _stores.get(k)
    if st is None:
        with _lock:
            st = _stores.get(k)
            if st is None:
                st = _stores[k] = Store(config)
    return st


def __getattr__(name: str) -> Any:
    if name == "MetadataStore":
        from ._metadata import MetadataStore

        return MetadataStore
    raise AttributeError(f"module 'reelflow.store' has no attribute {name!r}")
