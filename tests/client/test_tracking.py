"""Metrics tracking in flows, and finding and comparing runs by tag, parameter and metric."""

import subprocess
import sys

import pytest

from reelflow import Flow, current
from reelflow.client import compare_runs, find_runs
from reelflow.errors import ParameterError, ReelflowError, RunFailedError
from reelflow.runtime import LocalRuntime

SRC = """
class Tracked(FlowSpec):
    lr = Parameter("lr", default=0.1)

    @step
    def start(self):
        for i in range(10_000):
            current.log_metric("loss", 1.0 / (i + 1), step=i)
        current.log_metrics({"ndcg@10": 0.2 + self.lr, "hr@10": 0.5})
        self.next(self.end)

    @step
    def end(self):
        current.log_metric("final", self.lr * 10)
        current.log_metric("valid ndcg", self.lr)
"""


@pytest.fixture
def tracked(load_flow):
    cls = load_flow(SRC)
    ids = [LocalRuntime(cls, quiet=True, tags=[f"lr{lr}"]).run({"lr": lr}) for lr in (0.05, 0.2)]
    return cls, ids


def test_metrics_are_recorded_in_batches(tracked):
    _, ids = tracked
    run = Flow("Tracked")[ids[0]]
    m = run.metrics
    loss = m[m.name == "loss"]
    assert len(loss) == 10_000 and loss.step.tolist()[:3] == [0, 1, 2] and loss.value.iloc[-1] == pytest.approx(1e-4)
    assert run.final_metrics["ndcg@10"] == pytest.approx(0.25) and run.final_metrics["final"] == pytest.approx(0.5)
    assert set(run["end"].task.metrics.name) == {"final", "valid ndcg"}
    assert run.parameters == {"lr": "0.05"}


def test_find_and_compare_runs(tracked):
    _, ids = tracked
    assert [r.id for r in find_runs("Tracked", where=["metrics.ndcg@10 > 0.3"])] == [ids[1]]
    assert [r.id for r in find_runs("Tracked", where=["params.lr == 0.05"])] == [ids[0]]
    assert [r.id for r in find_runs("Tracked", tags=["lr0.2"])] == [ids[1]]
    assert find_runs("Tracked", where=["metrics.nope > 0"]) == []
    assert [r.id for r in find_runs("Tracked", where=["metrics.valid ndcg>=0.1"])] == [ids[1]]  # names may hold spaces
    with pytest.raises(ParameterError, match="cannot read the condition"):
        find_runs("Tracked", where=["ndcg > 1"])
    table = compare_runs([f"Tracked/{i}" for i in ids])
    assert table.loc["params.lr"].tolist() == ["0.05", "0.2"]
    assert table.loc["metrics.ndcg@10"].tolist() == pytest.approx([0.25, 0.4])


def test_runs_cli_where_and_compare(tracked):
    _, ids = tracked
    exe = [sys.executable, "-m", "reelflow.cli", "runs"]
    p = subprocess.run([*exe, "list", "Tracked", "--where", "metrics.ndcg@10 > 0.3"], capture_output=True, text=True)
    assert p.returncode == 0 and f"Tracked/{ids[1]}" in p.stdout and f"Tracked/{ids[0]} " not in p.stdout
    p = subprocess.run([*exe, "compare", *(f"Tracked/{i}" for i in ids)], capture_output=True, text=True)
    assert p.returncode == 0 and "metrics.ndcg@10" in p.stdout and "params.lr" in p.stdout
    p = subprocess.run([*exe, "list", "--where", "bogus"], capture_output=True, text=True)
    assert p.returncode == 2 and "cannot read the condition" in p.stderr


def test_log_metric_errors(load_flow):
    with pytest.raises(ReelflowError, match="inside a running step"):
        current.log_metric("x", 1.0)
    cls = load_flow("""
        class BadMetric(FlowSpec):
            @step
            def start(self):
                current.log_metric("loss", float("nan"))
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="metric 'loss': value nan is not finite"):
        LocalRuntime(cls, quiet=True).run({})
