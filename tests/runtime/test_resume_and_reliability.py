"""Resume, crashes, SIGKILL, concurrency and the flow command line, in real processes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from reelflow import Flow, Run, namespace
from reelflow.errors import CorruptArtifactError

from helpers import run_py

FIVE = """
import os
from reelflow import FlowSpec, step, Parameter

class Five(FlowSpec):
    n = Parameter("n", default=1)

    @step
    def start(self):
        self.a = self.n
        self.next(self.s2)

    @step
    def s2(self):
        self.b = self.a + 1
        self.next(self.s3)

    @step
    def s3(self):
        self.c = self.b + 1
        self.next(self.s4)

    @step
    def s4(self):
        if os.path.exists(os.environ.get("FAIL_MARKER", "/nonexistent")):
            raise RuntimeError("s4 is broken")
        self.d = self.c + 1
        self.next(self.end)

    @step
    def end(self):
        self.total = self.d

if __name__ == "__main__":
    Five()
"""


def test_resume_reuses_successful_tasks(write_flow, tmp_path):
    path = write_flow(FIVE)
    marker = tmp_path / "fail"
    marker.touch()
    env = {"FAIL_MARKER": str(marker)}
    p = run_py(path, "run", "--n", "5", env=env)
    assert p.returncode == 1
    assert "step 's4' failed" in p.stderr and "s4 is broken" in p.stderr
    assert "reelflow/runtime" not in p.stderr  # only the user's frames are shown
    origin = Flow("Five").latest_run
    assert origin.finished and not origin.successful
    marker.unlink()
    p = run_py(path, "resume", env=env)
    assert p.returncode == 0, p.stderr
    r = Flow("Five").latest_run
    assert r.id != origin.id and r.origin_run_id == origin.id
    assert r.successful and r.data.total == 8
    for s in ("start", "s2", "s3"):
        t = r[s].task
        assert t.origin_pathspec == f"Five/{origin.id}/{s}/{origin[s].task.id}"
        assert t["n"].sha == origin[s].task["n"].sha
    assert r["s4"].task.origin_pathspec is None
    assert r.data.n == 5


def test_resume_named_step_and_errors(write_flow):
    path = write_flow(FIVE)
    assert run_py(path, "run").returncode == 0
    p = run_py(path, "resume")  # a successful run: cloned whole (Metaflow's rule; tests/compat/test_spin_resume.py)
    assert p.returncode == 0, p.stderr
    p = run_py(path, "resume", "s3")
    assert p.returncode == 0, p.stderr
    r = Flow("Five").latest_run
    assert r["s2"].task.origin_pathspec and not r["s3"].task.origin_pathspec
    p = run_py(path, "resume", "nope")
    assert p.returncode == 2 and "has no step 'nope'" in p.stderr


def test_cli_bad_input_is_a_usage_error(write_flow):
    path = write_flow(FIVE.replace('Parameter("n", default=1)', 'Parameter("n", type=int, required=True)'))
    for args, needle in [
        (["run", "--bogus", "1"], "No such option"),
        (["run", "--n", "x"], "is not a valid int"),
        (["run"], "parameter 'n' is required"),
        (["run", "--with", "nosuch"], "unknown decorator 'nosuch'"),
        (["frobnicate"], "No such command"),
    ]:
        p = run_py(path, *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert needle in p.stderr
        assert "Traceback" not in p.stderr


def test_broken_flow_refused_before_running(write_flow):
    path = write_flow(FIVE.replace("self.next(self.end)", "self.next(self.ending)"))
    p = run_py(path, "run")
    assert p.returncode == 1
    assert "step 's4' calls self.next(self.ending) but the flow has no step 'ending'" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_py(path, "check")
    assert p.returncode == 1


def test_show_check_and_logs(write_flow):
    path = write_flow(FIVE.replace("self.a = self.n", "self.a = self.n\n        print('hello from start')"))
    p = run_py(path, "check")
    assert p.returncode == 0 and "valid: 5 steps, 1 parameters" in p.stdout
    assert "Step s2  => s3" in run_py(path, "show").stdout
    p = run_py(path, "run")
    assert "hello from start" in p.stdout and "/start/1] hello from start" in p.stdout
    run_id = Flow("Five").latest_run.id
    p = run_py(path, "logs", f"{run_id}/start")
    assert p.returncode == 0 and "hello from start" in p.stdout
    quiet = run_py(path, "run", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    quiet_id = Flow("Five").latest_run.id
    # The run id and the result line, nothing of the tasks.
    assert quiet.stdout.splitlines()[0] == f"Run Five/{quiet_id} started"
    assert f"Run Five/{quiet_id} succeeded" in quiet.stdout.splitlines()[-1]
    assert "hello from start" not in quiet.stdout and "done in" not in quiet.stdout


def test_reelflow_run_command_and_runs_cli(write_flow):
    path = write_flow(FIVE)
    exe = [sys.executable, "-m", "reelflow.cli"]
    p = subprocess.run([*exe, "run", str(path), "--n", "2", "--tag", "exp1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = Flow("Five").latest_run
    assert r.data.total == 5 and "exp1" in r.tags
    p = subprocess.run([*exe, "runs", "list"], capture_output=True, text=True)
    assert f"Five/{r.id}" in p.stdout and "succeeded" in p.stdout
    p = subprocess.run([*exe, "runs", "show", f"Five/{r.id}"], capture_output=True, text=True)
    assert p.returncode == 0 and "Step s4: 1/1 tasks succeeded" in p.stdout and "total" in p.stdout
    p = subprocess.run([*exe, "runs", "show", "Five/999"], capture_output=True, text=True)
    assert p.returncode == 1 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([*exe, "run", "missing.py"], capture_output=True, text=True)
    assert p.returncode == 1 and "does not exist" in p.stderr


SLOW = """
import time
from reelflow import FlowSpec, step

