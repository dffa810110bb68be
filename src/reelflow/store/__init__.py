"""The store: content-addressed artifact blobs plus metadata, the single source of truth.

Layout of the default local store (``REELFLOW_HOME``, default ``./.reelflow``)::

    .reelflow/
      metadata.db          SQLite (WAL): runs, tasks, artifacts; see _schema.py
      blobs/ab/abcdef...   one file per distinct artifact value or log, named by
                           its xxh3-128 content key; see _serialize.py
      blobs/quarantine/    blobs a read found corrupt, moved aside so the next
                           put rewrites them; see _blobs.py
      blobs/.swept         when partial writes (``.tmp-*``) were last swept

Readers (the client, ``runs``/``models`` commands, ``serve``) open the store with
``get_store(create=False)``: a missing store is a :class:`~reelflow.errors.NotFoundError`
naming where it looked, never an empty store created as a side effect.
``reelflow gc`` removes what crashed writers and deleted runs left (see _gc.py).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..config import Config, load_config
from ..errors import CorruptArtifactError, NotFoundError
from ._blobs import SWEEP_GRACE, BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from ._serialize import decode, encode
from ._types import METRIC_NAME_MAX, METRIC_STEP_MAX, METRIC_STEP_MIN, ArtifactRef, TaskRecord

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
    "METRIC_NAME_MAX",
    "METRIC_STEP_MIN",
    "METRIC_STEP_MAX",
]


class Store:
    """Blobs and metadata opened from one :class:`~reelflow.config.Config`."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.blobs: BlobStore = open_blob_store(self.config.store_url, dict(self.config.store_options))
        self._metadata: MetadataStore | None = None
        self._md_handle: MetadataStore | None = None

    def _metadata_handle(self) -> MetadataStore:
        """The metadata store object, not yet connected (connecting creates the schema)."""
        if self._md_handle is None:
            from ._metadata import MetadataStore

            url: Any = self.config.metadata_url
            if self.config.metadata_path is not None:
                url = self.config.metadata_path  # a path: the fast SQLite route (no SQLAlchemy on a run's path)
            self._md_handle = MetadataStore(url, stale_after=self.config.heartbeat_timeout)
            self._md_handle.before_write = self.blobs.flush  # blobs durable before rows name them
        return self._md_handle

    @property
    def metadata(self) -> MetadataStore:
        """The metadata database (nothing connects before first use: workers that only
        write blobs never open it; the default SQLite store serves a run's statements
        without importing SQLAlchemy, see ``_fastsqlite.py``)."""
        if self._metadata is None:
            with _lock:
                if self._metadata is None:
                    self._metadata = self._metadata_handle()
        return self._metadata

    def preflight(self) -> None:
        """Open the store for writing (creating it if need be) and check that blobs can be written.

        The runtime calls this before it records a run, so a store that cannot be used
        (read-only, unreachable, no credentials) is one clear error and not a failed task.
        At most once an hour it also removes partial blob files (``.tmp-*``) that
        killed writers left more than an hour ago (``reelflow gc`` does the rest).
        """
        self.blobs.check()
        self.metadata.open()
        if isinstance(self.blobs, LocalBlobStore):
            self.blobs.sweep_partial_writes(older_than=SWEEP_GRACE, every=SWEEP_GRACE)

    def exists(self) -> bool:
        """Whether a store (its metadata database) is already there; creates nothing."""
        with _lock:
            return self._metadata_handle().exists()

    def describe(self) -> str:
        """Where metadata and blobs live, for messages: ``metadata: URL; blobs: URL`` (passwords masked)."""
        with _lock:
            md = self._metadata_handle().url
        return f"metadata: {md}; blobs: {self.blobs.url}"

    def missing(self) -> NotFoundError:
        """The error for a read of a store that does not exist."""
        home = "" if self.config.metadata_path is None else f" at {self.config.home} (REELFLOW_HOME)"
        return NotFoundError(
            f"no reelflow store{home}: nothing was found in {self.describe()}; run a flow first, "
            "or set REELFLOW_HOME (or REELFLOW_METADATA_URL) to the store you mean"
        )

    def save(self, obj: Any) -> ArtifactRef:
        """Encode and store ``obj``; identical values share one blob."""
        blob = encode(obj)
        self.blobs.put(blob.key, blob.chunks)
        return ArtifactRef(blob.key, blob.raw_size, _type_name(obj))

    def load(self, key: str, what: str = "artifact") -> Any:
        """Read, verify and decode the blob ``key``; ``what`` names it in errors.

        A blob that fails its check is moved aside (quarantined), so the next run
        that produces the same value writes it afresh.
        """
        data = self.blobs.get(key)
        try:
            return decode(data, key, what)
        except CorruptArtifactError as exc:
            moved = self.blobs.quarantine(key, data)
            if moved is None:
                raise
            raise CorruptArtifactError(f"{exc} (the damaged file was moved to {moved})") from None


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_stores: dict[tuple[Any, ...], Store] = {}
_lock = threading.RLock()


def get_store(config: Config | None = None, *, create: bool = True) -> Store:
    """The process-wide :class:`Store` for ``config`` (default: the environment's).

    With ``create=False`` (readers: the client, ``runs list``, ``models``, ``serve``)
    a store that does not exist yet raises :class:`NotFoundError` naming where it
    looked, instead of being created empty.
    """
    config = config or load_config()
    k = (config.metadata_url, config.metadata_path, config.store_url, config.store_options, config.heartbeat_timeout)
    st = _stores.get(k)
    if st is None:
        with _lock:
            st = _stores.get(k)
            if st is None:
                st = _stores[k] = Store(config)
    if not create and not st.exists():
        raise st.missing()
    return st


def __getattr__(name: str) -> Any:
    if name == "MetadataStore":
        from ._metadata import MetadataStore

        return MetadataStore
    raise AttributeError(f"module 'reelflow.store' has no attribute {name!r}")
