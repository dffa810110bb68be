"""The local runtime end to end: transitions, artifacts, decorators, failures."""

import pytest

from reelflow import Run
from reelflow.errors import MergeArtifactsError, ParameterError, RunFailedError
from reelflow.runtime import LocalRuntime


def run(cls, params=None, **kw):
    run_id = LocalRuntime(cls, quiet=True, **kw).run(params or {})
    return Run(f"{cls.__name__}/{run_id}")


BRANCHES = """
from reelflow import FlowSpec, step, Parameter, JSONType, current

class Branchy(FlowSpec):
    alpha = Parameter("alpha", default=2, help="multiplier")
    cfg = Parameter("cfg", type=JSONType, default='{"k": 1}')
    flag = Parameter("flag", default=False)

    @step
    def start(self):
        self.items = ["a", "bb", "ccc"]
        self.shared = [1, 2, 3]
        self.where = current.pathspec
        self.next(self.left, self.right)

    @step
    def left(self):
        self.side = "L"
        self.score = 1
        self.next(self.join)

    @step
    def right(self):
        self.side = "R"
        self.score = 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.score = inputs.left.score + inputs.right.score
        self.sides = sorted(i.side for i in inputs)
        self.merge_artifacts(inputs, exclude=["side"])
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.length = len(self.input) * self.alpha
        self.pos = self.index
        self.stack = self.foreach_stack()
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.lengths = [i.length for i in inputs]
        self.positions = [i.pos for i in inputs]
        self.merge_artifacts(inputs, include=["shared"])
        self.next(self.end)

    @step
    def end(self):
        self.summary = (self.lengths, self.cfg["k"], self.flag)
"""


def test_branches_foreach_and_joins(load_flow):
    cls = load_flow(BRANCHES)
    r = run(cls, {"alpha": "3", "flag": "true"})
    assert r.successful and r.finished
    assert r.data.summary == ([3, 6, 9], 1, True)
    assert r.data.positions == [0, 1, 2]
    assert r.data.shared == [1, 2, 3]
    assert r.data.alpha == 3
    assert r["join"].task.data.sides == ["L", "R"]
    assert r["join"].task.data.score == 3
    assert r["start"].task.data.where == f"Branchy/{r.id}/start/1"
    each = r["each"].tasks()
    assert [t.index for t in each] == [0, 1, 2]
    assert each[1].data.stack == [(1, 3, "bb")]
    assert "side" not in r["join"].task.data


def test_untouched_artifacts_are_carried_by_reference(load_flow):
    cls = load_flow(BRANCHES)
    r = run(cls)
    start, left = r["start"].task, r["left"].task
    assert start["shared"].sha == left["shared"].sha


def test_merge_conflict_names_the_artifact(load_flow):
    cls = load_flow("""
        class Conflict(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)
            @step
            def a(self):
                self.v = 1
                self.next(self.j)
            @step
            def b(self):
                self.v = 2
                self.next(self.j)
            @step
            def j(self, inputs):
                self.merge_artifacts(inputs)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="artifacts v differ between the inputs") as e:
        run(cls)
    assert "step 'j' failed" in str(e.value)
    assert MergeArtifactsError.__name__ in str(e.value)


def test_nested_foreach(load_flow):
    cls = load_flow("""
        class Nested(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2]
                self.next(self.outer, foreach="xs")
            @step
            def outer(self):
                self.ys = [10, 20, 30]
                self.next(self.inner, foreach="ys")
            @step
            def inner(self):
                self.cell = (self.foreach_stack()[0][2], self.input)
                self.next(self.inner_join)
            @step
            def inner_join(self, inputs):
                self.row = [i.cell for i in inputs]
                self.next(self.outer_join)
            @step
            def outer_join(self, inputs):
                self.grid = [i.row for i in inputs]
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls)
    assert r.data.grid == [[(1, 10), (1, 20), (1, 30)], [(2, 10), (2, 20), (2, 30)]]


