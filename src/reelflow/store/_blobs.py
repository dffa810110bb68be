"""Content-addressed blob stores: a local folder (default) or any fsspec URL.

Layout: ``<root>/<key[:2]>/<key>``. A blob is written to a temporary name
(``.tmp-*``) and renamed, so a reader never sees half a blob under its key.

Durability is ordered, not per file: **a blob is durable before any committed
metadata references it.** On Linux a put does not ``fsync`` at all; instead the
store calls :meth:`LocalBlobStore.flush` -- one ``syncfs(2)`` of the blob folder's
filesystem, which covers every process's writes (forked workers included) -- right
before each metadata write transaction that can reference blobs (task records, run
creation, cards, model versions; see ``MetadataStore.write``). One flush per task
record costs about what one ``fsync`` did, where a task used to pay two or three
per new blob. A power loss can then only leave blobs nothing references yet
(removed by ``reelflow gc``) or a damaged file under a key that is not yet
referenced -- which the next put of that value rewrites, since a put that collides
compares bytes (below). Where ``syncfs`` is missing (macOS, other platforms) a
put falls back to ``fsync`` of the file before the rename and of the folder after.

Writing a key that already exists stores nothing new, which is what keeps
identical artifacts once -- but a stored blob can be damaged afterwards (disk
errors, a stray edit). So a put that collides compares the stored bytes with the
new ones and rewrites the blob when they differ, and a read that finds a blob
corrupt moves it to ``<root>/quarantine/``: the next run producing that value
heals the store instead of tripping over the damaged file forever.
"""

from __future__ import annotations

import errno
import itertools
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..errors import NotFoundError, StoreError

__all__ = ["BlobStore", "LocalBlobStore", "FsspecBlobStore", "open_blob_store", "BlobInfo"]

Chunk = bytes | bytearray | memoryview
QUARANTINE = "quarantine"
SWEEP_GRACE = 3600.0  # a partial write this old has no live writer: writes take seconds
_SWEPT = ".swept"  # its mtime is when partial writes were last swept
_CMP_WINDOW = 1 << 22
_TMP_SEQ = itertools.count()  # names of partial files, with the pid


class BlobInfo(NamedTuple):
    """A file in a blob store, as the garbage collector sees it."""

    kind: str  # "blob", "tmp" (a writer's partial file) or "quarantine"
    path: str
    size: int
    mtime: float


class BlobStore(Protocol):
    """What the runtime and client need from a blob backend."""

    url: str

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        """Store ``chunks`` under ``key``; return False when an identical blob was already there."""

    def get(self, key: str) -> bytearray:
        """Return the blob's bytes; raise :class:`NotFoundError` when absent."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    def quarantine(self, key: str, seen: bytes | bytearray | memoryview) -> str | None:
        """Move blob ``key`` aside if it still holds the damaged bytes ``seen``; return where."""

    def files(self) -> Iterator[BlobInfo]:
        """Every blob, temporary file and quarantined file (for the garbage collector)."""

    def remove(self, path: str) -> None:
        """Delete one file listed by :meth:`files`."""

    def mtime(self, path: str) -> float | None:
        """The file's modification time now (None when it is gone)."""

    def check(self) -> None:
        """Raise a one-line :class:`StoreError` when the store cannot be reached or written."""

    def flush(self) -> None:
        """Make every blob put so far durable (called before metadata that references them commits)."""


def _os_error(exc: OSError, what: str, where: str | os.PathLike[str]) -> StoreError:
    """One line naming the path, the cause and the fix for a failed blob write or read."""
    fix = {
        errno.ENOSPC: "free disk space there (or point REELFLOW_HOME / REELFLOW_STORE_URL elsewhere) and run again",
        errno.EDQUOT: "free space in your disk quota there and run again",
        errno.EROFS: "the filesystem is read-only; point REELFLOW_HOME / REELFLOW_STORE_URL at a writable folder",
        errno.EACCES: "make it writable for this user, or point REELFLOW_HOME / REELFLOW_STORE_URL elsewhere",
        errno.EPERM: "make it writable for this user, or point REELFLOW_HOME / REELFLOW_STORE_URL elsewhere",
    }.get(exc.errno or 0, "check that the folder exists and is writable")
    return StoreError(f"cannot {what} the blob store at {where}: {exc.strerror or exc}; {fix}")


_syncfs_fn: Any = None  # libc's syncfs once looked up; False where there is none


def _syncfs() -> Any:
    """libc ``syncfs`` (Linux), or None where the platform has none."""
    global _syncfs_fn
    if _syncfs_fn is None:
        _syncfs_fn = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).syncfs
                fn.argtypes = [ctypes.c_int]
                fn.restype = ctypes.c_int
                _syncfs_fn = fn
            except (OSError, AttributeError):
                pass
    return _syncfs_fn or None


