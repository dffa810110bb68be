"""``@checkpoint``: a step saves its progress as it goes; a retry or a resumed run picks it up.

A checkpoint is a folder (``current.checkpoint.directory`` by default) stored in the
run's content-addressed store: each file is a blob (a file that did not change since
the last save is stored once), and a JSON manifest blob lists them. A row of the
``checkpoints`` table (in the metadata database, created on first use like the
``cards`` table, so no schema migration) names the manifest together with the run,
the task's key (step, foreach path, visit) and the attempt, written as soon as
``save()`` returns, so a worker killed right after still leaves it behind.

When a step decorated with ``@checkpoint`` starts, the latest checkpoint of *the same
task* is restored into ``current.checkpoint.directory`` (``is_loaded`` is then True):

- ``load_policy="fresh"`` (default): from an earlier attempt of this task in this run
  (``@retry``), else from the run this one resumes (and the run that one resumed, ...);
- ``"eager"``: as ``fresh``, else the newest checkpoint of the same task in any earlier
  run of the flow (a new run continues the last training);
- ``"none"``: nothing is loaded; ``load()`` still works.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import ReelflowError
from . import _tmp

if TYPE_CHECKING:
    from ..store import Store
    from ._task import TaskSpec

__all__ = ["Checkpointer", "checkpoint_rows", "checkpoint_blob_keys", "LOAD_POLICIES"]

LOAD_POLICIES = ("fresh", "eager", "none")
DEFAULT_NAME = "mfchckpt"  # Metaflow's checkpoint extension's default name
_MAX_ORIGIN_HOPS = 20
_table: Any = None
_created: set[str] = set()
_lock = threading.Lock()


def _checkpoints_table() -> Any:
    global _table
    if _table is None:
        from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

        _table = Table(
            "checkpoints",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("flow_name", String(255), nullable=False),
            Column("run_id", Integer, nullable=False),
            Column("step_name", String(255), nullable=False),
            Column("task_id", Integer, nullable=False),
            Column("task_key", String(512), nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("name", String(255), nullable=False),
            Column("key", String(64), nullable=False),  # the manifest blob
            Column("file_keys", Text, nullable=False),  # JSON list of the file blobs (kept by `reelflow gc`)
            Column("size", BigInteger, nullable=False),  # bytes of the files
            Column("metadata", Text, nullable=False),  # the user's JSON metadata
            Column("created_at", Float, nullable=False),
        )
        Index("ix_checkpoints_task", _table.c.flow_name, _table.c.step_name, _table.c.task_key)
        Index("ix_checkpoints_run", _table.c.run_id)
    return _table


def _ensure(store: Store) -> Any:
    t = _checkpoints_table()
    url = store.metadata.url
    if url not in _created:
        with _lock:
            if url not in _created:
                with store.metadata.write(lock="checkpoints-schema") as conn:
                    t.create(conn, checkfirst=True)
                _created.add(url)
    return t


def _select(store: Store, *where: Any) -> list[dict[str, Any]]:
    """Rows matching ``where``, newest first; none while the table does not exist yet."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from ..cards._storage import _missing_table

    t = _checkpoints_table()
    try:
        with store.metadata.engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.id.desc())).mappings()
            return [_reference(dict(r)) for r in rows]
    except DBAPIError as exc:
        if _missing_table(exc):
            return []
        raise


def _reference(row: dict[str, Any]) -> dict[str, Any]:
    """What ``save()``/``list()`` hand the user: a plain dict ``load()`` accepts."""
    return {
        "id": row["id"],
        "name": row["name"],
        "key": row["key"],
        "size": row["size"],
        "metadata": json.loads(row["metadata"]),
        "pathspec": f"{row['flow_name']}/{row['run_id']}/{row['step_name']}/{row['task_id']}",
        "attempt": row["attempt"],
        "created_at": row["created_at"],
    }


def checkpoint_rows(store: Store, flow_name: str, run_id: str) -> list[dict[str, Any]]:
    """Every checkpoint saved in run ``flow_name/run_id``, newest first."""
    t = _checkpoints_table()
    return _select(store, t.c.flow_name == flow_name, t.c.run_id == int(run_id))


