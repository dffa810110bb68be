"""The harness itself: a Metaflow flow runs with the import changed, and the client reads it back."""

from compat._compat import to_reelflow

FLOW = """
from metaflow import FlowSpec, step, Parameter


class HelloCompatFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5, type=float)

    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.value = self.input ** 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs) * self.alpha
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HelloCompatFlow()
"""


def test_only_the_import_changes():
    src = "from metaflow import FlowSpec\nimport metaflow\nfrom metaflow.cards import Markdown\nx = 'metaflow'\n"
    assert to_reelflow(src) == (
        "from reelflow import FlowSpec\nimport reelflow as metaflow\nfrom reelflow.cards import Markdown\nx = 'metaflow'\n"
    )


def test_flow_runs_and_client_reads_it(engine):
    path = engine.write("hello_flow.py", FLOW)
    engine.run(path, "run", "--alpha", "2")
    out = engine.client(
        """
        from metaflow import Flow, namespace
        namespace(None)
        run = Flow("HelloCompatFlow").latest_run
        emit(run.successful)
        emit(run.data.total)
        emit(sorted(t.data.value for t in run["square"]))
        """
    )
    assert out == [True, 28.0, [1, 4, 9]]
