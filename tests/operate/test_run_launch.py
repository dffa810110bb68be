"""How the scheduler starts a run: forked from its warm run server (or a fresh interpreter), through the
executor the deployment or ``$REELFLOW_EXECUTOR`` names."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from operate.opshelpers import cli, ok

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
              pytest.mark.filterwarnings("ignore:deployment .* no event named 'launch.go'")]

LAUNCH = """
from reelflow import FlowSpec, Parameter, step, trigger

@trigger(event="launch.go")
class LaunchFlow(FlowSpec):
    naptime = Parameter("naptime", default=0.0)
    marker = Parameter("marker", default="")

    @step
    def start(self):
        import os
        import time
        from pathlib import Path

        time.sleep(self.naptime)
        self.pid, self.ppid = os.getpid(), os.getppid()
        chain, p = [], os.getpid()
        while p > 1 and len(chain) < 8:  # command lines from this task's process up its ancestors
            try:
                chain.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\\0", b" ").decode())
                p = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                break
        self.chain = chain
        self.next(self.end)

    @step
    def end(self):
        if self.marker:  # under --executor inprocess this is the run's own process: it must exit as Python does
            import atexit
            from pathlib import Path

            atexit.register(Path(self.marker).write_text, "ran")
"""


def _runs() -> list:
    from reelflow import Flow

    return sorted(Flow("LaunchFlow"), key=lambda r: int(r.id))


def _run_pid(run) -> int:
    from reelflow.store import get_store

    return int(get_store().metadata.get_run("LaunchFlow", run.id)["pid"])


def _by_deployment(firings, runs) -> dict[str, object]:
    by_id = {r.id: r for r in runs}
    return {name: by_id[f["run_id"]] for name in ("Pinned", "Plain") for f in firings(name)[-1:]}


def test_runs_fork_from_the_run_server_and_honour_the_deployments_executor(flow_dir, firings, monkeypatch,
                                                                           tmp_path):
    from reelflow import events
    from reelflow.operate import deploy

    path = flow_dir("launch.py", LAUNCH)
    marker = tmp_path / "atexit-ran"
    deploy(path, name="Pinned", executor="inprocess", params={"marker": str(marker)})
    deploy(path, name="Plain")
    events.publish("launch.go")
    assert "executor: inprocess" in ok("deployments", "show", "Pinned")
    monkeypatch.setenv("REELFLOW_EXECUTOR", "spawn")  # the scheduler's choice; a deployment's own wins
    ok("scheduler", "--once")
    runs = _by_deployment(firings, _runs())
    pinned, plain = runs["Pinned"], runs["Plain"]
    assert pinned.successful and plain.successful
    assert pinned.data.pid == _run_pid(pinned)  # inprocess: the step ran in the run's own process
    assert plain.data.pid != _run_pid(plain) and plain.data.ppid == _run_pid(plain)  # spawn: a child of the run
    for r in (pinned, plain):  # the run process was forked from the scheduler's warm run server
        assert any("reelflow.operate._runserver" in c for c in r.data.chain), r.data.chain
    assert marker.read_text() == "ran"  # the forked run ended as an interpreter does: atexit handlers ran

    monkeypatch.delenv("REELFLOW_EXECUTOR")
    monkeypatch.setenv("REELFLOW_RUN_SERVER", "0")
    events.publish("launch.go")
    ok("scheduler", "--once")
    runs = _by_deployment(firings, _runs())
    pinned, plain = runs["Pinned"], runs["Plain"]
    assert pinned.data.pid == _run_pid(pinned)
    assert plain.data.ppid != _run_pid(plain)  # the default fork server sits between the run and its tasks
    for r in (pinned, plain):  # a fresh interpreter per run
        assert not any("_runserver" in c for c in r.data.chain)
        assert any("reelflow.cli run" in c for c in r.data.chain), r.data.chain
    assert [f["status"] for f in firings("Plain")] == ["succeeded", "succeeded"]


def test_bad_executor_options_are_refused_at_deploy(flow_dir):
    from reelflow.errors import ParameterError
    from reelflow.operate import deploy

    path = flow_dir("launch.py", LAUNCH)
    with pytest.raises(ParameterError, match="--executor 'warp' is not an executor; choose one of"):
        deploy(path, executor="warp")
    with pytest.raises(ParameterError, match="the ray executor takes address"):
        deploy(path, with_specs=["ray:bogus=1"])
    with pytest.raises(ParameterError, match="disagree; choose one executor"):
        deploy(path, executor="spawn", with_specs=["ray:address=127.0.0.1:6379"])
    res = cli("deploy", str(path), "--with", "nosuchdecorator")
    assert res.returncode == 2 and "--with 'nosuchdecorator'" in res.stderr, res.stderr
    dep = deploy(path, executor="ray", with_specs=["ray:address=127.0.0.1:6379", "retry:times=2"])
    assert dep.run_args() == ["--executor", "ray", "--with", "ray:address=127.0.0.1:6379",
                              "--with", "retry:times=2"]
    assert deploy(path).run_args() == []  # a new version without options: none carried over


def test_a_run_outlives_its_dead_run_server_and_is_recorded_by_its_own_row(flow_dir, firings):
    from reelflow import events
    from reelflow.operate import Scheduler, deploy

    deploy(flow_dir("launch.py", LAUNCH), name="Plain", params={"naptime": 2})
    events.publish("launch.go")
    lines: list[str] = []
    sch = Scheduler(echo=lines.append)
    try:
        assert sch.tick() == 1
        server = sch._server
        assert server is not None
        deadline = time.monotonic() + 120
        while not firings("Plain")[0]["run_id"]:  # the run has recorded itself
            assert time.monotonic() < deadline, lines
            sch._reap()
            time.sleep(0.1)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        while sch.children:
            assert time.monotonic() < deadline, lines
            sch._reap()
            time.sleep(0.1)
        events.publish("launch.go")  # the next run starts from a new server
        sch.run_once()
    finally:
        sch.close()
    fs = firings("Plain")
    assert [f["status"] for f in fs] == ["succeeded", "succeeded"], (fs, lines)
    assert all(r.successful for r in _runs())
