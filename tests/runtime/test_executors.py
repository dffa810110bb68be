"""One behaviour suite, run against every executor: the same flow means the same run.

Each test is parametrised over ``inprocess``, ``fork``, ``forkserver``, ``spawn`` and
``ray`` (the last skipped when Ray is not installed; it runs on a one-node cluster
started with ``ray start`` for this module). Retries, ``@catch``, ``@timeout``,
Ctrl-C, logs, resume and metrics must behave the same whichever runs the tasks.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelflow import Flow, Run, namespace
from reelflow.errors import ParameterError, RunFailedError
from reelflow.runtime import LocalRuntime
from reelflow.runtime._executors import EXECUTORS, Executor, ExecutorContext, make_executor, resolve_executor_name

HAVE_RAY = importlib.util.find_spec("ray") is not None
ALL = [pytest.param(name, marks=pytest.mark.skipif(name == "ray" and not HAVE_RAY, reason="ray is not installed"))
       for name in EXECUTORS]


@pytest.fixture(params=ALL)
def executor(request):
    """The executor's name; for ``ray``, this module's one-node cluster is running and connected."""
    if request.param == "ray":
        request.getfixturevalue("ray_single")
    return request.param


def _run(cls, executor, params=None, **kw):
    run_id = LocalRuntime(cls, quiet=True, executor=executor, **kw).run(params or {})
    return Run(f"{cls.__name__}/{run_id}")


BEHAVE = """
import os
from reelflow import FlowSpec, step, retry, catch, current, environment

