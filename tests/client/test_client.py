"""The client: Flow -> Run -> Step -> Task -> data, namespaces and tags."""

import pytest

from reelflow import Flow, Run, Step, Task, get_namespace, namespace
from reelflow.errors import NamespaceMismatchError, NamespaceWarning, NotFoundError
from reelflow.runtime import LocalRuntime

SRC = """
class Hello(FlowSpec):
    @step
    def start(self):
        self.msg = "hi"
        self.xs = [1, 2]
        self.next(self.each, foreach="xs")
    @step
    def each(self):
        self.y = self.input * 10
        self.next(self.join)
    @step
    def join(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.end)
    @step
    def end(self):
        self.done = True
"""


@pytest.fixture
def hello(load_flow):
    cls = load_flow(SRC)
    ids = [LocalRuntime(cls, quiet=True, tags=["t1"] if i == 0 else []).run({}) for i in range(2)]
    return ids


def test_navigation(hello):
    f = Flow("Hello")
    assert [r.id for r in f.runs()] == list(reversed(hello))
    assert f.latest_run.id == hello[1] and f.latest_successful_run.id == hello[1]
    assert [r.id for r in f.runs("t1")] == [hello[0]]
    r = Run(f"Hello/{hello[0]}")
    assert r.successful and r.finished and r.finished_at >= r.created_at
    assert [s.id for s in r.steps()] == ["start", "each", "join", "end"]
    assert r.data.done is True
    step = r["each"]
    assert isinstance(step, Step) and len(step.tasks()) == 2
    t = Step(f"Hello/{hello[0]}/join").task
    assert isinstance(t, Task) and t.data.ys == [10, 20]
    assert Task(t.pathspec).data.ys == [10, 20]
    assert set(t.artifacts) == {"ys"}  # a join carries only what it merges
    assert t["ys"].data == [10, 20] and t["ys"].size > 0


def test_missing_objects_are_clear(hello):
    with pytest.raises(NotFoundError, match="flow 'Nope' has no runs"):
        Flow("Nope")
    with pytest.raises(NotFoundError, match="has no step 'nope'"):
        Run(f"Hello/{hello[0]}")["nope"]
    with pytest.raises(NotFoundError, match="malformed"):
        Run("Hello")
    with pytest.raises(AttributeError, match="has no artifact 'nope'"):
        Run(f"Hello/{hello[0]}").data.nope


def test_tags_and_namespaces(hello):
    r = Run(f"Hello/{hello[1]}")
    r.add_tag("best")
    assert "best" in Run(r.pathspec).tags
    r.remove_tag("best")
    assert "best" not in Run(r.pathspec).tags
    assert get_namespace().startswith("user:")
    namespace("user:someone-else")
    with pytest.warns(NamespaceWarning, match=r"2 runs outside the namespace 'user:someone-else' .*namespace\(None\)"):
        assert Flow("Hello").runs() == []
    with pytest.warns(NamespaceWarning, match="successful runs outside the namespace"):
        assert Flow("Hello").latest_successful_run is None
    with pytest.raises(NamespaceMismatchError, match="namespace"):
        Run(r.pathspec)
    namespace(None)
    assert len(Flow("Hello").runs()) == 2
