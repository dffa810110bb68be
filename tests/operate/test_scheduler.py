"""The scheduler with real processes: cron slots, events, chains, snapshots, policies, restarts, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("croniter")

from operate.opshelpers import cli, ok

TRAIN = """
from reelflow import FlowSpec, Parameter, current, schedule, step, trigger

@schedule(hourly=True)
@trigger(event={"name": "ratings.arrived", "parameters": {"day": "day"}})
class TrainFlow(FlowSpec):
    day = Parameter("day", default=0)
    naptime = Parameter("naptime", default=0.0)

    @step
    def start(self):
        import time
        time.sleep(self.naptime)
        t = current.trigger
        self.how = None if t is None else t.to_json()
        self.version = "v1"
        self.next(self.end)

    @step
    def end(self):
        pass
"""

AFTER = """
from reelflow import FlowSpec, current, step, trigger_on_finish

@trigger_on_finish(flow="TrainFlow")
class AfterFlow(FlowSpec):
    @step
    def start(self):
        self.upstream = current.trigger.run.pathspec
        self.upstream_day = current.trigger.run.data.day
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def _runs(flow: str) -> list:
    from reelflow import Flow

    try:
        return sorted(Flow(flow), key=lambda r: int(r.id))
    except Exception:
        return []


def _deploy(path, *extra: str) -> dict:
    ok("deploy", str(path), *extra)
    from reelflow.operate import get_deployment

    return get_deployment("TrainFlow").__dict__


def _iso(t: float) -> str:
    return str(t)


def test_cron_slot_fires_once_across_restarts_with_the_slot_as_trigger(flow_dir, firings):
    dep = _deploy(flow_dir("train.py", TRAIN))
    slot = dep["next_slot"]
    assert slot is not None and slot % 3600 == 0
    ok("scheduler", "--once", "--now", _iso(slot - 10))  # not due yet
    assert _runs("TrainFlow") == []
    out = ok("scheduler", "--once", "--now", _iso(slot + 5))
    assert "schedule slot" in out
    ok("scheduler", "--once", "--now", _iso(slot + 6))  # a restart at the same time fires nothing again
    runs = _runs("TrainFlow")
    assert len(runs) == 1 and runs[0].successful
    trig = runs[0].trigger
    assert trig.type == "schedule" and trig.slot == slot and trig.deployment == "TrainFlow"
    assert runs[0].data.how["slot"] == slot
    assert [f["status"] for f in firings("TrainFlow")] == ["succeeded"]
    assert "Started by: schedule slot" in ok("runs", "show", runs[0].pathspec)


@pytest.mark.parametrize("catchup, expect_runs", [("latest", 1), ("all", 3), ("none", 0)])
def test_missed_slots_follow_the_catchup_policy(flow_dir, firings, catchup, expect_runs):
    dep = _deploy(flow_dir("train.py", TRAIN), "--catchup", catchup, "--max-concurrent", "3")
    # down for three slots; one run at a time over the whole scheduler
    ok("scheduler", "--once", "--max-runs", "1", "--now", _iso(dep["next_slot"] + 2 * 3600 + 600))
    assert len(_runs("TrainFlow")) == expect_runs
    fs = firings("TrainFlow")
    if catchup == "all":
        assert [f["status"] for f in fs] == ["succeeded"] * 3
        assert sum("--max-runs" in (f["reason"] or "") for f in fs) == 2
    if catchup == "latest":
        assert len(fs) == 1 and "2 earlier missed slot(s) folded" in fs[0]["reason"]
    if catchup == "none":
        assert [f["status"] for f in fs] == ["skipped"] and "catchup=none" in fs[0]["reason"]


def test_event_payload_maps_to_parameters_and_bad_payload_is_recorded(flow_dir, firings):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN))
    e1 = events.publish("ratings.arrived", {"day": 7})
    res = cli("events", "publish", "ratings.arrived", "--payload", '{"day": "not-a-number"}')
    assert res.returncode == 2 and "cannot be parameter 'day' (int) of deployment 'TrainFlow'" in res.stderr
    res = cli("events", "publish", "ratings.arrived", "--payload", '{"hour": 3}')
    assert res.returncode == 2 and "the payload has no 'day'" in res.stderr
    assert len(events.list_events("ratings.arrived")) == 1  # refused: nothing recorded
    events.publish("ratings.arrived", {"day": "not-a-number"}, check=False)  # the scheduler checks again
    ok("scheduler", "--once")
    runs = _runs("TrainFlow")
    assert len(runs) == 1 and runs[0].data.day == 7
    how = runs[0].data.how
    assert how["event"]["name"] == "ratings.arrived" and how["event"]["payload"] == {"day": 7}
    assert how["event"]["id"] == e1 and abs(how["event"]["timestamp"] - time.time()) < 300
    assert runs[0].trigger.event.payload == {"day": 7}
    fs = firings("TrainFlow")
    assert [f["status"] for f in fs] == ["succeeded", "failed"]
    assert "cannot be parameter 'day'" in fs[1]["reason"] and "not-a-number" in fs[1]["reason"]
    assert len(events.list_events("ratings.arrived")) == 2  # nothing lost


