"""Task logs: streamed to the store in chunks as they arrive, never held whole in memory.

A log up to :data:`CHUNK` bytes is one blob of ``bytes`` (as always); a longer one is
a series of chunk blobs plus a small manifest blob, and the task row points at the
manifest. Readers go through :func:`iter_log` / :func:`read_log`, which follow both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["LogSink", "iter_log", "read_log", "CHUNK"]

CHUNK = 4 << 20  # bytes buffered before a chunk is written to the store
_TAIL = 64 << 10  # bytes of the end kept in memory for the failure message
_TAG = "reelflow.log-manifest/1"


class LogSink:
    """Collects one stream of one task; memory stays below ``CHUNK + 2 * tail`` bytes."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.size = 0
        self._buf = bytearray()
        self._tail = bytearray()
        self._chunks: list[str] = []

    def __bool__(self) -> bool:
        return self.size > 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        self._buf += data
        self._tail += data
        if len(self._tail) > 2 * _TAIL:
            del self._tail[:-_TAIL]
        if len(self._buf) >= CHUNK:
            self._spill()

    def _spill(self) -> None:
        self._chunks.append(self.store.save(bytes(self._buf)).key)
        self._buf.clear()

    def tail(self) -> bytes:
        """The last few KiB written (for a failure message)."""
        return bytes(self._tail[-_TAIL:])

    def close(self) -> str | None:
        """Store what is left; the key the task row records (None when nothing was written)."""
        if not self.size:
            return None
        if not self._chunks:
            key: str = self.store.save(bytes(self._buf)).key
            self._buf.clear()
            return key
        if self._buf:
            self._spill()
        manifest = {"format": _TAG, "chunks": self._chunks, "size": self.size}
        return str(self.store.save(manifest).key)


def iter_log(store: Any, key: str, what: str = "log") -> Iterator[bytes]:
    """The bytes of the log stored under ``key``, chunk by chunk."""
    data = store.load(key, what=what)
    if isinstance(data, dict) and data.get("format") == _TAG:
        for k in data["chunks"]:
            yield bytes(store.load(k, what=what))
    else:
        yield bytes(data)


def read_log(store: Any, key: str, what: str = "log") -> bytes:
    """The whole log stored under ``key``."""
    return b"".join(iter_log(store, key, what))
