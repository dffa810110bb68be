"""reelflow gc: partial writes, unreferenced and quarantined blobs go; everything a row refers to stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelflow import Flow, namespace
from reelflow.cli import main
from reelflow.runtime import LocalRuntime
from reelflow.store import TaskRecord, get_store

SRC = """
class Kept(FlowSpec):
    alpha = Parameter("alpha", default=0.5)

    @step
    def start(self):
        print("hello from start")
        self.big = list(range(5000))
        self.next(self.end)

    @step
    def end(self):
        self.done = self.alpha * 2
"""

HOURS = 3600.0


def _age(path: Path, hours: float) -> None:
    t = time.time() - hours * HOURS
    os.utime(path, (t, t))


def _blob(key: str) -> Path:
    return get_store().config.home / "blobs" / key[:2] / key


@pytest.fixture
def littered(load_flow, reelflow_home):
    """A store with one real run, plus litter of every kind, all two hours old."""
    run_id = LocalRuntime(load_flow(SRC), quiet=True).run({"alpha": 3.0})
    store = get_store()
    md = store.metadata
    # a chunked log: the task row names a manifest, which names its chunks
    chunks = [store.save(b"chunk one").key, store.save(b"chunk two").key]
    manifest = store.save({"format": "reelflow.log-manifest/1", "chunks": chunks, "size": 18}).key
    rid = md.create_run("Logs", user="u")
    md.record_task(rid, TaskRecord(step_name="start", task_id=1, attempt=0, status="succeeded", task_key="s",
                                   started_at=1.0, finished_at=2.0, stdout_key=manifest), {})
    md.finish_run(rid, "succeeded")
    from reelflow import models

    model_key = models.register("kept-model", {"w": [1, 2, 3]}).key
    orphan = store.save({"left": "by a killed run"}).key
    fresh_orphan = store.save({"written": "just now"}).key
    tmp = reelflow_home / "blobs" / orphan[:2] / ".tmp-dead-writer"
    tmp.write_bytes(b"x" * 1000)
    qdir = reelflow_home / "blobs" / "quarantine"
    qdir.mkdir()
    (qdir / f"{orphan}.1").write_bytes(b"damaged")
    for p in (reelflow_home / "blobs").rglob("*"):
        if p.is_file():
            _age(p, 2)
    _age(_blob(fresh_orphan), 0)
    return {"run_id": run_id, "orphan": orphan, "fresh": fresh_orphan, "tmp": tmp, "quarantine": qdir,
            "kept": [*chunks, manifest, model_key]}


def test_gc_removes_litter_and_keeps_everything_referenced(littered):
    files_before = sorted(p for p in (get_store().config.home / "blobs").rglob("*") if p.is_file())
    dry = CliRunner().invoke(main, ["gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would free" in dry.output and "1 partial writes" in dry.output and "1 unreferenced blobs" in dry.output
    assert "1 quarantined" in dry.output
    assert sorted(p for p in (get_store().config.home / "blobs").rglob("*") if p.is_file()) == files_before

    res = CliRunner().invoke(main, ["gc"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("freed ") and "3 files" in res.output and "metadata: " in res.output
    assert not _blob(littered["orphan"]).exists() and not littered["tmp"].exists()
    assert list(littered["quarantine"].iterdir()) == []
    assert _blob(littered["fresh"]).exists()  # younger than the grace period
    for key in littered["kept"]:
        assert _blob(key).exists(), key
    namespace(None)
    run = Flow("Kept")[littered["run_id"]]
    assert run["end"].task.data.done == 6.0 and len(run["start"].task.data.big) == 5000
    assert "hello from start" in run["start"].task.stdout
    assert run.parameters  # parameter blobs (recorded on the run row) still load
    from reelflow import models

    assert models.load("kept-model") == {"w": [1, 2, 3]}
    again = CliRunner().invoke(main, ["gc"])
    assert "freed 0 B in 0 files" in again.output


def test_gc_keeps_what_a_live_run_may_still_refer_to(littered):
    md = get_store().metadata
    rid = md.create_run("Live", user="u")  # still running, in this very process
    from sqlalchemy import update

    from reelflow.store import _schema as s

    with md.write() as conn:
        conn.execute(update(s.runs).where(s.runs.c.id == int(rid)).values(created_at=time.time() - 3 * HOURS))
    CliRunner().invoke(main, ["gc"])
    assert _blob(littered["orphan"]).exists()  # written after the live run started: maybe its output
    md.finish_run(rid, "failed")
    CliRunner().invoke(main, ["gc"])
    assert not _blob(littered["orphan"]).exists()


def test_a_put_of_an_existing_value_restarts_its_grace_period(littered):
    store = get_store()
    store.save({"left": "by a killed run"})  # a new run produces the orphan's value again
    CliRunner().invoke(main, ["gc"])
    assert _blob(littered["orphan"]).exists()


def test_starting_a_run_sweeps_old_partial_writes_at_most_hourly(load_flow, reelflow_home):
    cls = load_flow(SRC)
    LocalRuntime(cls, quiet=True).run({})
    stale = reelflow_home / "blobs" / "ab" / ".tmp-killed-writer"
    live = reelflow_home / "blobs" / "ab" / ".tmp-live-writer"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y" * 100)
    _age(stale, 2)
    _age(reelflow_home / "blobs" / ".swept", 2)  # the last sweep was long ago
    LocalRuntime(cls, quiet=True).run({})
    assert not stale.exists() and live.exists()  # a write in progress is never touched
    stale.write_bytes(b"x")
    _age(stale, 2)
    LocalRuntime(cls, quiet=True).run({})
    assert stale.exists()  # swept less than an hour ago: no scan on every run
