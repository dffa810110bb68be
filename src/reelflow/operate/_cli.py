"""``reelflow deploy | deployments | events | scheduler``: the command line of continuous operation.

Bad input (a cron string, time zone, parameter, payload, policy) is a usage error
(exit 2) naming the thing and the fix.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click

from ..errors import FlowDefinitionError, ParameterError, ReelflowError

__all__ = ["deploy_cmd", "deployments", "events", "scheduler"]


def _guard(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                out = f(*args, **kwargs)
            for w in seen:
                click.echo(f"warning: {w.message}", err=True)
            return out
        except (ParameterError, FlowDefinitionError) as exc:
            raise click.UsageError(str(exc)) from None
        except ReelflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _fmt(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _params(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise ParameterError(f"--param {it!r}: write NAME=VALUE, e.g. --param alpha=0.5")
        out[k.strip()] = v
    return out


@click.command("deploy")
@click.argument("flow_file")
@click.option("--name", default=None, help="Deployment name [default: the flow class name].")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter of every run (repeatable).")
@click.option("--catchup", type=click.Choice(["latest", "all", "none"]), default="latest", show_default=True,
              help="Missed schedule slots after downtime: one run, every slot, or none.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs of this deployment at once.")
@click.option("--on-busy", type=click.Choice(["queue", "skip"]), default="queue", show_default=True,
              help="What a firing does while max-concurrent runs are going.")
@click.option("--branch", default=None, metavar="NAME",
              help="@project flows: deploy branch test.NAME (prod.NAME with --production).")
@click.option("--production", is_flag=True, default=False, help="@project flows: deploy the production branch.")
@click.option("--executor", default=None, metavar="NAME",
              help="How its runs' tasks run: inprocess, fork, forkserver, spawn or ray [default: the scheduler's "
                   "$REELFLOW_EXECUTOR, else forkserver].")
@click.option("--with", "with_specs", multiple=True, metavar="DECORATOR",
              help="Attach a decorator to every step of every run (repeatable), e.g. --with retry or "
                   "--with ray:address=HOST:PORT.")
@click.option("--config", "config_files", nargs=2, multiple=True, metavar="NAME FILE",
              help="Config NAME of the flow from FILE, fixed at deploy time (repeatable).")
@click.option("--config-value", "config_texts", nargs=2, multiple=True, metavar="NAME TEXT",
              help="Config NAME of the flow as text, fixed at deploy time (repeatable).")
@_guard
def deploy_cmd(flow_file: str, name: str | None, params: Sequence[str], catchup: str, max_concurrent: int,
               on_busy: str, branch: str | None, production: bool, executor: str | None,
               with_specs: Sequence[str], config_files: Sequence[tuple[str, str]],
               config_texts: Sequence[tuple[str, str]]) -> None:
    """Snapshot FLOW_FILE's code into the store and deploy it with its triggers (a new version each time)."""
    from ._deploy import deploy

    dep = deploy(flow_file, name=name, params=_params(params), catchup=catchup, max_concurrent=max_concurrent,
                 on_busy=on_busy, branch=branch, production=production, executor=executor,
                 with_specs=with_specs, config_files=dict(config_files), config_texts=dict(config_texts))
    click.echo(f"deployed {dep.name} version {dep.version} ({dep.flow_name}, {len(dep.code)} file(s) "
               f"snapshotted): {dep.describe_triggers()}")
    if dep.next_slot:
        click.echo(f"next scheduled run: {_fmt(dep.next_slot)}")
    click.echo("runs start when `reelflow scheduler` is running (or on `reelflow scheduler --once`)")


@click.group()
def deployments() -> None:
    """Deployed flows: list, show, pause, resume, delete, history."""


@deployments.command("list")
@_guard
def deployments_list() -> None:
    """Every deployment with its version, state and triggers."""
    from ._deploy import list_deployments

    found = list_deployments()
    if not found:
        click.echo("no deployments; create one with `reelflow deploy FLOW_FILE`")
        return
    click.echo(f"{'NAME':<28} {'VERSION':>7}  {'STATE':<7} {'NEXT SLOT':<19}  TRIGGERS")
    for d in found:
        click.echo(f"{d.name:<28} {d.version:>7}  {'paused' if d.paused else 'active':<7} {_fmt(d.next_slot):<19}  "
                   f"{d.describe_triggers()}")