def checkpoint_blob_keys(metadata: Any) -> set[str]:
    """Blob keys checkpoint rows refer to (manifests and files), for the garbage collector."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from ..cards._storage import _missing_table

    t = _checkpoints_table()
    keys: set[str] = set()
    try:
        with metadata.engine.connect() as conn:
            for key, files in conn.execute(select(t.c.key, t.c.file_keys)):
                keys.add(key)
                keys.update(json.loads(files))
    except DBAPIError as exc:
        if not _missing_table(exc):
            raise
    return keys


def _files_of(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    out = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            if p.is_file() and not p.is_symlink():
                out.append((p.relative_to(path).as_posix(), p))
    return out


def _safe_rel(rel: Any) -> str:
    parts = PurePosixPath(str(rel)).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ReelflowError(f"checkpoint manifest names an unsafe path {rel!r}; refusing to restore it")
    return str(rel)


class Checkpointer:
    """``current.checkpoint`` inside a step decorated with ``@checkpoint``."""

    def __init__(self, store: Store, spec: TaskSpec, *, load_policy: str = "fresh",
                 temp_dir_root: str | None = None) -> None:
        self._store = store
        self._spec = spec
        self._policy = load_policy
        if temp_dir_root is None:
            # Named like a run's private folder (``_tmp.py``), so what a killed worker leaves is
            # removed by the next run once this process is gone.
            root, prefix = str(store.config.home / "tmp"), f"run-{_tmp._host()}-{os.getpid()}-checkpoint-"
        else:
            root, prefix = temp_dir_root, "checkpoint-"
        try:
            os.makedirs(root, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        except OSError as exc:
            raise ReelflowError(f"@checkpoint: cannot create the checkpoint folder in {root}: "
                                f"{exc.strerror or exc}; set @checkpoint(temp_dir_root=...) to a writable folder") from None
        self._loaded: dict[str, Any] | None = None

    # -- what the step sees -----------------------------------------------------------
    @property
    def directory(self) -> str:
        """A private folder of this attempt: write checkpoint files here, then ``save()``.
        It holds the restored checkpoint when one was loaded."""
        return str(self._dir)

    @property
    def is_loaded(self) -> bool:
        """Whether a checkpoint was restored into :attr:`directory` when the step started."""
        return self._loaded is not None

    @property
    def info(self) -> dict[str, Any] | None:
        """The reference of the restored checkpoint (``name``, ``metadata``, ``pathspec``, ``attempt``), or None."""
        return self._loaded

    def save(self, path: str | os.PathLike[str] | None = None, *, metadata: dict[str, Any] | None = None,
             name: str = DEFAULT_NAME, latest: bool = True) -> dict[str, Any]:
        """Store the files under ``path`` (default :attr:`directory`) as this task's newest checkpoint.

        ``metadata`` is any JSON-serialisable dict (e.g. ``{"epoch": 3}``), returned with the
        reference. Returns a reference dict that :meth:`load` accepts. ``latest`` is accepted
        for Metaflow's signature; every save becomes the latest.
        """
        from sqlalchemy import insert

        src = Path(path) if path is not None else self._dir
        if not src.exists():
            raise ReelflowError(f"current.checkpoint.save(): {src} does not exist; write the checkpoint files first")
        try:
            meta_json = json.dumps(metadata or {}, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ReelflowError(f"current.checkpoint.save(metadata=...): not JSON-serialisable ({exc}); "
                                "pass a dict of numbers, strings, lists and dicts") from None
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ReelflowError(f"current.checkpoint.save(name={name!r}): name is a non-empty string of at most 255 characters")
        files = []
        total = 0
        for rel, p in _files_of(src):
            ref = self._store.save(p.read_bytes())
            files.append([rel, ref.key, ref.size, stat.S_IMODE(p.stat().st_mode)])
            total += ref.size
        manifest = self._store.save(json.dumps({"files": files, "name": name}, sort_keys=True).encode())
        s = self._spec
        t = _ensure(self._store)
        now = time.time()
        with self._store.metadata.write() as conn:  # blobs are made durable before the row names them
            inserted = conn.execute(insert(t).values(
                flow_name=s.flow_name, run_id=int(s.run_id), step_name=s.step_name, task_id=int(s.task_id),
                task_key=s.task_key, attempt=int(s.attempt), name=name, key=manifest.key,
                file_keys=json.dumps(sorted({f[1] for f in files})), size=total, metadata=meta_json, created_at=now,
            )).inserted_primary_key
            row_id = inserted[0] if inserted is not None else None
        return {"id": row_id, "name": name, "key": manifest.key, "size": total, "metadata": json.loads(meta_json),
                "pathspec": f"{s.flow_name}/{s.run_id}/{s.step_name}/{s.task_id}", "attempt": s.attempt,
                "created_at": now}

    def load(self, reference: dict[str, Any] | str | None = None,
             path: str | os.PathLike[str] | None = None) -> str:
        """Restore a checkpoint into ``path`` (default :attr:`directory`); return the folder.

        ``reference`` is what :meth:`save` or :meth:`list` returned, or its ``key``; None loads
        the latest checkpoint of this task (see the load policies in the module docstring).
        """
        if reference is None:
            reference = self._latest(eager=True)
            if reference is None:
                raise ReelflowError(f"current.checkpoint.load(): task {self._spec.pathspec} has no checkpoint "
                                    "to load; save one first with current.checkpoint.save()")
        key = reference if isinstance(reference, str) else reference.get("key") if isinstance(reference, dict) else None
        if not isinstance(key, str):
            raise ReelflowError(f"current.checkpoint.load({reference!r}): pass what save() or list() returned")
        dest = Path(path) if path is not None else self._dir
        self._restore(key, dest)
        return str(dest)

    def list(self, name: str | None = None, *, within_task: bool = True) -> builtins.list[dict[str, Any]]:
        """Checkpoints of this task (this run and the runs it resumes), newest first; with
        ``within_task=False`` those of this step in every run of the flow."""
        t = _checkpoints_table()
        s = self._spec
        where = [t.c.flow_name == s.flow_name, t.c.step_name == s.step_name]
        if within_task:
            where += [t.c.task_key == s.task_key, t.c.run_id.in_([int(r) for r in self._lineage()])]
        if name is not None:
            where.append(t.c.name == name)
        return _select(self._store, *where)

    # -- the runtime's side -------------------------------------------------------------
    def restore_latest(self) -> None:
        """Called before the step runs: restore this task's latest checkpoint per the load policy."""
        if self._policy == "none":
            return
        ref = self._latest(eager=self._policy == "eager")
        if ref is not None:
            self._restore(ref["key"], self._dir)
            self._loaded = ref

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _lineage(self) -> builtins.list[str]:
        """This run, then the run it resumes, then the one that one resumed, ..."""
        runs = [self._spec.run_id]
        origin = self._spec.origin_run_id
        md = self._store.metadata
        while origin and origin not in runs and len(runs) < _MAX_ORIGIN_HOPS:
            runs.append(origin)
            try:
                origin = md.get_run(self._spec.flow_name, origin).get("origin_run_id")
            except ReelflowError:
                break
        return runs

    def _latest(self, *, eager: bool) -> dict[str, Any] | None:
        t = _checkpoints_table()
        s = self._spec
        same_task = [t.c.flow_name == s.flow_name, t.c.step_name == s.step_name, t.c.task_key == s.task_key]
        for run in self._lineage():  # nearest run first
            rows = _select(self._store, *same_task, t.c.run_id == int(run))
            if rows:
                return rows[0]
        if eager:
            rows = _select(self._store, *same_task)
            if rows:
                return rows[0]
        return None

    def _restore(self, key: str, dest: Path) -> None:
        raw = self._store.load(key, what="checkpoint manifest")
        doc = json.loads(bytes(raw).decode())
        dest.mkdir(parents=True, exist_ok=True)
        for rel, fkey, _size, mode in doc["files"]:
            target = dest / _safe_rel(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self._store.load(fkey, what=f"checkpoint file {rel}")
            tmp = target.with_name(target.name + ".rf-tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
