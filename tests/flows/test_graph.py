"""Graph checks: each malformed flow is refused before it runs, naming the step and the fix."""

import pytest

from reelflow.errors import FlowDefinitionError, ParameterError

HEAD = "from reelflow import FlowSpec, step, Parameter\nclass F(FlowSpec):\n"


def flow(body: str) -> str:
    import textwrap

    return HEAD + textwrap.indent(textwrap.dedent(body), "    ")


END = """
@step
def end(self):
    pass
"""


@pytest.mark.parametrize(
    "body, match",
    [
        ("@step\ndef end(self):\n    pass\n", "has no 'start' step"),
        ("@step\ndef start(self):\n    self.next(self.x)\n" + END, "has no step 'x'"),
        ("@step\ndef start(self):\n    self.x = 1\n" + END, "step 'start' has no self.next"),
        ("@step\ndef start(self):\n    self.next(self.end)\n    self.next(self.end)\n" + END, "calls self.next\\(\\) 2 times"),
        ("@step\ndef start(self):\n    self.next(self.end)\n    x = 1\n" + END, "must be the last statement"),
        ("@step\ndef start(self):\n    self.next(self.a, foreach='xs')\n@step\ndef a(self):\n    self.next(self.end)\n" + END,
         "'end' is reached inside the split of step 'start'"),
        ("@step\ndef start(self):\n    self.next(self.a, self.b)\n@step\ndef a(self):\n    self.next(self.c)\n"
         "@step\ndef b(self):\n    self.next(self.c)\n@step\ndef c(self):\n    self.next(self.end)\n" + END,
         "make it a join: def c\\(self, inputs\\)"),
        ("@step\ndef start(self):\n    self.next(self.j)\n@step\ndef j(self, inputs):\n    self.next(self.end)\n" + END,
         "closes no split"),
        ("@step\ndef start(self):\n    self.next(self.end)\n@step\ndef orphan(self):\n    self.next(self.end)\n" + END,
         "'orphan' is unreachable"),
        ("@step\ndef start(self):\n    self.next(self.a)\n@step\ndef a(self):\n    self.next(self.b)\n"
         "@step\ndef b(self):\n    self.next(self.a)\n" + END, "form a cycle"),
        ("@step\ndef start(self):\n    self.next(self.end)\n@step\ndef end(self):\n    self.next(self.start)\n",
         "'end' calls self.next"),
        ("@step\ndef start(self, inputs):\n    self.next(self.end)\n" + END, "step 'start' takes inputs"),
        ("@step\ndef start(self):\n    self.next({'a': self.end}, foreach='x')\n" + END, "needs condition="),
        ("@step\ndef start(self):\n    self.next(self.a, foreach=name)\n@step\ndef a(self):\n    self.next(self.end)\n" + END,
         "string literal"),
    ],
)
def test_malformed_flow_is_refused(load_flow, body, match):
    cls = load_flow(flow(body))
    with pytest.raises(FlowDefinitionError, match=match):
        cls.graph()


def test_parameter_clashing_with_step_or_reserved_name(load_flow):
    cls = load_flow(flow("a = Parameter('start')\n@step\ndef start(self):\n    self.next(self.end)\n" + END))
    with pytest.raises(ParameterError, match="same name as step 'start'"):
        cls.graph()
    cls = load_flow(flow("a = Parameter('index')\n@step\ndef start(self):\n    self.next(self.end)\n" + END))
    with pytest.raises(ParameterError, match="reserved name"):
        cls.graph()


def test_conditional_loop_is_allowed_and_graph_is_described(load_flow):
    cls = load_flow(flow("""
        @step
        def start(self):
            self.n = 0
            self.next(self.body)
        @step
        def body(self):
            self.n += 1
            self.more = self.n < 3
            self.next({True: self.body, False: self.end}, condition="more")
        @step
        def end(self):
            pass
    """))
    g = cls.graph()
    assert g["body"].kind == "switch"
    assert g["body"].switch_cases == {"True": "body", "False": "end"}
    assert [n.name for n in g] == ["start", "body", "end"]


def test_nested_foreach_and_static_split_graph(load_flow):
    cls = load_flow(flow("""
        @step
        def start(self):
            self.xs = [1, 2]
            self.next(self.outer, foreach="xs")
        @step
        def outer(self):
            self.ys = [1, 2, 3]
            self.next(self.inner, foreach="ys")
        @step
        def inner(self):
            self.next(self.a, self.b)
        @step
        def a(self):
            self.next(self.ab)
        @step
        def b(self):
            self.next(self.ab)
        @step
        def ab(self, inputs):
            self.next(self.ij)
        @step
        def ij(self, inputs):
            self.next(self.oj)
        @step
        def oj(self, inputs):
            self.next(self.end)
        @step
        def end(self):
            pass
    """))
    g = cls.graph()
    assert g["ab"].closes == "inner" and g["ij"].closes == "outer" and g["oj"].closes == "start"
    assert g["a"].split_parents == ["start", "outer", "inner"]
