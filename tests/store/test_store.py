"""The store: encoding, content addressing, corruption, backends and schema versions."""

import numpy as np
import pytest

from reelflow.config import load_config
from reelflow.errors import CorruptArtifactError, NotFoundError, SchemaVersionError
from reelflow.store import FsspecBlobStore, LocalBlobStore, MetadataStore, Store, TaskRecord
from reelflow.store._serialize import decode, encode


@pytest.mark.parametrize(
    "obj",
    [1, "text", None, {"a": [1, 2, (3, 4)]}, b"\x00" * 10_000, np.arange(10), np.zeros((300, 300)),
     np.random.default_rng(0).random(50_000), [np.ones(3), np.ones(5, dtype=np.int8)]],
)
def test_roundtrip(obj):
    blob = encode(obj)
    data = bytearray(b"".join(bytes(c) for c in blob.chunks))  # what blob stores return
    back = decode(data, blob.key)
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(back, obj)
        assert back.flags.writeable
    elif isinstance(obj, list) and obj and isinstance(obj[0], np.ndarray):
        assert all((a == b).all() for a, b in zip(back, obj))
    else:
        assert back == obj


def test_compression_only_where_it_pays():
    zeros = encode(np.zeros(1_000_000))
    assert zeros.stored_size < 0.05 * zeros.raw_size
    noise = encode(np.random.default_rng(0).random(1_000_000))
    assert noise.stored_size <= 1.001 * noise.raw_size + 200


def test_identical_values_share_a_key_and_different_values_do_not():
    assert encode({"a": 1}).key == encode({"a": 1}).key
    assert encode(np.arange(5)).key != encode(np.arange(6)).key
    assert encode(b"ab").key != encode(b"ba").key