def _ctypes_errno() -> int:
    """The errno of the last ctypes call (``syncfs``)."""
    import ctypes

    return ctypes.get_errno()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs as files under a folder, written atomically (temp file, ``os.replace``).

    Durable on :meth:`flush` (one ``syncfs``), or per put where ``syncfs`` is missing
    (see the module docstring). ``durable=False`` (or ``REELFLOW_FSYNC=0``) skips both,
    for scratch stores where a power loss does not matter: a blob damaged that way is
    still caught on read and healed by the next put.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool | None = None) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.durable = os.environ.get("REELFLOW_FSYNC", "1") != "0" if durable is None else durable
        self._dirs: set[str] = set()  # prefix folders this process made or found
        self._root = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, "create", self.root) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise _os_error(OSError(errno.EACCES, "Permission denied"), "write to", self.root)

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        folder = f"{self._root}{os.sep}{key[:2]}"  # strings, not Paths: a put is a hot path
        path = f"{folder}{os.sep}{key}"
        if _same_file(path, chunks):
            try:
                os.utime(path)  # fresh again: the garbage collector's grace period starts over
            except OSError:
                pass
            return False
        eager = self.durable and _syncfs() is None  # no batched flush here: fsync per blob
        fd, tmp = self._create_tmp(folder, key[:2], eager)
        try:
            try:
                for c in chunks:
                    view = memoryview(c).cast("B")
                    while view:
                        view = view[os.write(fd, view):]
                if eager:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if eager:
                _fsync_dir(Path(folder))
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise _os_error(exc, "write to", self.root) from None
            raise
        return True

    def _create_tmp(self, folder: str, prefix: str, eager: bool) -> tuple[int, str]:
        """Open a new partial file ``.tmp-PID-N`` in ``folder`` (created when missing).

        Cheaper than ``mkstemp`` (no random names) and a prefix folder is checked once
        per process: a blob write is then one create, one write and one rename, what a
        plain file write costs. Names are unique per process (pid, counter); a clash with
        a dead writer's leftover only moves to the next number.
        """
        checked = False
        for _ in range(100):
            try:
                if prefix not in self._dirs:
                    new_dir = not os.path.isdir(folder)
                    os.makedirs(folder, exist_ok=True)
                    if new_dir and eager:
                        _fsync_dir(self.root)
                    self._dirs.add(prefix)
                    checked = True
                tmp = f"{folder}{os.sep}.tmp-{os.getpid()}-{next(_TMP_SEQ)}"
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
            except FileExistsError:
                continue
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and not checked:
                    self._dirs.discard(prefix)  # the folder went away since: make it again, once
                    continue
                raise _os_error(exc, "write to", self.root) from None
        raise _os_error(FileExistsError(errno.EEXIST, "File exists"), "write to", self.root)

    def flush(self) -> None:
        """Make every blob written to this store so far durable, by any process.

        One ``syncfs(2)`` of the folder's filesystem on Linux (a no-op elsewhere, where
        each put already synced its blob, and when ``durable`` is off). The metadata
        store calls it before a transaction that may reference blobs commits.
        """
        if not self.durable:
            return
        fn = _syncfs()
        if fn is None:
            return
        try:
            fd = os.open(self.root, os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing was ever written here
        except OSError as exc:
            raise _os_error(exc, "flush", self.root) from None
        try:
            if fn(fd) != 0:
                code = _ctypes_errno()
                raise _os_error(OSError(code, os.strerror(code)), "flush", self.root)
        finally:
            os.close(fd)

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
        except OSError as exc:
            raise _os_error(exc, "read from", self.root) from None

    def quarantine(self, key: str, seen: bytes | bytearray | memoryview) -> str | None:
        path = self._path(key)
        if not _same_file(path, [seen]):
            return None  # gone, or already rewritten by another process
        dest = self.root / QUARANTINE / f"{key}.{time.time_ns()}"
        try:
            dest.parent.mkdir(exist_ok=True)
            os.replace(path, dest)
        except OSError:
            return None  # a read-only store keeps the file; the error still reports it
        return str(dest)

    def files(self) -> Iterator[BlobInfo]:
        try:
            tops = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for top in tops:
            if not top.is_dir(follow_symlinks=False):
                continue
            quarantined = top.name == QUARANTINE
            if not quarantined and len(top.name) != 2:
                continue
            for e in os.scandir(top.path):
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed or removed meanwhile
                kind = "quarantine" if quarantined else "tmp" if e.name.startswith(".tmp-") else "blob"
                yield BlobInfo(kind, e.path, st.st_size, st.st_mtime)

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, "delete from", self.root) from None

    def mtime(self, path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None

    def sweep_partial_writes(self, *, older_than: float = SWEEP_GRACE, every: float = 0.0) -> int:
        """Remove ``.tmp-*`` files older than ``older_than`` seconds (what killed writers left);
        skip the scan when the last one was less than ``every`` seconds ago. Return how many went."""
        marker = self.root / _SWEPT
        now = time.time()
        try:
            if every and now - marker.stat().st_mtime < every:
                return 0
            marker.touch()
        except FileNotFoundError:
            try:
                marker.touch()
            except OSError:
                return 0
        except OSError:
            return 0  # read-only: nothing to sweep that we could remove
        removed = 0
        for f in self.files():
            if f.kind == "tmp" and f.mtime < now - older_than:
                try:
                    os.unlink(f.path)
                    removed += 1
                except OSError:
                    pass
        return removed


def _same_file(path: str | Path, chunks: Sequence[Chunk]) -> bool:
    """Whether the file at ``path`` holds exactly the bytes of ``chunks`` (size first, then bytes)."""
    try:
        f = open(path, "rb", buffering=0)
    except OSError:
        return False
    with f:
        if os.fstat(f.fileno()).st_size != sum(len(c) for c in chunks):
            return False
        for c in chunks:
            view = memoryview(c).cast("B")
            for off in range(0, len(view), _CMP_WINDOW):
                want = view[off : off + _CMP_WINDOW]
                have = bytearray(len(want))  # bytearray == memoryview is a memcmp; memoryview == x is not
                if f.readinto(have) != len(want) or have != want:
                    return False
        return True


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

            try:
                self._fs, self.root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self._options)
            except (ImportError, ValueError, TypeError) as exc:
                raise StoreError(
                    f"REELFLOW_STORE_URL {self.url!r} cannot be opened: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}; check the URL's scheme, install its "
                    "fsspec driver (e.g. s3fs for s3://) and check REELFLOW_STORE_OPTIONS"
                ) from None
            self._pid = os.getpid()
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}"

    def _error(self, exc: Exception, what: str) -> StoreError:
        text = (str(exc).strip().splitlines() or [""])[0]
        return StoreError(
            f"cannot {what} the blob store at {self.url}: {type(exc).__name__}: {text}; check its credentials "
            "(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or REELFLOW_STORE_OPTIONS) and that it is reachable"
        )

    def check(self) -> None:
        try:
            self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            pass  # an empty prefix: writes create it
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "reach") from None

    def flush(self) -> None:
        """Nothing to do: an object store holds a blob durably once its upload returns."""

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(key)))
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "read from") from None

    def put(self, key: str, chunks: Sequence[Chunk]) -> bool:
        path = self._path(key)
        try:
            if self.fs.exists(path):
                size = sum(len(c) for c in chunks)
                # Object stores cannot be read cheaply in place: the size catches truncation,
                # and a read that finds damage quarantines the blob so the next put rewrites it.
                if self.fs.size(path) == size:
                    return False
            tmp = f"{self.root}/{key[:2]}/.tmp-{os.getpid()}-{key}"
            self.fs.makedirs(f"{self.root}/{key[:2]}", exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                for c in chunks:
                    f.write(c)
            # Object stores make the whole object visible at once; mv keeps local
            # filesystems atomic too.
            self.fs.mv(tmp, path)
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "write to") from None
        return True

    def get(self, key: str) -> bytearray:
        try:
            return bytearray(self.fs.cat_file(self._path(key)))
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is missing from {self.url}") from None
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "read from") from None

    def quarantine(self, key: str, seen: bytes | bytearray | memoryview) -> str | None:
        path = self._path(key)
        try:
            if bytes(self.fs.cat_file(path)) != bytes(seen):
                return None
            dest = f"{self.root}/{QUARANTINE}/{key}.{time.time_ns()}"
            self.fs.makedirs(f"{self.root}/{QUARANTINE}", exist_ok=True)
            self.fs.mv(path, dest)
        except Exception:
            return None
        return dest

    def files(self) -> Iterator[BlobInfo]:
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, "list") from None
        prefix = self.root.rstrip("/") + "/"
        for path, info in found.items():
            bits = (path[len(prefix):] if path.startswith(prefix) else path).split("/")
            if len(bits) != 2:  # blobs are <2 hex>/<key>; deeper paths (feedback tables) are not blobs
                continue
            parent, name = bits
            if parent != QUARANTINE and len(parent) != 2:
                continue
            kind = "quarantine" if parent == QUARANTINE else "tmp" if name.startswith(".tmp-") else "blob"
            yield BlobInfo(kind, path, int(info.get("size") or 0), _fs_mtime(info))

    def remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error(exc, "delete from") from None

    def mtime(self, path: str) -> float | None:
        try:
            return _fs_mtime(self.fs.info(path))
        except Exception:
            return None


def _fs_mtime(info: dict[str, Any]) -> float:
    for k in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(k)
        if v is None:
            continue
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
        try:
            return float(v)
        except (TypeError, ValueError):
            continue
    return time.time()  # unknown age: treat as new, so the garbage collector leaves it


def open_blob_store(url: str, options: dict[str, Any] | None = None) -> BlobStore:
    """A local folder for plain paths, fsspec (with ``options``) for URLs with a scheme."""
    if "://" in url and not url.startswith("file://"):
        return FsspecBlobStore(url, **(options or {}))
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalBlobStore(url)