def test_trigger_on_finish_chain_runs_downstream_with_the_upstream_run(flow_dir):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN))
    ok("deploy", str(flow_dir("after.py", AFTER)))
    events.publish("ratings.arrived", {"day": 3})
    ok("scheduler", "--once")
    up, down = _runs("TrainFlow"), _runs("AfterFlow")
    assert len(up) == 1 and len(down) == 1
    assert down[0].data.upstream == up[0].pathspec and down[0].data.upstream_day == 3
    assert down[0].trigger.run.pathspec == up[0].pathspec


def test_a_deployment_runs_its_snapshot_not_the_file_on_disk(flow_dir):
    from reelflow import events

    path = flow_dir("train.py", TRAIN)
    _deploy(path)
    path.write_text(TRAIN.replace('"v1"', '"v2-edited-after-deploy"'))
    events.publish("ratings.arrived", {"day": 1})
    ok("scheduler", "--once")
    assert _runs("TrainFlow")[0].data.version == "v1"
    _deploy(path)  # a new deployment version picks the edit up
    events.publish("ratings.arrived", {"day": 2})
    ok("scheduler", "--once")
    assert _runs("TrainFlow")[-1].data.version == "v2-edited-after-deploy"
    hist = ok("deployments", "history", "TrainFlow")
    assert "version 1" in hist and "version 2" in hist


def test_max_concurrent_skip_policy_records_the_decision(flow_dir, firings):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN), "--on-busy", "skip")
    events.publish("ratings.arrived", {"day": 1})
    events.publish("ratings.arrived", {"day": 2})
    ok("scheduler", "--once")
    fs = firings("TrainFlow")
    assert sorted(f["status"] for f in fs) == ["skipped", "succeeded"]
    assert "max_concurrent=1 reached" in next(f["reason"] for f in fs if f["status"] == "skipped")


def test_paused_deployment_skips_and_records(flow_dir, firings):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN))
    ok("deployments", "pause", "TrainFlow")
    events.publish("ratings.arrived", {"day": 1})
    ok("scheduler", "--once")
    assert _runs("TrainFlow") == []
    assert firings("TrainFlow")[0]["status"] == "skipped"
    assert "paused" in ok("deployments", "list")
    ok("deployments", "resume", "TrainFlow")
    ok("deployments", "delete", "TrainFlow")
    res = cli("deployments", "show", "TrainFlow")
    assert res.returncode == 1 and "no deployment named 'TrainFlow'" in res.stderr


def test_crashed_run_is_recorded_failed_and_scheduler_goes_on(flow_dir, firings):
    from reelflow import events

    src = TRAIN.replace("time.sleep(self.naptime)", "assert self.day != 13, 'unlucky day'")
    _deploy(flow_dir("train.py", src))
    events.publish("ratings.arrived", {"day": 13})
    events.publish("ratings.arrived", {"day": 14})
    ok("scheduler", "--once")
    fs = firings("TrainFlow")
    assert [f["status"] for f in fs] == ["failed", "succeeded"]
    assert "exit 1" in fs[0]["reason"] and fs[0]["run_id"]


def test_unknown_event_name_warns_at_deploy_and_bad_cli_input_exits_2(flow_dir):
    res = cli("deploy", str(flow_dir("train.py", TRAIN)))
    assert res.returncode == 0 and "no event named 'ratings.arrived' has been published" in res.stderr
    res = cli("events", "publish", "x", "--payload", "{not json")
    assert res.returncode == 2 and "is not JSON" in res.stderr
    res = cli("events", "publish", "x", "--payload", "[1, 2]")
    assert res.returncode == 2 and "JSON object" in res.stderr
    res = cli("deploy", str(flow_dir("t2.py", TRAIN)), "--param", "nope=1")
    assert res.returncode == 2 and "no parameter 'nope'" in res.stderr
    res = cli("scheduler", "--once", "--now", "yesterday-ish")
    assert res.returncode == 2 and "--now" in res.stderr


