"""Content-addressed blob stores: a local folder (default) or any fsspec URL.

Layout: ``<root>/<key[:2]>/<key>``. A blob is written once (to a temporary name,
then renamed, so a reader never sees half a blob) and never modified; writing a
key that already exists is a no-op, which is what stores identical artifacts once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import NotFoundError, StoreError

__all__ = ["BlobStore", "LocalBlobStore", "FsspecBlobStore", "open_blob_store"]

Chunk = bytes | bytearray | memoryview


class BlobStore(Protocol):
    """What the runtime and client need from a blob backend."""

    url: str

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        """Store ``chunks`` under ``key``; return False when the key already existed."""

    def get(self, key: str) -> bytearray:
        """Return the blob's bytes; raise :class:`NotFoundError` when absent."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""


class LocalBlobStore:
    """Blobs as files under a folder, written atomically (temp file + ``os.replace``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise StoreError(f"cannot write to the blob store at {self.root}: {exc}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                for c in chunks:
                    f.write(c)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return True

    def get(self, key: str) -> bytearray:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                buf = bytearray(size)
                view = memoryview(buf)
                got = 0
                while got < size:
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
                return buf if got == size else buf[:got]
        except FileNotFoundError:
            raise NotFoundError(
                f"blob {key} is missing from {self.root}; the store was moved or pruned"
            ) from None


class FsspecBlobStore:
    """Blobs on any fsspec filesystem (``s3://bucket/prefix``, ``file:///...``)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        self._options = storage_options
        self._pid = -1
        self._fs: Any = None
        self.root = ""
        self.fs  # resolve now, so a bad URL fails early

    @property
    def fs(self) -> Any:
        """The filesystem, opened per process: clients such as s3fs are not fork-safe."""
        if self._pid != os.getpid():
            import fsspec

            self._fs, self.root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self._options)
            self._pid = os.getpid()
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        path = self._path(key)
        if self.fs.exists(path):
            return False
        tmp = f"{self.root}/{key[:2]}/.tmp-{os.getpid()}-{key}"
        self.fs.makedirs(f"{self.root}/{key[:2]}", exist_ok=True)
        with self.fs.open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
        # Object stores make the whole object visible at once; mv keeps local
        # filesystems atomic too.
        self.fs.mv(tmp, path)
        return True

    def get(self, key: str) -> bytearray:
        try:
            return bytearray(self.fs.cat_file(self._path(key)))
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is missing from {self.url}") from None


def open_blob_store(url: str, options: dict[str, Any] | None = None) -> BlobStore:
    """A local folder for plain paths, fsspec (with ``options``) for URLs with a scheme."""
    if "://" in url and not url.startswith("file://"):
        return FsspecBlobStore(url, **(options or {}))
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalBlobStore(url)
