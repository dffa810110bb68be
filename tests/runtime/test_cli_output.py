"""What a user sees on the command line: help with parameters, logs, hints, bad ids."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reelflow import Flow

from helpers import run_py

FLOW = """
import os, sys
class Hello(FlowSpec):
    alpha = Parameter("alpha", default=0.5, help="the learning rate")

    @step
    def start(self):
        print("hello out")
        print("hello err", file=sys.stderr)
        self.next(self.quiet_step)

    @step
    def quiet_step(self):
        if os.environ.get("BREAK_IT"):
            raise RuntimeError("broken on purpose")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Hello()
"""

REELFLOW = [sys.executable, "-m", "reelflow.cli"]


def cli(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*REELFLOW, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_run_help_lists_the_flows_parameters(write_flow):
    path = write_flow(FLOW)
    for p in (cli("run", str(path), "--help"), run_py(path, "run", "--help")):
        assert p.returncode == 0, p.stderr
        assert "--alpha" in p.stdout and "the learning rate" in p.stdout and "--max-workers" in p.stdout
    p = cli("run", "--help")
    assert p.returncode == 0 and "FLOW_FILE" in p.stdout


def test_logs_command_prints_each_stream_and_says_when_empty(write_flow):
    path = write_flow(FLOW)
    assert run_py(path, "run", "--quiet").returncode == 0
    run_id = Flow("Hello").latest_run.id
    p = cli("logs", f"Hello/{run_id}/start")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"[Hello/{run_id}/start/1] hello out\n"
    assert p.stderr == f"[Hello/{run_id}/start/1] hello err\n"
    assert cli("logs", "Hello/latest/start").stdout == p.stdout
    p = cli("logs", f"Hello/{run_id}/start/1", "--stdout")
    assert p.stdout == f"[Hello/{run_id}/start/1] hello out\n" and p.stderr == ""
    p = cli("logs", f"Hello/{run_id}/quiet_step")
    assert p.returncode == 0 and p.stdout == ""
    assert f"Hello/{run_id}/quiet_step/2: no output was captured" in p.stderr


@pytest.mark.parametrize("args", [
    ["logs", "Hello/12345678901234567890123/start"],
    ["logs", "Hello/abc/start"],
    ["logs", "Hello/1"],
])
def test_logs_bad_pathspecs_are_one_line(write_flow, args):
    path = write_flow(FLOW)
    assert run_py(path, "run", "--quiet").returncode == 0
    p = cli(*args)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "error" in p.stderr.lower()


def test_resume_with_a_bad_origin_id_is_one_line(write_flow):
    path = write_flow(FLOW)
    for bad in ("12345678901234567890123", "-3", "x1"):
        p = run_py(path, "resume", "--origin-run-id", bad)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and "is not a run id" in p.stderr


def test_failure_hint_names_the_flow_file(write_flow):
    path = write_flow(FLOW)
    p = run_py(path, "run", env={"BREAK_IT": "1"})
    assert p.returncode == 1
    run_id = Flow("Hello").latest_run.id
    assert f"python flow.py resume --origin-run-id {run_id}" in p.stderr
    assert "<flow file>" not in p.stderr
    p = cli("run", str(path), env={"BREAK_IT": "1"}, cwd=path.parent)
    run_id = Flow("Hello").latest_run.id
    assert f"reelflow resume flow.py --origin-run-id {run_id}" in p.stderr


def test_flow_cli_refuses_a_parameter_named_like_an_option(write_flow):
    path = write_flow(FLOW.replace('Parameter("alpha"', 'Parameter("tags"'))
    for args in (["check"], ["run"], ["run", "--help"]):
        p = run_py(path, *args)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert "parameter 'tags' uses a reserved name" in p.stderr


def test_inprocess_output_reaches_logs(write_flow):
    path = write_flow(FLOW)
    p = run_py(path, "run", "--inprocess")
    assert p.returncode == 0, p.stderr
    assert "hello out" in p.stdout
    run_id = Flow("Hello").latest_run.id
    p = cli("logs", f"Hello/{run_id}/start")
    assert "hello out" in p.stdout and "hello err" in p.stderr


def test_resume_refuses_a_run_that_is_still_running(write_flow, tmp_path):
    import os
    import signal
    import time

    marker = tmp_path / "started"
    path = write_flow(FLOW.replace('print("hello out")', f'open({str(marker)!r}, "w").close(); time.sleep(300)')
                      .replace("import os, sys", "import os, sys, time"))
    proc = subprocess.Popen([sys.executable, str(path), "run", "--quiet"], cwd=path.parent, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start its step"
            time.sleep(0.05)
        run_id = Flow("Hello").latest_run.id
        p = run_py(path, "resume", "--origin-run-id", run_id)
        assert p.returncode == 2 and f"run Hello/{run_id} is still running" in p.stderr, p.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 143
    assert Flow("Hello").latest_run.status == "failed"
