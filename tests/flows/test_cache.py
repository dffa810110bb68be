"""Step caching across runs (``@cache``, ``--cache``): a step whose code and inputs match a successful
earlier task is cloned by reference instead of run; a changed step and what it changes re-run."""

import subprocess
import sys

import pytest

from helpers import run_py
from reelflow import Flow, namespace

FLOW = '''
from reelflow import FlowSpec, step, cache, Parameter

SCALE = 2


def helper(x):
    return x * SCALE  # HELPER


class CacheFlow(FlowSpec):
    n = Parameter("n", default=3, type=int)

    @cache
    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.work, foreach="items")

    @cache
    @step
    def work(self):
        print("working on", self.input)
        self.out = helper(self.input) + self._bump()
        self.next(self.join)

    def _bump(self):
        return 0  # BUMP

    @cache
    @step
    def join(self, inputs):
        print("joining")
        self.total = sum(i.out for i in inputs)
        self.next(self.end)

    @cache(enabled=False)  # side effects: always runs
    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    CacheFlow()
'''


def _run(path, *args, check=True):
    proc = run_py(path, "run", *args, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _cached_steps(run):
    return sorted({t.pathspec.split("/")[2] for st in run for t in st if t.cached_from})


@pytest.fixture
def flow_file(tmp_path):
    path = tmp_path / "cache_flow.py"
    path.write_text(FLOW)
    return path


def test_rerun_is_cached_and_changes_rerun_what_they_change(flow_file):
    namespace(None)
    first = _run(flow_file)
    assert first.stdout.count("working on") == 3
    again = _run(flow_file)
    assert "working on" not in again.stdout and "joining" not in again.stdout
    assert "total 6" in again.stdout  # the step marked with side effects ran, on the cached inputs
    run2 = Flow("CacheFlow")["2"]
    assert run2.successful and run2.data.total == 6
    assert _cached_steps(run2) == ["join", "start", "work"]
    work = list(run2["work"])
    assert {t.cached_from for t in work} == {f"CacheFlow/1/work/{i}" for i in (2, 3, 4)}
    assert {t.origin_pathspec for t in work} == {t.cached_from for t in work}
    # by reference: the same blobs, the same logs
    t1 = Flow("CacheFlow")["1"]["work"].task
    t2 = run2["work"].task
    assert t2._refs["out"].key == t1._refs["out"].key and t2.data.out == t1.data.out
    assert t2.stdout == t1.stdout
    assert run2["end"].task.cached_from is None
    shown = subprocess.run([sys.executable, "-c", "from reelflow.cli import main; main()", "runs", "show",
                            "CacheFlow/2"], capture_output=True, text=True, timeout=120)
    assert "cached from CacheFlow/1/join/5" in shown.stdout, shown.stdout + shown.stderr

    # a comment or blank line is not a change
    flow_file.write_text(FLOW.replace("# BUMP", "# a comment\n"))
    assert "working on" not in _run(flow_file).stdout
    # a method the step calls changed: that step re-runs, and join (its inputs changed) too; start is reused
    flow_file.write_text(FLOW.replace("return 0  # BUMP", "return 1"))
    changed = _run(flow_file)
    assert changed.stdout.count("working on") == 3 and "joining" in changed.stdout and "total 9" in changed.stdout
    assert _cached_steps(Flow("CacheFlow").latest_run) == ["start"]
    # the flow-file function it calls changed, yet gives the same outputs: work re-runs, join is reused
    flow_file.write_text(FLOW.replace("return x * SCALE  # HELPER", "return SCALE * x"))
    same = _run(flow_file)
    assert same.stdout.count("working on") == 3 and "joining" not in same.stdout
    assert _cached_steps(Flow("CacheFlow").latest_run) == ["join", "start"]
    # a constant of the flow file that the called function reads
    flow_file.write_text(FLOW.replace("SCALE = 2", "SCALE = 3"))
    assert _run(flow_file).stdout.count("working on") == 3
    # a parameter is an input
    assert _run(flow_file, "--n", "2").stdout.count("working on") == 2


def test_run_option_caches_every_step_but_those_with_side_effects(flow_file):
    namespace(None)
    plain = flow_file.with_name("plain_flow.py")
    plain.write_text(FLOW.replace("    @cache\n", ""))
    _run(plain)
    assert _run(plain).stdout.count("working on") == 3  # not opted in: runs again
    _run(plain, "--cache")  # the first --cache run computes keys (earlier runs were never keyed)
    out = _run(plain, "--cache").stdout
    assert "working on" not in out and "total 6" in out  # end keeps @cache(enabled=False)
    assert _cached_steps(Flow("CacheFlow").latest_run) == ["join", "start", "work"]
    from reelflow import Runner

    with Runner(str(plain), show_output=False).run(cache=True) as running:
        assert _cached_steps(running.run) == ["join", "start", "work"]


def test_two_runs_at_once_then_resume(flow_file, tmp_path):
    import os

    namespace(None)
    procs = [subprocess.Popen([sys.executable, str(flow_file), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dict(os.environ), cwd=tmp_path) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list(Flow("CacheFlow"))
    assert sorted(r.data.total for r in runs) == [6, 6]
    third = _run(flow_file)
    assert "working on" not in third.stdout
    # a failing run after cached steps, then resume: the cached tasks are cloned, the fixed step runs
    flow_file.write_text(FLOW.replace('print("total", self.total)', 'raise RuntimeError("end broke")'))
    failed = _run(flow_file, check=False)
    assert failed.returncode != 0 and "working on" not in failed.stdout
    flow_file.write_text(FLOW)
    resumed = run_py(flow_file, "resume", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    last = Flow("CacheFlow").latest_run
    assert last.successful and last.data.total == 6 and "working on" not in resumed.stdout


def test_bad_cache_option(write_flow):
    from reelflow.errors import FlowDefinitionError
    from reelflow.flows import cache

    with pytest.raises(FlowDefinitionError, match="enabled is True"):
        cache(enabled="yes")(lambda self: None)


CAUGHT = '''
from reelflow import FlowSpec, step, cache, catch


class CaughtFlow(FlowSpec):
    @cache
    @catch(var="err", print_exception=False)
    @step
    def start(self):
        print("trying")
        raise ValueError("flaky")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CaughtFlow()
'''


def test_a_caught_failure_is_never_reused(tmp_path):
    path = tmp_path / "caught_flow.py"
    path.write_text(CAUGHT)
    assert "trying" in _run(path).stdout
    assert "trying" in _run(path).stdout  # the @catch fallback's outputs are not a cache entry