class Slow(FlowSpec):
    @step
    def start(self):
        self.xs = list(range(6))
        self.next(self.work, foreach="xs")

    @step
    def work(self):
        time.sleep(0.3)
        self.y = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Slow()
"""


MARKED = SLOW.replace("import time", "import os, time").replace(
    "        time.sleep(0.3)\n",
    "        open(os.path.join(os.environ['MARKS'], f'{self.input}.{os.getpid()}'), 'w').close()\n"
    "        time.sleep(float(os.environ.get('WORK_SECONDS', '0.3')))\n",
)


def _wait_marks(proc, marks, n, timeout=120.0):
    deadline = time.monotonic() + timeout
    while len(os.listdir(marks)) < n:
        assert proc.poll() is None, f"the run ended ({proc.returncode}) before {n} work tasks started"
        assert time.monotonic() < deadline, f"fewer than {n} work tasks started in {timeout:.0f}s"
        time.sleep(0.05)


@pytest.mark.parametrize("started", [1, 4])
def test_sigkill_leaves_a_readable_store_that_resume_finishes(write_flow, tmp_path, started):
    path = write_flow(MARKED)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "MARKS": str(marks), "WORK_SECONDS": "1.0"}
    proc = subprocess.Popen([sys.executable, str(path), "run", "--max-workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=path.parent)
    try:
        _wait_marks(proc, marks, started)  # work tasks are running: the run and its start task are recorded
    finally:
        proc.kill()
        proc.wait(timeout=120)
    namespace(None)
    r = Flow("Slow").latest_run
    assert r.status == "abandoned" and r.finished and not r.successful
    assert "is gone" in r.abandoned_reason
    assert r["start"].task.successful
    for s in r.steps():
        for t in s.tasks():
            assert t.successful
            assert dict(t.artifacts)  # every recorded task has its artifacts
            for name in t.artifacts:
                t[name].data  # and they load
    p = run_py(path, "resume", "--origin-run-id", r.id, env=env)
    assert p.returncode == 0, p.stderr
    resumed = Flow("Slow").latest_run
    assert resumed.origin_run_id == r.id and resumed.successful
    assert resumed.data.ys == [0, 2, 4, 6, 8, 10]
    assert resumed["start"].task.origin_pathspec == f"Slow/{r.id}/start/{r['start'].task.id}"


def _has_flow(name):
    from reelflow.store import get_store

    return name in get_store().metadata.list_flows()


def test_concurrent_runs_lose_nothing(write_flow):
    path = write_flow(SLOW.replace("time.sleep(0.3)", "time.sleep(0.01)").replace("range(6)", "range(20)"))
    procs = [subprocess.Popen([sys.executable, str(path), "run", "--quiet"], cwd=path.parent) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    runs = Flow("Slow").runs()
    assert len(runs) == 3 and len({r.id for r in runs}) == 3
    for r in runs:
        assert r.successful
        assert len(r["work"].tasks()) == 20
        assert r.data is not None and r["join"].task.data.ys == [2 * i for i in range(20)]


def test_corrupt_blob_detected_on_read(write_flow, reelflow_home):
    path = write_flow(FIVE)
    assert run_py(path, "run").returncode == 0
    r = Flow("Five").latest_run
    art = r["end"].task["total"]
    blob = reelflow_home / "blobs" / art.sha[:2] / art.sha
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    fresh = Run(r.pathspec)
    with pytest.raises(CorruptArtifactError, match=f"artifact 'total' of Five/{r.id}/end/.*hash check"):
        fresh.data.total


def test_runner_runs_and_resumes(write_flow, tmp_path):
    from reelflow import Runner

    path = write_flow(FIVE)
    marker = tmp_path / "fail"
    marker.touch()
    runner = Runner(path, show_output=False, env={"FAIL_MARKER": str(marker)})
    res = runner.run(n=10, quiet=True)
    assert res.status == "failed" and res.run is not None and not res.run.successful
    assert "s4 is broken" in res.stderr
    marker.unlink()
    with runner.resume() as res2:
        assert res2.status == "successful"
        assert res2.run.data.total == 13
        assert res2.run.origin_run_id == res.run.id


def test_ctrl_c_stops_cleanly_and_marks_the_run_failed(write_flow, tmp_path):
    path = write_flow(MARKED)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "MARKS": str(marks), "WORK_SECONDS": "300"}
    proc = subprocess.Popen([sys.executable, str(path), "run", "--max-workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=path.parent, env=env, start_new_session=True)
    try:
        _wait_marks(proc, marks, 2)  # both workers are inside the step, however loaded the machine
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "interrupted (SIGINT)" in err and "Traceback" not in err and "WorkerCrashed" not in out + err
    r = Flow("Slow").latest_run
    assert r.finished and not r.successful and r.status == "failed"
    assert [t.exception.startswith("Interrupted") for t in r["work"].tasks()] == [True, True]


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_workers_fork_from_the_fork_server(write_flow, fork_server):
    path = write_flow("""
import os
from reelflow import FlowSpec, step

class Parents(FlowSpec):
    @step
    def start(self):
        self.xs = [1, 2, 3]
        self.next(self.work, foreach="xs")

    @step
    def work(self):
        self.ppid = os.getppid()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.ppids = sorted({i.ppid for i in inputs})
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Parents()
""")
    p = run_py(path, "run", "--quiet", env={"REELFLOW_FORK_SERVER": fork_server})
    assert p.returncode == 0, p.stderr
    run = Flow("Parents").latest_run
    scheduler_pid = run._row["pid"]
    ppids = run["join"].task.data.ppids
    assert len(ppids) == 1  # one parent for every worker
    assert (ppids[0] != scheduler_pid) == (fork_server == "1")