def _wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"scheduler exited {proc.returncode} while waiting for {what}:\n"
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_stops_taking_work_lets_the_running_run_finish_and_exits_0(flow_dir, firings):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN), "--param", "naptime=3")
    proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "scheduler", "--poll-interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        events.publish("ratings.arrived", {"day": 1})
        _wait_for(lambda: any(f["status"] == "running" for f in firings("TrainFlow")), proc, "the run to start")
        proc.send_signal(signal.SIGTERM)
        events.publish("ratings.arrived", {"day": 2})  # after SIGTERM: not taken
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    fs = firings("TrainFlow")
    assert [f["status"] for f in fs] == ["succeeded"], out
    assert _runs("TrainFlow")[0].successful
    assert "scheduler stopped" in out


def test_two_schedulers_on_postgresql_start_each_firing_exactly_once(postgres_url, flow_dir, firings):
    from reelflow import events

    dep = _deploy(flow_dir("train.py", TRAIN), "--max-concurrent", "10")
    for day in range(4):
        events.publish("ratings.arrived", {"day": day})
    now = _iso(dep["next_slot"] + 30)
    procs = [subprocess.Popen([sys.executable, "-m", "reelflow.cli", "scheduler", "--once", "--now", now],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
             for _ in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), outs
    ok("scheduler", "--once", "--now", now)  # and a restart adds nothing
    fs = firings("TrainFlow")
    assert sorted(f["key"] for f in fs) == sorted([f"schedule:{dep['next_slot']:.0f}"] +
                                                  [f"event:{i}" for i in range(1, 5)])
    assert all(f["status"] == "succeeded" for f in fs), fs
    runs = _runs("TrainFlow")
    assert len(runs) == 5
    assert sorted(r.data.day for r in runs) == [0, 0, 1, 2, 3]
    started_by = [o.count("started (pid") for o in outs]
    assert sum(started_by) == 5, outs
    assert json.loads(json.dumps([f["run_id"] for f in fs])) and len({f["run_id"] for f in fs}) == 5


def test_a_lapsed_lease_of_a_dead_scheduler_is_closed_and_the_queue_moves_on(flow_dir, firings):
    from sqlalchemy import insert

    from reelflow import events
    from reelflow.operate import Scheduler
    from reelflow.store import get_store
    from reelflow.store._operate_db import operate_tables

    _deploy(flow_dir("train.py", TRAIN))
    store = get_store()
    t = operate_tables(store.metadata)
    trig = {"type": "event", "deployment": "TrainFlow",
            "event": {"name": "ratings.arrived", "payload": {}, "timestamp": 0.0, "id": 999}}
    with store.metadata.write() as conn:  # what a scheduler killed mid-run leaves behind
        conn.execute(insert(t.firings).values(
            deployment="TrainFlow", version=1, key="event:999", trigger=json.dumps(trig), params="{}",
            status="running", scheduler="elsewhere:1:dead", lease_until=time.time() - 1, created_at=time.time(),
            started_at=time.time()))
    events.publish("ratings.arrived", {"day": 4})
    lines: list[str] = []
    Scheduler(echo=lines.append).run_once()
    fs = firings("TrainFlow")
    assert fs[0]["status"] == "failed" and "stopped renewing its lease" in fs[0]["reason"], fs
    assert fs[1]["status"] == "succeeded" and _runs("TrainFlow")[0].data.day == 4, lines


def test_sigterm_with_a_short_drain_timeout_interrupts_and_records_the_run(flow_dir, firings):
    from reelflow import events

    _deploy(flow_dir("train.py", TRAIN), "--param", "naptime=60")
    proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "scheduler", "--poll-interval", "0.2",
                             "--drain-timeout", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    try:
        events.publish("ratings.arrived", {"day": 1})
        _wait_for(lambda: any(f["status"] == "running" and f["run_id"] for f in firings("TrainFlow")), proc,
                  "the run to start")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    f = firings("TrainFlow")[0]
    assert f["status"] == "failed" and "drain timeout of 1s ran out" in f["reason"], out
    run = _runs("TrainFlow")[0]
    assert not run.successful
