"""The flow-level trigger decorators: what they record, what they refuse, and hand runs stay as before."""

from __future__ import annotations

import pytest

pytest.importorskip("croniter")

from reelflow import FlowSpec, current, schedule, step, trigger, trigger_on_finish
from reelflow.errors import FlowDefinitionError
from reelflow.flows._triggers import Trigger, flow_triggers

from operate.opshelpers import cli, ok


def _flow(*decos):
    class F(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    for d in reversed(decos):
        F = d(F)
    return F


@pytest.mark.parametrize("kw, cron", [({"hourly": True}, "0 * * * *"), ({"daily": True}, "0 0 * * *"),
                                      ({"weekly": True}, "0 0 * * 0"), ({"cron": "0 3 * * *"}, "0 3 * * *")])
def test_schedule_records_cron(kw, cron):
    t = flow_triggers(_flow(schedule(**kw, timezone="Europe/Berlin")))
    assert (t.cron, t.timezone) == (cron, "Europe/Berlin")


def test_trigger_and_trigger_on_finish_record_events_mappings_and_flows():
    f = _flow(trigger(events=["a", {"name": "b", "parameters": {"day": "d"}}]),
              trigger_on_finish(flows=["Up1", "Up2"]))
    t = flow_triggers(f)
    assert t.events == [{"name": "a", "parameters": {}}, {"name": "b", "parameters": {"day": "d"}}]
    assert t.flows == ["Up1", "Up2"]


@pytest.mark.parametrize("make, match", [
    (lambda: schedule(cron="61 * * * *"), "not a valid cron expression"),
    (lambda: schedule(cron="every hour"), "not a valid cron expression"),
    (lambda: schedule(hourly=True, timezone="Mars/Olympus"), "not a known time zone"),
    (lambda: schedule(hourly=True, daily=True), "exactly one of"),
    (lambda: schedule(), "exactly one of"),
    (lambda: trigger(), "exactly one of"),
    (lambda: trigger(event=3), "is not an event"),
    (lambda: trigger(event={"name": "x", "parameters": {"day": 1}}), "parameters maps"),
    (lambda: trigger_on_finish(flow="A/1"), "flow class names"),
])
def test_bad_trigger_arguments_name_the_fix(make, match):
    with pytest.raises(FlowDefinitionError, match=match):
        make()


def test_decorators_refuse_a_non_flow():
    with pytest.raises(FlowDefinitionError, match="FlowSpec subclass"):
        trigger(event="x")(object)


def test_trigger_round_trips_json():
    t = Trigger.from_json({"type": "event", "deployment": "D", "event": {"name": "e", "payload": {"a": 1},
                                                                         "timestamp": 5.0, "id": 3}})
    assert t.event is not None and t.event.payload == {"a": 1} and t.run is None
    assert Trigger.from_json(t.to_json()) == t
    assert "event e #3" in t.describe()


def test_decorated_flow_runs_by_hand_with_current_trigger_none(flow_dir):
    from reelflow import Run

    path = flow_dir("hand.py", """
        from reelflow import FlowSpec, step, current, schedule, trigger
        @schedule(hourly=True)
        @trigger(event="x.y")
        class HandFlow(FlowSpec):
            @step
            def start(self):
                self.trig = current.trigger
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    out = ok("run", str(path))
    assert "HandFlow" in out
    run = Run(next(iter(__import__("reelflow").Flow("HandFlow"))).pathspec)
    assert run.data.trig is None and run.trigger is None
    assert "Started by: hand" in ok("runs", "show", run.pathspec)
    assert current.trigger is None  # outside a flow


def test_cli_rejects_invalid_cron_and_timezone_with_exit_2(flow_dir):
    bad_cron = flow_dir("badcron.py", """
        from reelflow import FlowSpec, step, schedule
        @schedule(cron="0 25 * * *")
        class BadFlow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    res = cli("deploy", str(bad_cron))
    assert res.returncode == 2 and "not a valid cron expression" in res.stderr and "Traceback" not in res.stderr
    bad_tz = flow_dir("badtz.py", bad_cron.read_text().replace('cron="0 25 * * *"', 'daily=True, timezone="Nowhere/X"'))
    res = cli("deploy", str(bad_tz))
    assert res.returncode == 2 and "Nowhere/X" in res.stderr and "not a known time zone" in res.stderr
