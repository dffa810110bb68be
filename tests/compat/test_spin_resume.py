"""``resume`` of a successful run and ``spin`` of one step, as Metaflow 2.19 does them."""

from __future__ import annotations

import pytest

FLOW = """
from metaflow import FlowSpec, step, Parameter


class ResumeSpinFlow(FlowSpec):
    k = Parameter("k", default=3, type=int)

    @step
    def start(self):
        print("RAN start")
        self.items = list(range(self.k))
        self.next(self.square, foreach="items")

    @step
    def square(self):
        print("RAN square", self.input)
        self.sq = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        print("RAN join")
        self.total = sum(i.sq for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("RAN end")
        self.doubled = self.total * 2


if __name__ == "__main__":
    ResumeSpinFlow()
"""


def _ran(proc) -> list[str]:
    return sorted({line.split("RAN ", 1)[1].split()[0] for line in (proc.stdout + proc.stderr).splitlines()
                   if "RAN " in line})


def test_resume_of_a_successful_run_clones_it_whole(engine):
    path = engine.write("resume_spin_flow.py", FLOW)
    engine.run(path, "run", "--k", "4")
    proc = engine.run(path, "resume")
    assert _ran(proc) == []  # nothing runs again: every task is cloned
    proc = engine.run(path, "resume", "join")
    assert _ran(proc) == ["end", "join"]  # the named step and what follows it
    out = engine.client(
        """
        from metaflow import Flow, namespace
        namespace(None)
        runs = list(Flow("ResumeSpinFlow"))
        origin, whole, from_join = runs[2], runs[1], runs[0]
        for r in (whole, from_join):
            emit([r.successful, r.data.total, r.data.doubled, r["start"].task.origin_pathspec is not None,
                  r["join"].task.origin_pathspec is not None])
        emit(whole["end"].task.origin_pathspec == origin["end"].task.pathspec)
        emit(sorted(t.data.sq for t in whole["square"]))
        """
    )
    assert out == [[True, 14, 28, True, True], [True, 14, 28, True, False], True, [0, 1, 4, 9]]


def test_spin_reruns_one_step_on_a_past_runs_inputs(engine):
    path = engine.write("resume_spin_flow.py", FLOW)
    engine.run(path, "run", "--k", "4")
    proc = engine.run(path, "spin", "join")
    assert _ran(proc) == ["join"]  # only the spun step runs
    if engine.name == "reelflow":
        assert "total = 14" in proc.stdout  # what the step produced
    out = engine.client(
        """
        from metaflow import Flow, Runner, namespace
        namespace(None)
        runs = list(Flow("ResumeSpinFlow"))
        run = runs[0]
        emit(len(runs))  # spin recorded no run
        sq2 = [t for t in run["square"] if t.data.sq == 4][0]
        with Runner("resume_spin_flow.py", show_output=False).spin(
                f"{run.id}/square/{sq2.id}", persist=True) as spun:
            emit(spun.status)
            emit(spun.task.data.sq)
            emit("sq" in spun.task)
        emit(len(list(Flow("ResumeSpinFlow"))))
        """
    )
    assert out == [1, "successful", 4, True, 1]


def test_spin_errors_name_the_fix(engine):
    if engine.name == "metaflow":
        pytest.skip("the messages are reelflow's own")
    path = engine.write("resume_spin_flow.py", FLOW)
    p = engine.run(path, "spin", "join", check=False)
    assert p.returncode == 1 and "has no run in which step 'join' succeeded" in p.stderr
    engine.run(path, "run")
    p = engine.run(path, "spin", "nope", check=False)
    assert p.returncode == 2 and "has no step 'nope'" in p.stderr
    p = engine.run(path, "spin", "1/join/999", check=False)
    assert p.returncode == 1 and "task 999 of step 'join'" in p.stderr
    (path.parent / "inputs.py").write_text("ARTIFACTS = {'total': 100}\n")
    p = engine.run(path, "spin", "end", "--artifacts-module", "inputs.py")
    assert "doubled = 200" in p.stdout  # the step saw the replaced input
