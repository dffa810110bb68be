"""What a run records: metrics (validated, cloned on resume), rows the database refuses,
parameters of resumed runs, in-process runs (output, @environment, GC), temp files."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from reelflow import Flow, Run
from reelflow.errors import FlowDefinitionError, ParameterError, ReelflowError, RunFailedError
from reelflow.flows._current import _TaskInfo, current
from reelflow.runtime import LocalRuntime
from reelflow.store import get_store


def run(cls, params=None, **kw):
    run_id = LocalRuntime(cls, quiet=True, **kw).run(params or {})
    return Run(f"{cls.__name__}/{run_id}")


@pytest.fixture
def bound_current():
    current._bind(_TaskInfo("F", "1", "start", "1", 0, None, "me", frozenset()))
    yield current
    current._bind(None)


@pytest.mark.parametrize("args, match", [
    (("", 1.0), "must be a non-empty string"),
    ((3, 1.0), "must be a non-empty string"),
    (("x" * 1001, 1.0), "names are at most 1000"),
    (("loss", "0.5"), "is not a real number"),
    (("loss", None), "is not a real number"),
    (("loss", float("nan")), "is not finite"),
    (("loss", 1.0, 2**63), "does not fit a signed 64-bit integer"),
    (("loss", 1.0, -(2**63) - 1), "does not fit a signed 64-bit integer"),
    (("loss", 1.0, 1.5), "must be an integer"),
    (("loss", 1.0, True), "not a bool"),
])
def test_log_metric_refuses_what_the_database_cannot_hold(bound_current, args, match):
    with pytest.raises(ReelflowError, match=match):
        bound_current.log_metric(*args)
    assert bound_current._take_metrics() == []


def test_log_metric_accepts_numbers_of_every_kind(bound_current):
    bound_current.log_metric("a", np.float32(0.5), step=np.int64(3))
    bound_current.log_metric("b", True)
    bound_current.log_metric("c", 7, step=2**63 - 1)
    bound_current.log_metric("d" * 1000, -1.5, step=-(2**63))
    got = [(n, v, s) for n, v, s, _ in bound_current._take_metrics()]
    assert got == [("a", 0.5, 3), ("b", 1.0, None), ("c", 7.0, 2**63 - 1), ("d" * 1000, -1.5, -(2**63))]
    assert type(got[0][2]) is int


WIDE = """
class Wide(FlowSpec):
    @step
    def start(self):
        self.xs = [0, 1, 2]
        current.log_metric("seen", 1)
        self.next(self.work, foreach="xs")
    @step
    def work(self):
        current.log_metric("poison" if self.input == 2 else "fine", self.input)
        self.y = self.input
        self.next(self.join)
    @step
    def join(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.end)
    @step
    def end(self):
        pass
"""


def test_a_refused_row_fails_the_run_loudly_and_keeps_the_others(load_flow, monkeypatch):
    cls = load_flow(WIDE)
    md = get_store().metadata
    real_one = md.record_task

    def refuse_batches(run_id, items):
        raise RuntimeError("batch refused")

    def refuse_poison(run_id, rec, arts):
        if any(m[0] == "poison" for m in rec.metrics):
            raise RuntimeError("value out of range for the metrics table\nSQL: INSERT ...")
        return real_one(run_id, rec, arts)

    monkeypatch.setattr(md, "record_tasks", refuse_batches)
    monkeypatch.setattr(md, "record_task", refuse_poison)
    with pytest.raises(RunFailedError, match=r"task Wide/\d+/work/\d+\): its record could not be written .*"
                                             r"value out of range for the metrics table") as e:
        LocalRuntime(cls, quiet=True, max_workers=1).run()
    assert "SQL: INSERT" not in str(e.value)
    r = Flow("Wide").latest_run
    assert r.finished and r.status == "failed"
    tasks = r["work"].tasks()
    assert len(tasks) == 3  # the good tasks are kept, the refused one is recorded as failed
    assert sorted(t.successful for t in tasks) == [False, True, True]
    assert r["start"].task.successful


def test_resume_clones_metrics_and_keeps_parameter_types(load_flow, tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    cls = load_flow(f"""
        import os
        class Tracked(FlowSpec):
            alpha = Parameter("alpha", default=0.5)
            label = Parameter("label", default="x")
            @step
            def start(self):
                current.log_metric("loss", 0.25, step=1)
                current.log_metric("loss", 0.125, step=2)
                self.next(self.train)
            @step
            def train(self):
                if os.path.exists({str(marker)!r}):
                    raise RuntimeError("broken")
                current.log_metric("ndcg", 0.4)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError):
        LocalRuntime(cls, quiet=True).run({"alpha": "0.75"})
    origin = Flow("Tracked").latest_run
    marker.unlink()
    resumed_id = LocalRuntime(cls, quiet=True).resume()
    md = get_store().metadata
    points = sorted((m["step_name"], m["name"], m["value"], m["step"]) for m in md.metrics_of([resumed_id]))
    assert points == [("start", "loss", 0.125, 2), ("start", "loss", 0.25, 1), ("train", "ndcg", 0.4, None)]
    assert md.get_run("Tracked", resumed_id)["params"] == md.get_run("Tracked", origin.id)["params"]
    assert md.get_run("Tracked", resumed_id)["params"]["alpha"]["repr"] == "0.75"
    assert md.get_run("Tracked", resumed_id)["params"]["label"]["repr"] == "'x'"


