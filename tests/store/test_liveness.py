"""A run recorded as running whose process is gone reads as abandoned, everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from reelflow import Flow, Run, namespace
from reelflow.cli import main
from reelflow.store import get_store
from reelflow.store._liveness import process_token

CREATE_AND_DIE = """
import os
from reelflow.store import get_store
md = get_store().metadata
rid = md.create_run("Doomed", user="u", system_tags=["user:u"])
print(rid, flush=True)
os._exit(0)  # no finish_run: as if the runner was killed
"""


def _dead_run() -> str:
    out = subprocess.run([sys.executable, "-c", CREATE_AND_DIE], capture_output=True, text=True, timeout=120,
                         env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_run_whose_process_died_reads_as_abandoned_in_client_and_cli():
    rid = _dead_run()
    md = get_store().metadata
    row = md.get_run("Doomed", rid)
    assert row["recorded_status"] == "running"
    assert row["status"] == "abandoned" and "is gone" in row["abandoned_reason"]
    namespace(None)
    run = Flow("Doomed").latest_run
    assert run is not None and run.id == rid
    assert (run.status, run.finished, run.successful) == ("abandoned", True, False)
    assert Run(f"Doomed/{rid}").abandoned_reason == row["abandoned_reason"]
    listed = CliRunner().invoke(main, ["runs", "list", "Doomed"])
    assert listed.exit_code == 0 and f"Doomed/{rid}" in listed.output and "abandoned" in listed.output
    shown = CliRunner().invoke(main, ["runs", "show", f"Doomed/{rid}"])
    assert shown.exit_code == 0, shown.output
    assert "abandoned" in shown.output and "is gone" in shown.output


def test_live_run_is_running_and_heartbeat_is_recorded():
    md = get_store().metadata
    rid = md.create_run("Alive", user="u")
    row = md.get_run("Alive", rid)
    assert (row["status"], row["pid"], row["proc_token"]) == ("running", os.getpid(), process_token(os.getpid()))
    before = row["heartbeat_at"]
    time.sleep(0.01)
    md.heartbeat(rid)
    assert md.get_run("Alive", rid)["heartbeat_at"] > before
    md.finish_run(rid, "succeeded")
    assert md.get_run("Alive", rid)["abandoned_reason"] is None


def _set(rid: str, **values: object) -> None:
    from sqlalchemy import update

    from reelflow.store import _schema as s

    with get_store().metadata.write() as conn:
        conn.execute(update(s.runs).where(s.runs.c.id == int(rid)).values(**values))


def test_reused_pid_is_not_mistaken_for_the_run():
    md = get_store().metadata
    rid = md.create_run("Reused", user="u")
    machine = process_token(os.getpid()).rsplit(":", 1)[0]
    _set(rid, proc_token=f"{machine}:1")  # same pid (ours), another start time
    row = md.get_run("Reused", rid)
    assert row["status"] == "abandoned" and "belongs to another process" in row["abandoned_reason"]


def test_same_host_name_in_another_pid_namespace_is_judged_by_heartbeat():
    md = get_store().metadata
    rid = md.create_run("Container", user="u")
    # another container with our host name: its pid means nothing here, its heartbeat is fresh
    _set(rid, pid=2**22 + 7, proc_token="other-boot.4026531836:12345")
    assert md.get_run("Container", rid)["status"] == "running"
    _set(rid, heartbeat_at=time.time() - 600)
    assert "no heartbeat" in md.get_run("Container", rid)["abandoned_reason"]


@pytest.mark.parametrize("age, timeout, status", [(5, None, "running"), (120, None, "abandoned"),
                                                  (120, "1000", "running")])
def test_run_on_another_host_is_judged_by_its_heartbeat(monkeypatch, age, timeout, status):
    if timeout is not None:
        monkeypatch.setenv("REELFLOW_HEARTBEAT_TIMEOUT", timeout)
    md = get_store().metadata
    rid = md.create_run("Remote", user="u")
    _set(rid, host="another-host", heartbeat_at=time.time() - age)
    row = md.get_run("Remote", rid)
    assert row["status"] == status
    if status == "abandoned":
        assert "no heartbeat" in row["abandoned_reason"] and "threshold 60s" in row["abandoned_reason"]


def test_bad_heartbeat_timeout_is_one_clear_error(monkeypatch):
    from reelflow.config import load_config
    from reelflow.errors import StoreError

    monkeypatch.setenv("REELFLOW_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(StoreError, match="REELFLOW_HEARTBEAT_TIMEOUT='soon' is not a positive number"):
        load_config()


def test_finish_run_records_why():
    md = get_store().metadata
    rid = md.create_run("Stopped", user="u", system_tags=["user:u"])
    md.finish_run(rid, "failed", reason="SIGTERM (the run was interrupted)")
    namespace(None)
    run = Run(f"Stopped/{rid}")
    assert (run.status, run.status_reason) == ("failed", "SIGTERM (the run was interrupted)")
    shown = CliRunner().invoke(main, ["runs", "show", f"Stopped/{rid}"])
    assert "Reason: SIGTERM (the run was interrupted)" in shown.output
