"""Fault injection for the runtime: runs killed at random points must leave a consistent,
resumable store, no processes and no temporary files.

Each round starts a small foreach flow in a subprocess, waits until a seeded random
number of its tasks have started, then sends SIGKILL or SIGTERM to the runner or to
one of its workers. After each kill: every recorded task's artifacts load, no run
reads as ``running`` while its process is dead, ``resume`` finishes the run with the
right answer, nothing the run started is alive (including a process each step starts),
and ``REELFLOW_HOME/tmp`` is empty.
Bounded: six rounds, loopback only, every process ended whatever happens.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelflow import Flow, namespace

from helpers import run_py

FLOW = """
import os, subprocess, time
from reelflow import FlowSpec, step

class Faulty(FlowSpec):
    @step
    def start(self):
        self.xs = list(range(6))
        self.next(self.work, foreach="xs")

    @step
    def work(self):
        marks = os.environ["MARKS"]
        child = subprocess.Popen(["sleep", "300"])  # a process the step starts
        with open(os.path.join(os.environ["CHILDREN"], str(child.pid)), "w"):
            pass
        open(os.path.join(marks, f"work-{self.input}-{os.getpid()}"), "w").close()
        time.sleep(0.2)
        child.kill()  # a step that finishes ends what it started; a killed one cannot
        child.wait()
        self.y = self.input * 3
        self.next(self.join)

    @step
    def join(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.ys)

if __name__ == "__main__":
    Faulty()
"""

ROUNDS = 6
DEADLINE = 120.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (through /proc's children lists)."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = {int(k) for k in f.read().split()}
                stack.extend(kids - found)
                found |= kids
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _check_store(path: Path, env: dict[str, str]) -> str:
    """The store invariants after a kill; returns the id of the run to resume."""
    namespace(None)
    runs = Flow("Faulty").runs()
    for r in runs:
        assert r.status != "running", f"run {r.pathspec} reads as running after its runner was stopped"
        for s in r.steps():
            for t in s.tasks():
                if t.successful:
                    for name in t.artifacts:
                        t[name].data  # every recorded artifact loads (its hash is checked)
    return runs[0].id


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find leftover processes")
def test_runs_killed_at_random_points_resume_cleanly(write_flow, tmp_path, reelflow_home):
    rng = random.Random(20261126)
    path = write_flow(FLOW)
    summary = {"kills": 0, "runner": 0, "worker": 0, "SIGKILL": 0, "SIGTERM": 0, "resumes_ok": 0,
               "leftover_processes": 0, "stale_tmp_entries": 0}
    started = time.monotonic()
    for round_no in range(ROUNDS):
        marks = tmp_path / f"marks-{round_no}"
        marks.mkdir()
        children = tmp_path / f"children-{round_no}"
        children.mkdir()
        env = {**os.environ, "MARKS": str(marks), "CHILDREN": str(children)}
        target = "runner" if round_no % 2 == 0 else "worker"
        sig = signal.SIGKILL if round_no % 4 < 2 else signal.SIGTERM
        wait_for = rng.randint(1, 4)
        proc = subprocess.Popen([sys.executable, str(path), "run", "--max-workers", "2", "--quiet"], env=env,
                                cwd=path.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        seen: set[int] = set()
        try:
            deadline = time.monotonic() + DEADLINE
            while len(os.listdir(marks)) < wait_for:
                assert proc.poll() is None, f"round {round_no}: the run ended before the kill"
                assert time.monotonic() < deadline, f"round {round_no}: tasks did not start"
                seen |= _descendants(proc.pid)
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15))
            seen |= _descendants(proc.pid)
            if target == "runner":
                os.kill(proc.pid, sig)
            else:
                running = [int(m.rsplit("-", 1)[1]) for m in os.listdir(marks)]
                victims = [p for p in running if _alive(p)] or running
                os.kill(rng.choice(victims), sig)
            _, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        summary["kills"] += 1
        summary[target] += 1
        summary[signal.Signals(sig).name] += 1
        if target == "runner" and sig == signal.SIGTERM:
            assert proc.returncode == 143, err
        elif target == "worker":
            assert proc.returncode == 1 and "WorkerCrashed" in err and "Traceback" not in err, err
        # Everything the run started ends with it: workers, the fork server and whatever the
        # killed task's step started (a finished task's children end on their own).
        started_by_steps = {int(c) for c in os.listdir(children)}
        seen |= started_by_steps
        end = time.monotonic() + 30
        while any(_alive(p) for p in seen) and time.monotonic() < end:
            time.sleep(0.05)
        left = [p for p in seen if _alive(p)]
        summary["leftover_processes"] += len(left)
        assert not left, f"round {round_no}: processes {left} outlived the killed run"

        run_id = _check_store(path, env)
        p = run_py(path, "resume", "--origin-run-id", run_id, "--quiet", env=env)
        assert p.returncode == 0, f"round {round_no}: resume failed:\n{p.stderr}"
        resumed = Flow("Faulty").latest_run
        assert resumed.origin_run_id == run_id and resumed.successful
        assert resumed.data.total == 3 * sum(range(6))
        summary["resumes_ok"] += 1
        stale = os.listdir(reelflow_home / "tmp")
        summary["stale_tmp_entries"] += len(stale)
        assert not stale, f"round {round_no}: {stale} left in REELFLOW_HOME/tmp"
    took = time.monotonic() - started
    print(f"\nruntime faults: {summary['kills']} kills survived ({summary['runner']} runner, "
          f"{summary['worker']} worker; {summary['SIGKILL']} SIGKILL, {summary['SIGTERM']} SIGTERM), "
          f"{summary['resumes_ok']} resumes ok, {summary['leftover_processes']} leftover processes, "
          f"{summary['stale_tmp_entries']} stale tmp entries, {took:.1f}s")