def test_conditional_branch_and_loop(load_flow):
    cls = load_flow("""
        class Loop(FlowSpec):
            @step
            def start(self):
                self.n = 0
                self.next(self.body)
            @step
            def body(self):
                self.n += 1
                self.route = "again" if self.n < 3 else ("big" if self.n > 5 else "small")
                self.next({"again": self.body, "big": self.big, "small": self.small}, condition="route")
            @step
            def big(self):
                self.kind = "big"
                self.next(self.end)
            @step
            def small(self):
                self.kind = "small"
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls)
    assert r.data.n == 3 and r.data.kind == "small"
    assert len(r["body"].tasks()) == 3
    assert "big" not in r


def test_parameters_validated(load_flow):
    cls = load_flow("""
        class P(FlowSpec):
            n = Parameter("n", type=int, required=True)
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(ParameterError, match="parameter 'n' is required"):
        run(cls)
    with pytest.raises(ParameterError, match="'x' is not a valid int"):
        run(cls, {"n": "x"})
    with pytest.raises(ParameterError, match="no parameter 'm'"):
        run(cls, {"n": 1, "m": 2})


def test_parameter_is_read_only_and_callable_default(load_flow):
    cls = load_flow("""
        class RO(FlowSpec):
            who = Parameter("who", default=lambda ctx: ctx.parameter_name + "!")
            @step
            def start(self):
                self.seen = self.who
                self.who = "changed"
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="parameter 'who' is read-only"):
        run(cls)


def test_include_file_snapshots_contents(load_flow, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    cls = load_flow("""
        class Inc(FlowSpec):
            table = IncludeFile("table", default="missing.csv")
            @step
            def start(self):
                self.rows = self.table.splitlines()
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls, {"table": str(data)})
    data.write_text("changed")
    assert r.data.rows == ["a,b", "1,2"]
    with pytest.raises(ParameterError, match="does not exist"):
        run(cls)


def test_retry_then_success_and_catch(load_flow, tmp_path):
    marker = tmp_path / "attempts"
    cls = load_flow(f"""
        import os
        class Flaky(FlowSpec):
            @retry(times=2, minutes_between_retries=0)
            @step
            def start(self):
                with open({str(marker)!r}, "a") as f:
                    f.write("x")
                if current.retry_count < 1:
                    raise RuntimeError("flaky")
                self.attempt = current.retry_count
                self.next(self.risky)
            @catch(var="problem")
            @step
            def risky(self):
                raise ValueError("always")
                self.next(self.end)
            @step
            def end(self):
                self.got = self.problem.type
    """)
    r = run(cls)
    assert marker.read_text() == "xx"
    assert r["start"].task.data.attempt == 1
    assert r["start"].task.current_attempt == 1
    assert r.data.got == "builtins.ValueError"  # Metaflow's form: module.Class


def test_retry_from_command_line_with(load_flow):
    cls = load_flow("""
        class W(FlowSpec):
            @step
            def start(self):
                if current.retry_count == 0:
                    raise RuntimeError("first attempt fails")
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    from reelflow.flows._decorators import parse_with_spec

    with pytest.raises(RunFailedError):
        run(cls)
    r = run(cls, with_decorators=[parse_with_spec("retry:times=1,minutes_between_retries=0")])
    assert r.successful


def test_timeout_kills_the_task(load_flow):
    cls = load_flow("""
        import time
        class Slow(FlowSpec):
            @timeout(seconds=1)
            @step
            def start(self):
                time.sleep(30)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    import time

    t0 = time.monotonic()
    with pytest.raises(RunFailedError, match="timed out after 1s"):
        run(cls)
    assert time.monotonic() - t0 < 25  # killed, not waited for (the step sleeps 30 s)


def test_environment_and_resources_recorded(load_flow):
    cls = load_flow("""
        import os
        class Env(FlowSpec):
            @environment(vars={"REELFLOW_TEST_VAR": "hi"})
            @resources(cpu=2, memory=1000)
            @step
            def start(self):
                self.var = os.environ["REELFLOW_TEST_VAR"]
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls)
    t = r["start"].task
    assert t.data.var == "hi"
    assert t.resources["cpu"] == 2 and t.resources["memory"] == 1000


def test_worker_crash_fails_run_naming_step(load_flow):
    cls = load_flow("""
        import os
        class Crash(FlowSpec):
            @step
            def start(self):
                self.next(self.boom)
            @step
            def boom(self):
                print("about to die", flush=True)
                os._exit(3)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="step 'boom' failed.*exited with status 3"):
        run(cls)
    from reelflow import Flow

    r = Flow("Crash").latest_run
    assert r.finished and not r.successful
    assert r.status_reason.startswith("step 'boom' failed") and "exited with status 3" in r.status_reason
    t = r["boom"].task
    assert not t.successful and "about to die" in t.stdout


def test_segfault_fails_run_cleanly(load_flow):
    cls = load_flow("""
        import ctypes
        class Segv(FlowSpec):
            @step
            def start(self):
                ctypes.string_at(0)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="step 'start' failed.*killed by signal SIGSEGV"):
        run(cls)


def test_foreach_limits(load_flow):
    cls = load_flow("""
        class Wide(FlowSpec):
            @step
            def start(self):
                self.xs = list(range(5))
                self.next(self.a, foreach="xs")
            @step
            def a(self):
                self.next(self.j)
            @step
            def j(self, inputs):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="more than --max-num-splits 3"):
        run(cls, max_num_splits=3)


def test_stdout_stderr_captured_and_unpicklable_artifact(load_flow):
    cls = load_flow("""
        import sys, threading
        class Logs(FlowSpec):
            @step
            def start(self):
                print("hello out")
                print("hello err", file=sys.stderr)
                self.next(self.end)
            @step
            def end(self):
                self.lock = threading.Lock()
    """)
    with pytest.raises(RunFailedError, match="artifact 'lock' \\(lock\\) cannot be saved"):
        run(cls)
    from reelflow import Flow

    t = Flow("Logs").latest_run["start"].task
    assert t.stdout == "hello out\n" and t.stderr == "hello err\n"


def test_inprocess_mode_runs_in_this_process(load_flow):
    cls = load_flow("""
        import os
        class Here(FlowSpec):
            @step
            def start(self):
                self.pid = os.getpid()
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    import os

    r = run(cls, inprocess=True)
    assert r.data.pid == os.getpid()
    r = run(cls)
    assert r.data.pid != os.getpid()


def test_spawn_fallback_runs_tasks(load_flow):
    cls = load_flow(BRANCHES.replace("self.where = current.pathspec",
                                     "self.where = current.pathspec\n        self.module = type(self).__module__"))
    r = run(cls, use_fork=False)
    assert r.data.summary == ([2, 4, 6], 1, False)
    assert r["start"].task.data.module == "__reelflow_flow__"  # the flow file was imported by a new interpreter


def test_foreach_inside_a_branch_and_a_branch_inside_a_foreach(load_flow):
    cls = load_flow("""
        class Mixed(FlowSpec):
            @step
            def start(self):
                self.next(self.left, self.right)
            @step
            def left(self):
                self.xs = [1, 2, 3]
                self.next(self.each, foreach="xs")
            @step
            def each(self):
                self.y = self.input * 10
                self.next(self.gather)
            @step
            def gather(self, inputs):
                self.ys = [i.y for i in inputs]
                self.next(self.join)
            @step
            def right(self):
                self.groups = ["a", "b"]
                self.next(self.per_group, foreach="groups")
            @step
            def per_group(self):
                self.g = self.input
                self.next(self.p, self.q)
            @step
            def p(self):
                self.v = self.g + "p"
                self.next(self.pq)
            @step
            def q(self):
                self.v = self.g + "q"
                self.next(self.pq)
            @step
            def pq(self, inputs):
                self.pair = inputs.p.v + inputs.q.v
                self.next(self.groups_join)
            @step
            def groups_join(self, inputs):
                self.pairs = [i.pair for i in inputs]
                self.next(self.join)
            @step
            def join(self, inputs):
                self.result = (inputs.gather.ys, inputs.groups_join.pairs)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    r = run(cls)
    assert r.data is not None and r["join"].task.data.result == ([10, 20, 30], ["apaq", "bpbq"])
    assert len(r["pq"].tasks()) == 2 and len(r["each"].tasks()) == 3