@deployments.command("show")
@click.argument("name")
@_guard
def deployments_show(name: str) -> None:
    """One deployment: code snapshot, triggers, parameters and policies."""
    from ._deploy import get_deployment

    d = get_deployment(name)
    click.echo(f"deployment {d.name} version {d.version}: flow {d.flow_name}, {'paused' if d.paused else 'active'}")
    click.echo(f"deployed {_fmt(d.created_at)} by {d.user} from {d.source}")
    click.echo(f"triggers: {d.describe_triggers()}")
    if d.next_slot:
        click.echo(f"next slot: {_fmt(d.next_slot)}")
    click.echo(f"policies: catchup={d.catchup}, max_concurrent={d.max_concurrent}, on_busy={d.on_busy}")
    click.echo(f"executor: {d.executor or 'the scheduler default ($REELFLOW_EXECUTOR, else forkserver)'}"
               + "".join(f" --with {w}" for w in d.with_specs))
    if d.params:
        click.echo("parameters: " + ", ".join(f"{k}={v}" for k, v in d.params.items()))
    click.echo("code snapshot: " + ", ".join(f"{p} ({k[:12]})" for p, k in sorted(d.code.items())))


def _toggle(name: str, paused: bool) -> None:
    from ._deploy import pause, resume

    (pause if paused else resume)(name)
    click.echo(f"deployment {name} {'paused' if paused else 'resumed'}")


@deployments.command("pause")
@click.argument("name")
@_guard
def deployments_pause(name: str) -> None:
    """Start no runs of NAME until it is resumed (firings meanwhile are recorded as skipped)."""
    _toggle(name, True)


@deployments.command("resume")
@click.argument("name")
@_guard
def deployments_resume(name: str) -> None:
    """Start runs of NAME again."""
    _toggle(name, False)


@deployments.command("delete")
@click.argument("name")
@_guard
def deployments_delete(name: str) -> None:
    """Remove NAME with its versions and firings (the runs it started stay)."""
    from ._deploy import delete_deployment

    delete_deployment(name)
    click.echo(f"deployment {name} deleted")


@deployments.command("history")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest firings shown.")
@_guard
def deployments_history(name: str, limit: int) -> None:
    """Every version of NAME, then its newest firings: what fired, the decision, the run, why."""
    from ._deploy import deployment_history
    from ._scheduler import trigger_text

    h = deployment_history(name, limit=limit)
    for v in h["versions"]:
        click.echo(f"version {v['version']}: deployed {_fmt(v['created_at'])} by {v['user']} from {v['source']}")
    for f in h["firings"]:
        run = f" run {f['run_id']}" if f["run_id"] else ""
        why = f" -- {f['reason']}" if f["reason"] else ""
        click.echo(f"{_fmt(f['created_at'])}  firing {f['id']:<5} {f['status']:<9} "
                   f"{trigger_text(json.loads(f['trigger']))}{run}{why}")


@click.group()
def events() -> None:
    """Publish and list events (deployments with @trigger start runs for them)."""


@events.command("publish")
@click.argument("name")
@click.option("--payload", default=None, metavar="JSON", help='A JSON object, e.g. \'{"day": "2026-01-01"}\'.')
@_guard
def events_publish(name: str, payload: str | None) -> None:
    """Record event NAME (with an optional JSON payload)."""
    from ._events import publish

    data: Any = {}
    if payload is not None:
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise ParameterError(f"--payload {payload[:60]!r} is not JSON ({exc}); write e.g. "
                                 "--payload '{\"day\": 3}'") from None
    eid = publish(name, data)
    click.echo(f"event {name} #{eid} published")


@events.command("list")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_guard
def events_list(name: str | None, limit: int) -> None:
    """The newest events (of NAME)."""
    from ._events import list_events

    rows = list_events(name, limit=limit)
    if not rows:
        click.echo("no events" + (f" named {name}" if name else ""))
    for r in rows:
        click.echo(f"#{r['id']:<6} {_fmt(r['created_at'])}  {r['name']:<28} {json.dumps(r['payload'])}")


def _parse_now(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ParameterError(f"--now {text!r}: write an ISO time such as 2026-01-01T03:00:00Z or epoch "
                             "seconds") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Process what is due now, wait for the runs started, and exit.")
@click.option("--now", "now_text", default=None, metavar="TIME",
              help="With --once: act as if it were TIME (ISO 8601, UTC unless it says, or epoch seconds).")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="Seconds between looks at the database.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="On SIGTERM, seconds running runs get to finish before they are interrupted.")
@click.option("--max-runs", type=click.IntRange(min=1), default=None,
              help="Runs this scheduler has going at once over all deployments [default: 2 x CPUs]; "
                   "further firings wait queued.")
@_guard
def scheduler(once: bool, now_text: str | None, poll_interval: float, drain_timeout: float,
              max_runs: int | None) -> None:
    """Start runs of deployments when their schedules, events or upstream runs fire (SIGTERM stops it)."""
    from ._scheduler import Scheduler

    now = _parse_now(now_text)
    if now is not None and not once:
        raise ParameterError("--now works with --once only (a long-running scheduler follows the clock)")
    sch = Scheduler(poll_interval=poll_interval, drain_timeout=drain_timeout, max_runs=max_runs)
    if once:
        sch.run_once(now)
    else:
        sch.run_forever()
