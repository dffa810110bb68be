"""foreach the Metaflow way: any iterable, nested indexes in joins, the foreach stack."""

FLOW = """
from metaflow import FlowSpec, step


class NestFlow(FlowSpec):
    @step
    def start(self):
        self.letters = "ab"           # a string iterates its characters
        self.next(self.outer, foreach="letters")

    @step
    def outer(self):
        self.letter = self.input
        self.nums = (10, 20, 30)
        self.next(self.inner, foreach="nums")

    @step
    def inner(self):
        self.stack = [list(f) for f in self.foreach_stack()]
        self.frames = [[f.step, f.var, f.num_splits, f.index, f.value] for f in self._foreach_stack]
        self.pair = self.letter + str(self.input)
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.outer_index = self.index
        self.input_indexes = [i.index for i in inputs]
        self.pairs = [i.pair for i in inputs]
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.my_index = self.index
        self.input_indexes = [i.index for i in inputs]
        self.pairs = [p for i in inputs for p in i.pairs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestFlow()
"""


def test_nested_foreach_over_a_string(engine):
    path = engine.write("nest_flow.py", FLOW)
    engine.run(path, "run")
    out = engine.client("""
        from metaflow import Flow, namespace
        namespace(None)
        run = Flow("NestFlow").latest_run
        emit(run.data.pairs)
        emit(run["start"].task.data.letters)
        emit(sorted(t.data.letter for t in run["outer"]))
        inner = sorted(run["inner"], key=lambda t: t.data.pair)
        emit([t.data.stack for t in inner][:2])
        emit(inner[-1].data.frames)
        emit(sorted([t.data.outer_index, t.data.input_indexes, t.data.pairs] for t in run["inner_join"]))
        oj = run["outer_join"].task
        emit([oj.data.my_index, oj.data.input_indexes])
        emit(sorted(t.index for t in run["inner"] if t.data.letter == "b"))
        """)
    assert out == [
        ["a10", "a20", "a30", "b10", "b20", "b30"],
        "ab",
        ["a", "b"],
        [[[0, 2, "a"], [0, 3, 10]], [[0, 2, "a"], [1, 3, 20]]],
        [["outer", "letters", 2, 1, "b"], ["inner", "nums", 3, 2, "30"]],
        [[0, [0, 1, 2], ["a10", "a20", "a30"]], [1, [0, 1, 2], ["b10", "b20", "b30"]]],
        [None, [0, 1]],
        [0, 1, 2],
    ]


def test_foreach_over_a_range_and_a_set(engine):
    path = engine.write("iter_flow.py", """
        from metaflow import FlowSpec, step

        class IterFlow(FlowSpec):
            @step
            def start(self):
                self.r = range(3)
                self.next(self.square, foreach="r")

            @step
            def square(self):
                self.sq = self.input ** 2
                self.next(self.join)

            @step
            def join(self, inputs):
                self.total = sum(i.sq for i in inputs)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            IterFlow()
        """)
    engine.run(path, "run")
    assert engine.client("""
        from metaflow import Flow, namespace
        namespace(None)
        emit(Flow("IterFlow").latest_run.data.total)
        """) == [5]
