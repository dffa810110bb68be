"""The client's object model, read back the Metaflow way: parents, children, tags, metadata, logs."""

import pytest

FLOW = """
from metaflow import FlowSpec, step


class ModelFlow(FlowSpec):
    @step
    def start(self):
        print("hello out")
        self.items = [1, 2]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.v = self.input * 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.vs = [i.v for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ModelFlow()
"""

CLIENT = """
from metaflow import Flow, Step, Task, DataArtifact, namespace
namespace(None)
run = Flow("ModelFlow").latest_run
emit([run.parent.id, run["work"].parent.id == run.id, run["work"].task.parent.id])
emit({s.id: [[p.id for p in s.parent_steps], [c.id for c in s.child_steps]] for s in run})
work = sorted(run["work"], key=lambda t: t.index)
emit([[p.parent.id for p in t.parent_tasks] for t in work])
emit([[c.parent.id for c in t.child_tasks] for t in work])
emit([len(list(run["join"].task.parent_tasks)), [t.parent.id for t in run["start"].task.child_tasks]])
task = run["start"].task
emit(["mytag" in task.tags, "user:tester" in task.tags, sorted(task.user_tags)])
md = task.metadata_dict
emit([md["attempt"], md["attempt_ok"], md["user"], md["origin-run-id"]])
emit(sorted({m.name for m in task.metadata} & {"attempt", "attempt_ok", "user"}))
emit([line for _, line in task.loglines("stdout")])
emit(["items" in task, "nope" in task, task.artifacts.items.data])
art = task["items"]
emit([isinstance(art.sha, str) and len(art.sha) >= 32, isinstance(art.size, int) and art.size > 0,
      art.finished_at is not None])
emit(DataArtifact(art.pathspec).data)
step = run["work"]
emit([step.created_at is not None, step.finished_at is not None, step.created_at <= step.finished_at])
emit([run.origin_pathspec in (None, "ModelFlow/None"),
      step.origin_pathspec in (None, "ModelFlow/None/work")])
"""


@pytest.fixture
def model_run(engine):
    path = engine.write("model_flow.py", FLOW)
    engine.run(path, "run", "--tag", "mytag")
    return engine


def test_client_object_model(model_run):
    out = model_run.client(CLIENT)
    assert out == [
        ["ModelFlow", True, "work"],
        {"start": [[], ["work"]], "work": [["start"], ["join"]], "join": [["work"], ["end"]], "end": [["join"], []]},
        [["start"], ["start"]],
        [["join"], ["join"]],
        [2, ["work", "work"]],
        [True, True, ["mytag"]],
        ["0", "True", "tester", "None"],
        ["attempt", "attempt_ok", "user"],
        ["hello out"],
        [True, False, [1, 2]],
        [True, True, True],
        [1, 2],
        [True, True, True],
        [True, True],
    ]


def test_origin_pathspec_after_resume(engine):
    path = engine.write("resume_flow.py", """
        import os
        from metaflow import FlowSpec, step

        class ResumeFlow(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.next(self.end)

            @step
            def end(self):
                if os.environ.get("FAIL_END") == "1":
                    raise RuntimeError("fail on purpose")

        if __name__ == "__main__":
            ResumeFlow()
        """)
    assert engine.run(path, "run", check=False, env={"FAIL_END": "1"}).returncode != 0
    engine.run(path, "resume", env={"FAIL_END": "0"})
    out = engine.client("""
        from metaflow import Flow, namespace
        namespace(None)
        runs = list(Flow("ResumeFlow"))
        new, old = runs[0], runs[1]
        emit(new.origin_pathspec == old.pathspec)
        emit(new["start"].origin_pathspec == old.pathspec + "/start")
        emit(new["start"].task.origin_pathspec == old["start"].task.pathspec)
        """)
    assert out == [True, True, True]
