"""The fast SQLite route of the default store (issue #16): the same rows and answers as
SQLAlchemy's, one schema, no SQLAlchemy import on a run's, a resume's or a client read's path."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reelflow.errors import SchemaVersionError
from reelflow.store import ArtifactRef, MetadataStore, TaskRecord
from reelflow.store import _sqlite_columns
from reelflow.store._schema import SCHEMA_VERSION


def test_the_fast_routes_column_list_is_generated_from_the_schema():
    with open(_sqlite_columns.__file__, encoding="utf-8") as f:
        assert f.read() == _sqlite_columns.render(), (
            "src/reelflow/store/_sqlite_columns.py is out of date with _schema.py; "
            "run: python -m reelflow.store._sqlite_columns")
    assert _sqlite_columns.SCHEMA_VERSION == SCHEMA_VERSION


@pytest.fixture
def both(tmp_path):
    """The same SQLite file through the fast route and through SQLAlchemy."""
    path = tmp_path / "m.db"
    sa_md = MetadataStore(f"sqlite:///{path}")
    sa_md.open()  # SQLAlchemy creates the schema
    fast = MetadataStore(path)
    assert fast._fast() is not None and sa_md._fast() is None
    yield fast, sa_md
    fast.close()
    sa_md.close()


def _task(step: str, task_id: int, **kw) -> TaskRecord:
    now = time.time()
    return TaskRecord(step_name=step, task_id=task_id, attempt=kw.pop("attempt", 0), status=kw.pop("status", "succeeded"),
                      task_key=f"{step}/{task_id}", started_at=now, finished_at=now + 1, **kw)


def test_both_routes_write_and_read_the_same_rows(both):
    fast, sa_md = both
    now = time.time()
    ids = []
    for i, md in enumerate([fast, sa_md, fast, sa_md]):
        rid = md.create_run("F" if i < 3 else "G", user="u", tags=["b", "a_%"], system_tags=["user:u"],
                            graph={"start": {"next": ["end"]}}, params={"alpha": {"key": "k", "repr": "1"}},
                            origin_run_id="1" if i else None)
        ids.append(rid)
        md.record_task(rid, _task("start", 1, metrics=[("loss", 0.5, 1, now), ("nan", math.nan, None, now)],
                                  foreach_stack=[[0, 2]], input_paths=["F/1/start/1"], resources={"cpu": 1},
                                  result={"transition": "end"}, stdout_key="s" * 32),
                       {"x": ArtifactRef("k" * 32, 10, "int"), "y": ArtifactRef("j" * 32, 2**40, "bytes")})
        md.record_tasks(rid, [(_task("end", 2, exception="boom", status="failed"), {}),
                              (_task("end", 3, attempt=1, cloned_from="F/1/end/2"), {"z": ArtifactRef("z" * 32, 1, "str")})])
        md.heartbeat(rid)
    fast.set_tags(ids[0], ["c", "b"])
    fast.finish_run(ids[0], "succeeded")
    sa_md.finish_run(ids[1], "failed", reason="SIGTERM")
    assert len(set(ids)) == 4

    def answers(md: MetadataStore) -> list:
        out = [md.list_runs(), md.list_runs("F"), md.get_run("F", ids[1]), md.get_run_flow(ids[3]),
               md.has_flow("F"), md.has_flow("nope")]
        for kw in ({}, {"statuses": ["succeeded"]}, {"statuses": ["running", "failed"], "limit": 5},
                   {"tags": ["c"], "limit": 3}, {"tags": ["a_%"], "limit": 5}, {"tags": ["a"]}, {"tags": ["C"]}):
            out.append(md.recent_runs("F", **kw))
        out.append(md.recent_runs(limit=10))
        for rid in ids:
            tasks = md.tasks_of_run(rid)
            out += [tasks, md.tasks_of_run(rid, "end"), md.artifacts_of([t["id"] for t in tasks]),
                    md.metrics_of([], task_row=tasks[0]["id"])]
        out.append(md.metrics_of(ids))
        return out

    a, b = answers(fast), answers(sa_md)
    assert repr(a) == repr(b)  # repr: NaN metric values compare equal as text
    assert [r["run_id"] for r in a[0]] == ids[::-1]
    assert a[2]["status"] == "failed" and a[2]["status_reason"] == "SIGTERM" and a[2]["tags"] == ["a_%", "b"]
    assert [r["run_id"] for r in a[7]] == [ids[0]] and [r["run_id"] for r in a[9]] == [ids[0]]
    assert [r["run_id"] for r in a[10]] == [ids[2], ids[1]]
    assert a[11] == [] and a[12] == []  # whole elements, exact case (SQLite's LIKE alone ignores case)
    with pytest.raises(Exception, match="does not exist"):
        fast.get_run("F", ids[3])


def test_a_run_a_resume_and_a_client_read_import_no_sqlalchemy(write_flow, tmp_path):
    flow = write_flow(textwrap.dedent("""
        import os
        from reelflow import FlowSpec, step

        class Three(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.next(self.mid)

            @step
            def mid(self):
                if os.environ.get("FAIL") == "1":
                    raise RuntimeError("planned")
                self.next(self.end)

            @step
            def end(self):
                self.y = self.x + 1

        if __name__ == "__main__":
            Three()
    """))

    def run(*args: str, fail: bool = False) -> str:
        env = {**os.environ, "FAIL": "1" if fail else "0"}
        p = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, cwd=flow.parent,
                           capture_output=True, text=True, timeout=300)
        assert (p.returncode != 0) == fail, p.stderr[-3000:]
        return p.stderr

    first = run(str(flow), "run", fail=True)  # creates the store (SQLAlchemy builds the schema)
    assert "sqlalchemy" in first
    assert "sqlalchemy" not in run(str(flow), "resume")
    assert "sqlalchemy" not in run(str(flow), "run")
    read = run("-c", "from reelflow import Flow; r = Flow('Three').latest_run; assert r.data.y == 2, r")
    assert "sqlalchemy" not in read


def test_concurrent_writers_on_both_routes_get_distinct_run_ids(tmp_path):
    path = tmp_path / "m.db"
    MetadataStore(path).open()
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from reelflow.store import MetadataStore
        md = MetadataStore(Path(sys.argv[1]) if sys.argv[2] == "fast" else "sqlite:///" + sys.argv[1])
        print(" ".join(md.create_run("F", user="u") for _ in range(30)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), route], stdout=subprocess.PIPE, text=True)
             for route in ("fast", "fast", "fast", "sqlalchemy")]
    try:
        outs = [p.communicate(timeout=300)[0].split() for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(p.returncode == 0 for p in procs)
    ids = [i for out in outs for i in out]
    assert len(ids) == 120 and len(set(ids)) == 120


def test_an_older_store_is_migrated_and_a_newer_one_refused_before_the_fast_route_opens(tmp_path):
    path = tmp_path / "m.db"
    sa_md = MetadataStore(f"sqlite:///{path}")
    rid = sa_md.create_run("F", user="u")
    with sa_md.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_runs_flow_status")
        conn.exec_driver_sql("UPDATE meta SET value='3' WHERE key='schema_version'")
    fast = MetadataStore(path)
    assert [r["run_id"] for r in fast.recent_runs("F")] == [rid]
    db = fast._fast()
    assert db is not None and db.schema_version() == SCHEMA_VERSION
    with db.read() as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'ix_runs_flow_status'").fetchone()
    fast.close()
    with sa_md.write() as conn:
        conn.exec_driver_sql(f"UPDATE meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'")
    sa_md.close()
    with pytest.raises(SchemaVersionError, match="newer than this reelflow understands"):
        MetadataStore(path).create_run("F", user="u")


def test_a_forked_child_writes_through_its_own_connection(tmp_path):
    md = MetadataStore(tmp_path / "m.db")
    first = md.create_run("F", user="u")
    pid = os.fork()
    if pid == 0:  # the child: a fresh connection, the parent's left alone
        try:
            md.heartbeat(first)
            os._exit(0 if int(md.create_run("F", user="u")) == int(first) + 1 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r["run_id"] for r in md.list_runs("F")] == [str(int(first) + 1), first]
    md.close()


def test_a_store_file_that_cannot_be_opened_is_one_clear_error(tmp_path):
    bad = tmp_path / "m.db"
    bad.write_bytes(b"this is not a database" * 100)
    from reelflow.errors import StoreError

    with pytest.raises(StoreError, match=r"the metadata database at sqlite:///.*m\.db failed: file is not a database"):
        MetadataStore(Path(bad)).create_run("F", user="u")


def test_a_fast_route_behind_the_schema_steps_aside_for_sqlalchemy(tmp_path, monkeypatch):
    """Should _sqlite_columns.py lag _schema.py, the store stays correct: SQLAlchemy serves it all."""
    from reelflow.store import _fastsqlite

    path = tmp_path / "m.db"
    MetadataStore(path).open()
    monkeypatch.setattr(_fastsqlite, "SCHEMA_VERSION", SCHEMA_VERSION - 1)
    md = MetadataStore(path)
    rid = md.create_run("F", user="u")
    assert md._fast() is None and md.get_run("F", rid)["status"] == "running"
    md.close()
