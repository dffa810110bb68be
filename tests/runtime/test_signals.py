"""Interrupting a run (Ctrl-C, SIGTERM), @timeout and crashes, in real processes.

Every test waits for a marker file a step writes before it sends a signal, so it
checks the interruption of a running task whatever the machine's load; every
wait is generous and every process it starts is ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelflow import Flow, namespace
from reelflow.errors import RunFailedError

GROUP = """
import os, subprocess, sys, time
from pathlib import Path
from reelflow import FlowSpec, step, timeout

MARKS = Path(os.environ["MARKS"])

class Group(FlowSpec):
    @step
    def start(self):
        self.xs = [0, 1]
        self.next(self.work, foreach="xs")

    @TIMEOUT
    @step
    def work(self):
        child = subprocess.Popen(["sleep", "300"])
        (MARKS / f"child-{self.input}.pid").write_text(str(child.pid))
        (MARKS / f"worker-{self.input}.pid").write_text(str(os.getpid()))
        print("working", flush=True)
        time.sleep(300)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Group()
"""


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_for(pred, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the runner exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def marks(tmp_path):
    d = tmp_path / "marks"
    d.mkdir()
    pids: list[int] = []
    yield d, pids
    for f in d.glob("*.pid"):  # whatever happened, nothing outlives the test
        pids.append(int(f.read_text()))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _start(path: Path, marks_dir: Path, *args: str, fork_server: str = "1") -> subprocess.Popen:
    env = {**os.environ, "MARKS": str(marks_dir), "REELFLOW_FORK_SERVER": fork_server}
    return subprocess.Popen([sys.executable, str(path), "run", "--max-workers", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=path.parent,
                            env=env, start_new_session=True)


def _children(marks_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(marks_dir.glob("child-*.pid"))]


@pytest.mark.parametrize("sig, code, fork_server", [
    (signal.SIGINT, 130, "1"),
    (signal.SIGTERM, 143, "1"),
    (signal.SIGINT, 130, "0"),
])
def test_signal_stops_the_run_its_workers_and_their_children(write_flow, marks, sig, code, fork_server):
    marks_dir, pids = marks
    path = write_flow(GROUP.replace("    @TIMEOUT\n", ""))
    proc = _start(path, marks_dir, fork_server=fork_server)
    pids.append(proc.pid)
    try:
        _wait_for(lambda: len(list(marks_dir.glob("worker-*.pid"))) == 2, "both work tasks to start", proc)
        _wait_for(lambda: len(_children(marks_dir)) == 2, "both children to start", proc)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does: the whole foreground group
        else:
            proc.send_signal(sig)  # what `kill` or a supervisor does: the runner only
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == code, (out, err)
    name = signal.Signals(sig).name
    assert f"interrupted ({name})" in err and "Traceback" not in err
    assert "WorkerCrashed" not in out + err  # an interrupted worker is not a crash
    _wait_for(lambda: all(_gone(p) for p in _children(marks_dir)), "the steps' children to be stopped", timeout=30)
    namespace(None)
    r = Flow("Group").latest_run
    assert r.finished and not r.successful and r.status == "failed"
    assert r.status_reason == "interrupted"
    work = r["work"].tasks()
    assert len(work) == 2 and all(not t.successful for t in work)
    assert all(f"stopped by {name}" in t.exception for t in work)
    assert all(t.stdout == "working\n" for t in work)  # output up to the interruption is kept
    assert r["start"].task.successful


def test_timeout_stops_the_steps_children(write_flow, marks):
    marks_dir, pids = marks
    path = write_flow(GROUP.replace("@TIMEOUT", "@timeout(seconds=2)").replace('self.xs = [0, 1]', 'self.xs = [0]'))
    proc = _start(path, marks_dir)
    pids.append(proc.pid)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert "timed out after 2s (@timeout)" in err
    children = _children(marks_dir)
    assert len(children) == 1
    _wait_for(lambda: _gone(children[0]), "the timed-out step's child to be stopped", timeout=30)


def test_inprocess_timeout_raises_in_the_step(load_flow):
    from reelflow.runtime import LocalRuntime

    cls = load_flow("""
        import time
        class SlowHere(FlowSpec):
            @timeout(seconds=1)
            @step
            def start(self):
                time.sleep(60)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    with pytest.raises(RunFailedError, match="timed out after 1s"):
        LocalRuntime(cls, quiet=True, inprocess=True).run()
    assert time.monotonic() - t0 < 50
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_crash_message_names_the_real_signal(load_flow):
    from reelflow.runtime import LocalRuntime

    cls = load_flow("""
        import os, signal
        class Killed(FlowSpec):
            @step
            def start(self):
                os.kill(os.getpid(), signal.SIGTERM)
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(RunFailedError, match="killed by signal SIGTERM .*a signal sent to the worker from outside"):
        LocalRuntime(cls, quiet=True).run()


PARTIAL = """
import os, time
from pathlib import Path
from reelflow import FlowSpec, step

class Partial(FlowSpec):
    @step
    def start(self):
        self.xs = [0, 1, 2]
        self.next(self.work, foreach="xs")

    @step
    def work(self):
        if self.input > 0 and os.environ.get("HANG"):
            Path(os.environ["MARKS"], str(self.input)).touch()
            time.sleep(300)
        self.y = self.input * 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Partial()
"""


def _recorded_work(flow: str) -> int:
    from reelflow.store import get_store

    md = get_store().metadata
    if flow not in md.list_flows():
        return 0
    run_id = md.list_runs(flow)[0]["run_id"]
    return sum(t["status"] == "succeeded" for t in md.tasks_of_run(run_id, "work"))


@pytest.mark.parametrize("inprocess", [False, True])
def test_an_interrupted_run_resumes_reusing_its_finished_tasks(write_flow, marks, inprocess):
    from helpers import run_py

    marks_dir, pids = marks
    path = write_flow(PARTIAL)
    extra = ["--inprocess"] if inprocess else ["--max-workers", "3"]
    env = {**os.environ, "MARKS": str(marks_dir), "HANG": "1"}
    proc = subprocess.Popen([sys.executable, str(path), "run", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=path.parent, env=env, start_new_session=True)
    pids.append(proc.pid)
    try:
        _wait_for(lambda: any(marks_dir.iterdir()), "a work task to hang", proc)
        if not inprocess:
            _wait_for(lambda: len(list(marks_dir.iterdir())) == 2, "both hanging tasks to start", proc)
            _wait_for(lambda: _recorded_work("Partial") == 1, "the quick work task to be recorded", proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    origin = Flow("Partial").latest_run
    assert origin.status == "failed"
    done = [t for t in origin["work"].tasks() if t.successful]
    assert [t.index for t in done] == [0]
    p = run_py(path, "resume", *extra)
    assert p.returncode == 0, p.stderr
    r = Flow("Partial").latest_run
    assert r.origin_run_id == origin.id and r.data.ys == [0, 10, 20]
    by_index = {t.index: t for t in r["work"].tasks()}
    assert by_index[0].origin_pathspec == done[0].pathspec  # reused, not run again
    assert by_index[1].origin_pathspec is None and by_index[2].origin_pathspec is None


def test_interrupting_runner_in_a_notebook_stops_the_run_cleanly(write_flow, marks, tmp_path):
    """A notebook's interrupt (SIGINT to the kernel only) reaches the run, which is recorded as failed."""
    marks_dir, pids = marks
    path = write_flow(GROUP.replace("    @TIMEOUT\n", ""))
    driver = tmp_path / "notebook.py"
    driver.write_text(
        "import sys\nfrom reelflow import Runner\n"
        "try:\n"
        f"    Runner({str(path)!r}, show_output=False).run(max_workers=2)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted in the notebook')\n"
    )
    env = {**os.environ, "MARKS": str(marks_dir)}
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    pids.append(proc.pid)
    try:
        _wait_for(lambda: len(_children(marks_dir)) == 2, "both steps to start their children", proc)
        proc.send_signal(signal.SIGINT)  # the kernel only, not its process group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "interrupted in the notebook" in out, err
    r = Flow("Group").latest_run
    assert r.status == "failed"  # recorded, not abandoned
    _wait_for(lambda: all(_gone(p) for p in _children(marks_dir)), "the steps' children to be stopped", timeout=30)


def test_sigkill_of_the_runner_stops_the_steps_children(write_flow, marks):
    """Even a runner killed outright (OOM killer, kill -9) leaves no step's process behind."""
    marks_dir, pids = marks
    path = write_flow(GROUP.replace("    @TIMEOUT\n", ""))
    proc = _start(path, marks_dir)
    pids.append(proc.pid)
    try:
        _wait_for(lambda: len(_children(marks_dir)) == 2, "both steps to start their children", proc)
        proc.kill()
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    _wait_for(lambda: all(_gone(p) for p in _children(marks_dir)), "the steps' children to be stopped", timeout=30)
    namespace(None)
    row = Flow("Group").latest_run._row
    assert row["pid"] == proc.pid
    assert row["status"] == "abandoned", (row, os.path.exists(f"/proc/{proc.pid}"))