def test_corruption_detected():
    blob = encode(np.arange(1000))
    data = bytearray(b"".join(bytes(c) for c in blob.chunks))
    data[len(data) // 2] ^= 1
    with pytest.raises(CorruptArtifactError, match="artifact 'x' .*hash check"):
        decode(data, blob.key, "artifact 'x'")
    with pytest.raises(CorruptArtifactError, match="corrupt"):
        decode(bytes(data[:20]), blob.key)
    with pytest.raises(CorruptArtifactError):
        decode(b"garbage", blob.key)


@pytest.mark.parametrize("backend", ["local", "fsspec"])
def test_blob_store_put_get_dedupe(tmp_path, backend):
    bs = LocalBlobStore(tmp_path / "b") if backend == "local" else FsspecBlobStore(f"memory://{tmp_path.name}")
    assert bs.put("ab" + "0" * 30, [b"hello ", b"world"]) is True
    assert bs.put("ab" + "0" * 30, [b"hello world"]) is False  # content-addressed: written once
    assert bytes(bs.get("ab" + "0" * 30)) == b"hello world"
    assert bs.put("ab" + "0" * 30, [b"hello"]) is True  # the stored blob differs (damaged): rewritten
    assert bytes(bs.get("ab" + "0" * 30)) == b"hello"
    assert bs.exists("ab" + "0" * 30)
    with pytest.raises(NotFoundError, match="missing"):
        bs.get("cd" + "0" * 30)


def test_local_blob_write_leaves_no_temp_files(tmp_path):
    bs = LocalBlobStore(tmp_path)
    bs.put("ef" + "1" * 30, [b"x" * 100])
    assert [p.name for p in (tmp_path / "ef").iterdir()] == ["ef" + "1" * 30]


def test_a_prefix_folder_removed_after_a_put_is_made_again(tmp_path):
    import shutil

    bs = LocalBlobStore(tmp_path)
    assert bs.put("ef" + "1" * 30, [b"one"])
    shutil.rmtree(tmp_path / "ef")  # the store remembers it made "ef"; a put must not trust that blindly
    assert bs.put("ef" + "2" * 30, [b"two"])
    assert bytes(bs.get("ef" + "2" * 30)) == b"two"
    assert [p.name for p in (tmp_path / "ef").iterdir()] == ["ef" + "2" * 30]


def test_already_compressed_bytes_are_stored_as_they_are():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000  # would shrink a lot, but a PNG's payload does not
    blob = encode(png)
    assert blob.stored_size >= blob.raw_size and decode(b"".join(bytes(c) for c in blob.chunks), blob.key) == png
    assert encode(b"\x00" * 5008).stored_size < 1000  # other bytes are still compressed where it pays


def test_store_saves_once(tmp_path):
    st = Store(load_config(tmp_path))
    a = st.save(np.ones(1000))
    b = st.save(np.ones(1000))
    assert a.key == b.key
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one folder, one file
    np.testing.assert_array_equal(st.load(a.key), np.ones(1000))


def test_metadata_roundtrip_and_schema_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    md = MetadataStore(url)
    rid = md.create_run("F", user="u", tags=["b", "a"], params={"x": {"repr": "1"}})
    rec = TaskRecord(step_name="start", task_id=1, attempt=0, status="succeeded", task_key="start[]#0",
                     started_at=1.0, finished_at=2.0)
    from reelflow.store import ArtifactRef

    row = md.record_task(rid, rec, {"x": ArtifactRef("k" * 32, 3, "int")})
    assert md.artifacts_of([row])[row]["x"].size == 3
    md.finish_run(rid, "succeeded")
    run = md.get_run("F", rid)
    assert run["status"] == "succeeded" and run["tags"] == ["a", "b"]
    with pytest.raises(NotFoundError, match="does not exist"):
        md.get_run("F", "999")
    with md._write() as conn:
        conn.exec_driver_sql("UPDATE meta SET value='999' WHERE key='schema_version'")
    md.close()
    with pytest.raises(SchemaVersionError, match="newer than this reelflow"):
        MetadataStore(url).engine


def _record_syscalls(monkeypatch, calls):
    import os
    import stat

    from reelflow.store import _blobs

    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(a: str, b: str) -> None:
        calls.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(_blobs.os, "fsync", fsync)
    monkeypatch.setattr(_blobs.os, "replace", replace)
    real_syncfs = _blobs._syncfs()
    if real_syncfs is not None:
        def syncfs(fd: int) -> int:
            calls.append("syncfs")
            return int(real_syncfs(fd))

        monkeypatch.setattr(_blobs, "_syncfs_fn", syncfs)


@pytest.mark.parametrize("env, durable", [(None, True), ("0", False)])
def test_new_blobs_are_durable_on_flush_without_a_per_blob_fsync(tmp_path, monkeypatch, env, durable):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("syncfs(2) is Linux only")
    if env is None:
        monkeypatch.delenv("REELFLOW_FSYNC", raising=False)
    else:
        monkeypatch.setenv("REELFLOW_FSYNC", env)
    calls: list[str] = []
    _record_syscalls(monkeypatch, calls)
    bs = LocalBlobStore(tmp_path / "b")
    bs.put("ab" + "2" * 30, [b"payload"])
    bs.put("cd" + "2" * 30, [b"other"])
    assert calls == ["rename", "rename"]  # no fsync per blob
    bs.flush()
    assert calls == ["rename", "rename"] + (["syncfs"] if durable else [])  # one flush covers both
    calls.clear()
    assert bs.put("ab" + "2" * 30, [b"payload"]) is False and calls == []  # an identical blob: no write


def test_without_syncfs_each_blob_is_fsynced_file_and_folder_before_it_counts(tmp_path, monkeypatch):
    from reelflow.store import _blobs

    monkeypatch.delenv("REELFLOW_FSYNC", raising=False)
    monkeypatch.setattr(_blobs, "_syncfs_fn", False)  # a platform without syncfs(2)
    calls: list[str] = []
    _record_syscalls(monkeypatch, calls)
    bs = LocalBlobStore(tmp_path / "b")
    bs.put("ab" + "2" * 30, [b"payload"])
    # the data reaches the disk before the name does, and the name before put returns
    assert calls == ["dir", "file", "rename", "dir"]
    bs.flush()
    assert calls == ["dir", "file", "rename", "dir"]  # nothing left to flush


def watch_sql(md: MetadataStore, on_statement) -> None:
    """Call ``on_statement(sql)`` for each statement ``md`` sends, on whichever path serves it
    (the fast sqlite3 route of a store's own file, or SQLAlchemy), commits included."""
    from sqlalchemy import event

    fast = md._fast()
    if fast is not None:
        fast._connection().set_trace_callback(on_statement)
    else:
        event.listen(md.engine, "before_cursor_execute", lambda conn, cur, stmt, *a: on_statement(stmt))
        event.listen(md.engine, "commit", lambda conn: on_statement("COMMIT"))


@pytest.mark.parametrize("route", ["fast", "sqlalchemy"])
def test_blobs_are_flushed_before_the_metadata_that_names_them_commits(tmp_path, monkeypatch, route):
    """The invariant: a committed row never names a blob a power loss could lose."""
    monkeypatch.delenv("REELFLOW_FSYNC", raising=False)
    store = Store(load_config())
    md = store.metadata if route == "fast" else MetadataStore(f"sqlite:///{tmp_path / 'sa.db'}")
    assert (md._fast() is not None) == (route == "fast")
    events: list[str] = []
    real_flush = store.blobs.flush

    def flush() -> None:
        events.append("flush")
        real_flush()

    monkeypatch.setattr(store.blobs, "flush", flush)
    md.before_write = store.blobs.flush  # what Store wires up, pointed at the recording wrapper
    watch_sql(md, lambda sql: events.append("commit") if sql == "COMMIT" else None)
    ref = store.save({"weights": [1, 2, 3]})
    run_id = md.create_run("F", user="u", params={"p": ref.key})
    assert events == ["flush", "commit"]
    events.clear()
    md.record_task(run_id, TaskRecord("start", 1, 0, "succeeded", "k", 1.0, 2.0), {"x": ref})
    assert events == ["flush", "commit"]
    events.clear()
    md.heartbeat(run_id)
    md.finish_run(run_id, "succeeded")
    assert events == ["commit", "commit"]  # rows naming no blob do not pay for a flush


def test_a_run_flushes_its_blobs_before_each_task_record_commits(load_flow, monkeypatch):
    """End to end: every task row (which names artifact and log blobs) commits after a flush
    that follows the last blob write before it."""

    from reelflow.runtime import LocalRuntime
    from reelflow.store import get_store

    monkeypatch.delenv("REELFLOW_FSYNC", raising=False)
    cls = load_flow("""
class Two(FlowSpec):
    @step
    def start(self):
        self.x = list(range(100))
        print("hello")
        self.next(self.end)
    @step
    def end(self):
        self.y = sum(self.x)
""")
    store = get_store()
    events: list[str] = []
    real_put, real_flush = LocalBlobStore.put, LocalBlobStore.flush

    def put(self, key, chunks):  # type: ignore[no-untyped-def]
        new = real_put(self, key, chunks)
        if new:
            events.append("put")
        return new

    def flush(self):  # type: ignore[no-untyped-def]
        events.append("flush")
        real_flush(self)

    monkeypatch.setattr(LocalBlobStore, "put", put)
    monkeypatch.setattr(LocalBlobStore, "flush", flush)
    watch_sql(store.metadata, lambda stmt: events.append("task row") if stmt.startswith('INSERT INTO "tasks"') else None)
    LocalRuntime(cls, quiet=True, inprocess=True).run({})
    assert events.count("task row") == 2 and events.count("put") >= 3
    for i, e in enumerate(events):
        if e == "task row":
            last_put = max(j for j in range(i) if events[j] == "put")
            assert "flush" in events[last_put:i], events
