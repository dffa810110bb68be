"""Flow-level triggers: ``@schedule``, ``@trigger`` and ``@trigger_on_finish`` (Metaflow's names).

They only record what should start the flow on the class; a flow with them still
runs by hand exactly as before. ``reelflow deploy`` reads them (:func:`flow_triggers`)
and the scheduler (:mod:`reelflow.operate`) acts on them.

Cron strings are checked with croniter and time zones with :mod:`zoneinfo` when the
decorator is applied (croniter is the ``operate`` extra; without it the check
happens at deploy time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import FlowDefinitionError

__all__ = ["schedule", "trigger", "trigger_on_finish", "FlowTriggers", "flow_triggers", "check_cron",
           "check_timezone", "Trigger", "TriggerEvent", "trigger_from_env", "TRIGGER_ENV"]

T = TypeVar("T", bound=type)
_ATTR = "_reelflow_triggers"


@dataclass
class FlowTriggers:
    """What starts a flow: at most one schedule, events (with parameter mappings), upstream flows."""

    cron: str | None = None
    timezone: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # {"name": str, "parameters": {param: field}}
    flows: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"cron": self.cron, "timezone": self.timezone, "events": self.events, "flows": self.flows}

    @property
    def empty(self) -> bool:
        return self.cron is None and not self.events and not self.flows


def flow_triggers(flow_cls: type) -> FlowTriggers:
    """The triggers declared on ``flow_cls`` (empty when it has none)."""
    found = flow_cls.__dict__.get(_ATTR)
    return found if isinstance(found, FlowTriggers) else FlowTriggers()


def _get(flow_cls: Any, deco: str) -> FlowTriggers:
    from ._spec import FlowSpec

    if not (isinstance(flow_cls, type) and issubclass(flow_cls, FlowSpec)):
        raise FlowDefinitionError(f"@{deco} decorates a FlowSpec subclass: put it above `class MyFlow(FlowSpec):`")
    if _ATTR not in flow_cls.__dict__:
        setattr(flow_cls, _ATTR, FlowTriggers())
    return flow_cls.__dict__[_ATTR]  # type: ignore[no-any-return]


def check_cron(cron: str, *, where: str = "@schedule") -> str:
    """``cron`` if croniter accepts it (5 fields, or 6 with seconds), else FlowDefinitionError."""
    if not isinstance(cron, str) or not cron.strip():
        raise FlowDefinitionError(f"{where}(cron={cron!r}): cron is a string such as '0 3 * * *'")
    try:
        from croniter import croniter
    except ImportError:  # checked again at deploy time, where croniter is required
        return cron.strip()
    if not croniter.is_valid(cron.strip()):
        raise FlowDefinitionError(
            f"{where}(cron={cron!r}) is not a valid cron expression; write five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 * * *' for 03:00 every day"
        )
    return cron.strip()


def check_timezone(tz: str | None, *, where: str = "@schedule") -> str | None:
    """``tz`` if :mod:`zoneinfo` knows it (None is UTC), else FlowDefinitionError."""
    if tz is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise FlowDefinitionError(
            f"{where}(timezone={tz!r}) is not a known time zone; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return tz


def schedule(
    flow_cls: Any = None,
    *,
    hourly: bool = False,
    daily: bool = False,
    weekly: bool = False,
    cron: str | None = None,
    timezone: str | None = None,
) -> Any:
    """Run the deployed flow on a schedule: ``@schedule(hourly=True)``, ``@schedule(cron="0 3 * * *",
    timezone="Europe/Berlin")``. Exactly one of ``hourly``, ``daily``, ``weekly``, ``cron``.

    ``daily`` is midnight, ``weekly`` Sunday midnight, in ``timezone`` (default UTC).
    """
    chosen = [n for n, v in (("hourly", hourly), ("daily", daily), ("weekly", weekly), ("cron", cron)) if v]
    if len(chosen) != 1:
        raise FlowDefinitionError(
            "@schedule takes exactly one of hourly=True, daily=True, weekly=True or cron='...'"
            + (f"; got {', '.join(chosen)}" if chosen else "")
        )
    expr = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0"}.get(chosen[0]) or check_cron(cron or "")
    tz = check_timezone(timezone)

    def attach(cls: T) -> T:
        t = _get(cls, "schedule")
        if t.cron is not None:
            raise FlowDefinitionError(f"@schedule is applied twice to {cls.__name__}; a flow has one schedule")
        t.cron, t.timezone = expr, tz
        return cls

    return attach(flow_cls) if flow_cls is not None else attach


def _name(ev: str) -> str:
    from ._project import _NamespacedEvent

    return ev if isinstance(ev, _NamespacedEvent) else ev.strip()  # resolved when deployed (see _project.py)


def _event_spec(ev: Any) -> dict[str, Any]:
    if isinstance(ev, str) and ev.strip():
        return {"name": _name(ev), "parameters": {}}
    if isinstance(ev, dict) and isinstance(ev.get("name"), str) and ev["name"].strip():
        unknown = set(ev) - {"name", "parameters"}
        if unknown:
            raise FlowDefinitionError(f"@trigger event {ev['name']!r}: unknown key {sorted(unknown)[0]!r}; "
                                      "an event is {'name': ..., 'parameters': {flow_parameter: payload_field}}")
        params = ev.get("parameters") or {}
        if isinstance(params, (list, tuple)):  # Metaflow also accepts a list: same name on both sides
            params = {p: p for p in params}
        if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in params.items()):
            raise FlowDefinitionError(
                f"@trigger event {ev['name']!r}: parameters maps flow parameter names to payload fields, "
                "e.g. {'day': 'day'}")
        return {"name": _name(ev["name"]), "parameters": dict(params)}
    raise FlowDefinitionError(
        f"@trigger: {ev!r} is not an event; write event='ratings.arrived' or "
        "event={'name': 'ratings.arrived', 'parameters': {'day': 'day'}}")


def trigger(
    flow_cls: Any = None,
    *,
    event: str | dict[str, Any] | None = None,
    events: Sequence[str | dict[str, Any]] | None = None,
) -> Any:
    """Run the deployed flow when an event is published: ``@trigger(event="ratings.arrived")``,
    ``@trigger(events=[...])``, or with a payload mapping
    ``@trigger(event={"name": "ratings.arrived", "parameters": {"day": "day"}})``
    (flow parameter ``day`` takes the payload's field ``day``).
    """
    if (event is None) == (events is None):
        raise FlowDefinitionError("@trigger takes exactly one of event=... or events=[...]")
    if events is not None and (isinstance(events, (str, dict)) or not list(events)):
        raise FlowDefinitionError("@trigger(events=...) takes a non-empty list of events")
    specs = [_event_spec(e) for e in ([event] if event is not None else list(events or []))]

    def attach(cls: T) -> T:
        _get(cls, "trigger").events.extend(specs)
        return cls

    return attach(flow_cls) if flow_cls is not None else attach


def trigger_on_finish(
    flow_cls: Any = None,
    *,
    flow: str | None = None,
    flows: Sequence[str] | None = None,
) -> Any:
    """Run the deployed flow when a run of another flow succeeds: ``@trigger_on_finish(flow="TrainRecsFlow")``
    or ``flows=[...]``. Inside the run, ``current.trigger.run`` is that upstream run."""
    if (flow is None) == (flows is None):
        raise FlowDefinitionError("@trigger_on_finish takes exactly one of flow='FlowName' or flows=[...]")
    names = [flow] if flow is not None else list(flows or [])
    if not names or not all(isinstance(n, str) and n.strip() and "/" not in n for n in names):
        raise FlowDefinitionError(f"@trigger_on_finish: {names!r} must be flow class names such as 'TrainRecsFlow'")

    def attach(cls: T) -> T:
        _get(cls, "trigger_on_finish").flows.extend(n.strip() for n in names)
        return cls

    return attach(flow_cls) if flow_cls is not None else attach


TRIGGER_ENV = "REELFLOW_TRIGGER_INFO"  # JSON the scheduler hands to the run it starts


@dataclass(frozen=True)
class TriggerEvent:
    """The event that started a run: ``name``, ``payload`` (a dict), ``timestamp`` (epoch seconds), ``id``."""

    name: str
    payload: dict[str, Any]
    timestamp: float
    id: int | None = None


@dataclass(frozen=True)
class Trigger:
    """How a deployed run was started (``current.trigger``, ``Run.trigger``).

    ``type`` is ``"schedule"`` (``slot`` is the schedule slot, epoch seconds),
    ``"event"`` (``event``) or ``"run"`` (``run`` is the upstream client ``Run``,
    ``run_pathspec`` its pathspec). ``deployment`` names the deployment.
    """

    type: str
    deployment: str | None = None
    event: TriggerEvent | None = None
    run_pathspec: str | None = None
    slot: float | None = None

    @property
    def run(self) -> Any:
        """The upstream run (a :class:`reelflow.Run`) for ``@trigger_on_finish``, else None."""
        if self.run_pathspec is None:
            return None
        from ..client import Run

        return Run(self.run_pathspec)

    @property
    def events(self) -> list[TriggerEvent]:
        """Metaflow's list form: the triggering events (empty for schedules and runs)."""
        return [self.event] if self.event is not None else []

    def describe(self) -> str:
        """One line: ``schedule slot 2026-01-01 03:00 UTC``, ``event ratings.arrived #12``, ``run Flow/3``."""
        import time

        if self.type == "schedule" and self.slot is not None:
            return f"schedule slot {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.slot))}"
        if self.type == "event" and self.event is not None:
            return f"event {self.event.name} #{self.event.id}"
        if self.type == "run":
            return f"finished run {self.run_pathspec}"
        return self.type

    def to_json(self) -> dict[str, Any]:
        ev = self.event
        return {"type": self.type, "deployment": self.deployment, "run": self.run_pathspec, "slot": self.slot,
                "event": None if ev is None else {"name": ev.name, "payload": ev.payload,
                                                  "timestamp": ev.timestamp, "id": ev.id}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trigger:
        ev = d.get("event")
        return cls(type=str(d["type"]), deployment=d.get("deployment"), run_pathspec=d.get("run"),
                   slot=d.get("slot"),
                   event=None if not ev else TriggerEvent(name=ev["name"], payload=dict(ev.get("payload") or {}),
                                                          timestamp=float(ev["timestamp"]), id=ev.get("id")))


def trigger_from_env() -> Trigger | None:
    """The trigger the scheduler passed to this process, or None (a run started by hand)."""
    import json
    import os

    raw = os.environ.get(TRIGGER_ENV)
    if not raw:
        return None
    try:
        return Trigger.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None