ENV = """
import os
class Env(FlowSpec):
    @environment(vars={"REELFLOW_TEST_ONLY_HERE": "set", "REELFLOW_TEST_SHADOW": "inner"})
    @step
    def start(self):
        self.inside = os.environ.get("REELFLOW_TEST_ONLY_HERE")
        print("printed in start")
        self.next(self.end)
    @step
    def end(self):
        self.later = os.environ.get("REELFLOW_TEST_ONLY_HERE")
        self.shadow = os.environ.get("REELFLOW_TEST_SHADOW")
"""


def test_inprocess_restores_the_environment_and_captures_output(load_flow, monkeypatch, capsys):
    monkeypatch.setenv("REELFLOW_TEST_SHADOW", "outer")
    monkeypatch.delenv("REELFLOW_TEST_ONLY_HERE", raising=False)
    before = dict(os.environ)
    r = run(load_flow(ENV), inprocess=True)
    assert dict(os.environ) == before
    assert r["start"].task.data.inside == "set"
    assert r.data.later is None and r.data.shadow == "outer"
    assert r["start"].task.stdout == "printed in start\n"  # reaches `logs` as with workers
    assert "printed in start" in capsys.readouterr().out  # and still the terminal


def test_running_flows_leaves_the_callers_gc_alone(load_flow):
    assert gc.get_freeze_count() == 0
    cls = load_flow(ENV)
    run(cls)  # workers forked from this process
    run(cls, inprocess=True)
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_temp_files_are_private_and_removed(load_flow, reelflow_home):
    from reelflow.runtime._tmp import check_private, make_run_dir

    tmp = reelflow_home / "tmp"
    tmp.mkdir(parents=True)
    stale = tmp / "run-someone-2147483646-abc"  # the naming of another host: left alone
    stale.mkdir()
    dead = tmp / f"run-{__import__('socket').gethostname().replace('-', '_')}-2147483646-abc"
    dead.mkdir()  # a dead run of ours on this host: removed
    (dead / "x.result").write_bytes(b"junk")
    run(load_flow(ENV))
    assert sorted(p.name for p in tmp.iterdir()) == [stale.name]
    d = make_run_dir(tmp)
    assert (d.stat().st_mode & 0o777) == 0o700
    d.chmod(0o777)
    with pytest.raises(ReelflowError, match="not a private directory"):
        check_private(d)


@pytest.mark.parametrize("name", ["tags", "tag", "inprocess", "quiet", "max-workers", "with", "run_id_file"])
def test_parameter_names_of_run_options_are_refused(load_flow, name):
    cls = load_flow(f"""
        class Clash(FlowSpec):
            p = Parameter({name!r}, default=1)
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(FlowDefinitionError, match=f"parameter '{name}' uses a reserved name.*reserved names are"):
        cls.graph()
    with pytest.raises(ParameterError):  # also what the flow's command line reports as bad usage
        cls.graph()


@pytest.mark.parametrize("inprocess", [False, True])
def test_a_running_run_sends_heartbeats(load_flow, monkeypatch, inprocess):
    from reelflow.runtime import _lifecycle

    monkeypatch.setattr(_lifecycle, "HEARTBEAT_SECONDS", 0.05)
    md = get_store().metadata
    beats: list[str] = []
    real = md.heartbeat
    monkeypatch.setattr(md, "heartbeat", lambda run_id: (beats.append(run_id), real(run_id)))
    cls = load_flow("""
        import time
        class Beating(FlowSpec):
            @step
            def start(self):
                time.sleep(1.0)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls, inprocess=inprocess)
    assert len(beats) >= 3 and set(beats) == {r.id}  # also while the one step runs
    assert r._row["heartbeat_at"] > r._row["created_at"]


def test_a_planted_result_link_is_never_unpickled(tmp_path):
    import pickle

    from reelflow.runtime._task import TaskResult
    from reelflow.runtime._worker import Worker

    planted = tmp_path / "planted.pickle"
    planted.write_bytes(pickle.dumps(TaskResult("succeeded")))
    link = tmp_path / "run-1-1-0.result"
    link.symlink_to(planted)
    w = Worker(spec=None, pid=0, fds={}, result_path=link, started_at=0.0)  # type: ignore[arg-type]
    assert w.read_result() is None
    genuine = tmp_path / "run-1-2-0.result"
    genuine.write_bytes(pickle.dumps(TaskResult("succeeded")))
    assert Worker(spec=None, pid=0, fds={}, result_path=genuine, started_at=0.0).read_result().status == "succeeded"