class Behave(FlowSpec):
    @environment(vars={"RF_EXECUTOR_TEST": "on"})
    @step
    def start(self):
        self.env_in_start = os.environ.get("RF_EXECUTOR_TEST")
        self.items = [1, 2, 3]
        print("starting")
        self.next(self.work, foreach="items")

    @retry(times=1, minutes_between_retries=0)
    @step
    def work(self):
        if self.input == 2 and current.retry_count == 0:
            raise RuntimeError("first attempt of item 2 fails")
        self.sq = self.input * self.input
        self.attempt = current.retry_count
        current.log_metric("sq", self.sq, step=self.input)
        print(f"item {self.input} -> {self.sq}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.sq for i in inputs)
        self.attempts = sorted(i.attempt for i in inputs)
        self.next(self.risky)

    @catch(var="problem", print_exception=False)
    @step
    def risky(self):
        raise ValueError("always broken")
        self.next(self.end)

    @step
    def end(self):
        self.caught = self.problem.type
        self.pid = os.getpid()
        self.env_in_end = os.environ.get("RF_EXECUTOR_TEST")
"""


def test_foreach_retry_catch_metrics_and_logs(load_flow, executor):
    cls = load_flow(BEHAVE)
    frozen = gc.get_freeze_count()
    r = _run(cls, executor)
    assert r.successful
    assert gc.get_freeze_count() == frozen  # the caller's garbage is still collected (no gc.freeze here)
    # @environment holds for its step only: not in later steps, nor in the caller when run in-process
    assert r["start"].task.data.env_in_start == "on" and r.data.env_in_end is None
    assert "RF_EXECUTOR_TEST" not in os.environ
    assert r.data.total == 14 and r.data.attempts == [0, 0, 1]
    assert r.data.caught == "builtins.ValueError"  # Metaflow's form: module.Class
    assert (r.data.pid == os.getpid()) == (executor == "inprocess")  # only in-process runs steps here
    work = {t.data.sq: t for t in r["work"].tasks()}
    assert work[4].current_attempt == 1 and work[1].current_attempt == 0
    assert work[9].stdout == "item 3 -> 9\n"
    assert r["start"].task.stdout == "starting\n"
    assert sorted(m[1] for m in _metric_points(r)) == [1.0, 4.0, 9.0]


def _metric_points(r):
    return [(m["name"], m["value"]) for m in r._store.metadata.metrics_of([r.id])]


def test_timeout_fails_the_step(load_flow, executor):
    cls = load_flow("""
        import time
        class Slow(FlowSpec):
            @timeout(seconds=2)
            @step
            def start(self):
                time.sleep(60)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    t0 = time.monotonic()
    with pytest.raises(RunFailedError, match=r"step 'start'.*timed out after 2s"):
        _run(cls, executor)
    assert time.monotonic() - t0 < 45
    namespace(None)
    task = Flow("Slow").latest_run["start"].task
    assert not task.successful and "TimeoutError" in task.exception


def test_resume_reruns_the_failed_step_only(load_flow, executor, tmp_path):
    switch = tmp_path / "fail"
    switch.write_text("1")
    cls = load_flow(f"""
        from pathlib import Path
        class Twice(FlowSpec):
            @step
            def start(self):
                self.base = 20
                self.next(self.fragile)
            @step
            def fragile(self):
                if Path({str(switch)!r}).read_text() == "1":
                    raise RuntimeError("broken for now")
                self.out = self.base + 1
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="broken for now"):
        _run(cls, executor)
    switch.write_text("0")
    run_id = LocalRuntime(cls, quiet=True, executor=executor).resume()
    r = Run(f"Twice/{run_id}")
    assert r.successful and r.data.out == 21
    assert r["start"].task.origin_pathspec == "Twice/1/start/1"
    assert r["fragile"].task.origin_pathspec is None


CTRL_C = """
import os, time
from pathlib import Path
from reelflow import FlowSpec, step

MARK = "MARK_PATH"  # a Ray worker does not inherit the driver's environment: the path is in the code

class Stoppable(FlowSpec):
    @step
    def start(self):
        self.next(self.wait)

    @step
    def wait(self):
        print("waiting", flush=True)
        Path(MARK).write_text(str(os.getpid()))
        time.sleep(300)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Stoppable()
"""


def test_ctrl_c_stops_the_run_and_records_it(write_flow, executor, tmp_path, request):
    _interrupt(write_flow, executor, tmp_path, request, signal.SIGINT)


def test_sigterm_stops_a_ray_run_too(write_flow, tmp_path, request, ray_single):
    # ray.init installs a SIGTERM handler of its own; the run's must win (exit 143, run recorded)
    _interrupt(write_flow, "ray", tmp_path, request, signal.SIGTERM)


def _interrupt(write_flow, executor, tmp_path, request, sig):
    mark = tmp_path / "mark"
    path = write_flow(CTRL_C.replace("MARK_PATH", str(mark)))
    env = dict(os.environ)
    if executor == "ray":
        env["RAY_ADDRESS"] = request.getfixturevalue("ray_single").address
    proc = subprocess.Popen([sys.executable, str(path), "run", "--executor", executor], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=path.parent, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended ({proc.returncode}) before its step started:\n{out}\n{err}")
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # a terminal's Ctrl-C: the whole foreground group
        else:
            proc.send_signal(sig)  # `kill` or a supervisor: the runner only
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, (out, err)
    assert f"interrupted ({name})" in err and "Traceback" not in err
    step_pid = int(mark.read_text())
    if executor != "inprocess":  # the step's process is gone (a Ray worker too: cancelled with force)
        deadline = time.monotonic() + 60
        while _alive(step_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(step_pid)
    namespace(None)
    r = Flow("Stoppable").latest_run
    assert r.status == "failed" and r.status_reason == "interrupted"
    assert f"stopped by {name}" in r["wait"].task.exception


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


# -- the protocol and choosing an executor -----------------------------------------------
def test_every_local_executor_implements_the_protocol(load_flow, tmp_path):
    cls = load_flow("""
        class P(FlowSpec):
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    from reelflow.store import get_store

    ctx = ExecutorContext(cls, get_store(), tmp_path, echo=None)
    for name in ("inprocess", "fork", "forkserver", "spawn"):
        ex = make_executor(name, ctx)
        try:
            assert isinstance(ex, Executor) and ex.name == name and len(ex) == 0
            assert ex.default_workers() >= 1
        finally:
            ex.shutdown()


def test_choosing_the_executor(monkeypatch):
    assert resolve_executor_name(None, inprocess=True) == "inprocess"
    assert resolve_executor_name("spawn") == "spawn"
    assert resolve_executor_name(None, use_fork=False) == "spawn"
    assert resolve_executor_name(None, zygote=object()) == "forkserver"
    monkeypatch.setenv("REELFLOW_EXECUTOR", "Spawn")
    assert resolve_executor_name(None) == "spawn"
    monkeypatch.setenv("REELFLOW_EXECUTOR", "dask")
    with pytest.raises(ParameterError, match=r"REELFLOW_EXECUTOR='dask' is not an executor; choose one of"):
        resolve_executor_name(None)
    with pytest.raises(ParameterError, match="--inprocess .* cannot be combined with --executor ray"):
        resolve_executor_name("ray", inprocess=True)


def test_executor_option_on_the_command_line(write_flow):
    path = write_flow(CTRL_C.replace("time.sleep(300)", "pass").replace("MARK_PATH", os.devnull))
    p = subprocess.run([sys.executable, str(path), "run", "--executor", "nope"], capture_output=True, text=True,
                       cwd=path.parent, timeout=120)
    assert p.returncode == 2 and "'nope' is not one of" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, str(path), "run", "--with", "ray:port=1"], capture_output=True, text=True,
                       cwd=path.parent, timeout=120)
    assert p.returncode == 2 and "the ray executor takes address" in p.stderr
    env = {**os.environ, "REELFLOW_EXECUTOR": "spawn"}
    p = subprocess.run([sys.executable, str(path), "run"], capture_output=True, text=True, cwd=path.parent,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "[1/wait/2] waiting" in p.stdout


def test_ray_executor_without_ray_names_the_extra(load_flow, monkeypatch):
    from reelflow import _extras
    from reelflow.errors import MissingExtraError

    real = _extras._installed
    monkeypatch.setattr(_extras, "_installed", lambda m: m != "ray" and real(m))  # as if Ray were absent
    cls = load_flow("""
        class NoRay(FlowSpec):
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(MissingExtraError, match=r"--executor ray needs ray.*pip install 'reelflow\[ray\]'"):
        _run(cls, "ray")
    from reelflow.store import get_store

    assert get_store().metadata.list_runs("NoRay") == []  # refused before a run was recorded


def test_the_core_install_does_not_import_ray(write_flow):
    path = write_flow(CTRL_C.replace("time.sleep(300)", "pass").replace("MARK_PATH", os.devnull))
    code = (f"import sys, runpy; sys.argv = [{str(path)!r}, 'run', '--quiet']\n"
            f"try:\n    runpy.run_path({str(path)!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=path.parent, timeout=120)
    assert p.returncode == 0, p.stderr


def test_unsatisfiable_resources_fail_early_naming_the_step(load_flow, ray_single):
    cls = load_flow("""
        class Gpu(FlowSpec):
            @step
            def start(self):
                self.next(self.train)
            @resources(gpu=1)
            @step
            def train(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    t0 = time.monotonic()
    with pytest.raises(RunFailedError, match=r"step 'train' cannot run .*gpu=1.*no node of the Ray cluster has that"):
        _run(cls, "ray")
    assert time.monotonic() - t0 < 60


def test_ray_task_resources_and_node(load_flow, ray_single):
    cls = load_flow("""
        import ray
        class Res(FlowSpec):
            @resources(cpu=2, memory=64)
            @step
            def start(self):
                ctx = ray.get_runtime_context()
                self.node = ctx.get_node_id()
                self.cpus = ctx.get_assigned_resources().get("CPU")
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    import ray

    r = _run(cls, "ray")
    assert r.data.cpus == 2.0
    assert r.data.node in {n["NodeID"] for n in ray.nodes()}
    assert r["start"].task.resources["cpu"] == 2


def test_ray_workers_get_the_flow_code_from_the_store(write_flow, ray_single):
    # A sibling module the flow imports, and the flow's own file, come from the code
    # snapshot in the store, unpacked by the worker; not from the driver's folder.
    path = write_flow("""
        import helpers_for_ray

        class Shipped(FlowSpec):
            @step
            def start(self):
                self.value = helpers_for_ray.answer()
                self.where = __file__
                self.next(self.end)
            @step
            def end(self):
                pass
    """, "shipped_flow.py")
    (path.parent / "helpers_for_ray.py").write_text("def answer():\n    return 42\n")
    from reelflow.cli import load_flow_file

    sys.path.insert(0, str(path.parent))
    try:
        cls = load_flow_file(str(path))
    finally:
        sys.path.remove(str(path.parent))
    r = _run(cls, "ray")
    assert r.data.value == 42
    assert "reelflow-code-" in r.data.where and not r.data.where.startswith(str(path.parent))


@pytest.mark.parametrize("how", [["--with", "ray"], ["--executor", "ray"], "env"])
def test_ray_from_the_command_line_echoes_logs_with_the_pathspec(write_flow, ray_single, how):
    path = write_flow(CTRL_C.replace("time.sleep(300)", "pass").replace("MARK_PATH", os.devnull))
    env = {**os.environ, "RAY_ADDRESS": ray_single.address}
    if how == "env":
        env["REELFLOW_EXECUTOR"] = "ray"
        how = []
    p = subprocess.run([sys.executable, str(path), "run", *how], capture_output=True, text=True, cwd=path.parent,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    assert "[1/wait/2] waiting" in p.stdout  # the step's output, back from the Ray worker with its prefix
    namespace(None)
    task = Flow("Stoppable").latest_run["wait"].task
    assert task.stdout == "waiting\n"
