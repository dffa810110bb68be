"""The ``reelflow`` command: run flow files and look at runs.

    reelflow run path/to/flow.py [--param value ...]   same as python flow.py run
    reelflow resume path/to/flow.py [STEP] [...]       same as python flow.py resume
    reelflow demo                                      the recommender demo (main job)
    reelflow logs FLOW/RUN_ID/STEP[/TASK_ID]           a task's captured output
    reelflow runs list [FLOW]                          newest first
    reelflow runs show FLOW/RUN_ID                     steps, status, durations, artifacts
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import click

from .errors import FlowDefinitionError, ReelflowError

__all__ = ["main", "load_flow_file"]


def load_flow_file(target: str) -> type:
    """Import ``path/to/flow.py[:ClassName]`` and return its FlowSpec subclass."""
    from .flows import FlowSpec

    path_s, _, cls_name = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(path_s)
    if not path.is_file():
        raise FlowDefinitionError(f"flow file {path_s!r} does not exist; pass the path to a .py file")
    mod_name = path.stem
    sys.path.insert(0, str(path.parent.absolute()))
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise FlowDefinitionError(f"cannot import {path_s!r}; is it a Python file?")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except ReelflowError:
        raise
    except Exception as exc:
        raise FlowDefinitionError(f"importing {path_s} failed: {type(exc).__name__}: {exc}") from None
    flows = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, FlowSpec)
             and v is not FlowSpec and v.__module__ == mod_name]
    if cls_name:
        flows = [f for f in flows if f.__name__ == cls_name]
    if len(flows) != 1:
        names = ", ".join(f.__name__ for f in flows) or "none"
        raise FlowDefinitionError(
            f"{path_s} defines {len(flows)} matching flows ({names}); pick one with {path_s}:ClassName"
        )
    return flows[0]


def _guard(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ReelflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `reelflow runs list | head`: the reader left; stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:  # the disk or a file, not reelflow: still one line, not a traceback
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(package_name="reelflow")
def main() -> None:
    """reelflow: flows, runs, models and serving for a streaming service's ML."""


def _delegate(command: str) -> Callable[..., Any]:
    @_guard
    def cmd(flow_file: str | None, args: Sequence[str]) -> None:
        from .runtime._cli import run_cli

        if flow_file is None or flow_file in ("--help", "-h"):
            # `reelflow run --help`; with a file, --help goes on to the flow's own
            # command line, which lists the flow's parameters.
            ctx = click.get_current_context()
            click.echo(ctx.get_help())
            ctx.exit(0 if flow_file else 2)
        run_cli(load_flow_file(flow_file), [command, *args])

    return cmd


for _name, _help in (("run", "Run FLOW_FILE (same options as `python flow.py run`; "
                              "`reelflow run FLOW_FILE --help` lists the flow's parameters)."),
                     ("resume", "Resume a run of FLOW_FILE (same as `python flow.py resume`).")):
    main.add_command(
        click.Command(
            _name,
            callback=_delegate(_name),
            help=_help,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            params=[click.Argument(["flow_file"], required=False),
                    click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        )
    )


@main.command()
@click.argument("pathspec")
@click.option("--stderr", "which", flag_value="stderr", help="Only stderr.")
@click.option("--stdout", "which", flag_value="stdout", help="Only stdout.")
@_guard
def logs(pathspec: str, which: str | None) -> None:
    """Print the captured output of FLOW/RUN_ID/STEP or FLOW/RUN_ID/STEP/TASK_ID."""
    from .runtime._logcli import print_logs

    print_logs(pathspec, which)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_guard
def demo(args: Sequence[str]) -> None:
    """Train, tune and compare recommenders on the bundled MovieLens data (the main job).

    Options are those of the flow's run command: reelflow demo --help-flow lists them.
    """
    from .recs.demo_flow import RecsDemoFlow
    from .runtime._cli import run_cli

    if "--help-flow" in args:
        args = ("--help",)
    run_cli(RecsDemoFlow, ["run", *args])


@main.group()
def runs() -> None:
    """List and inspect runs in the store (REELFLOW_HOME)."""


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@runs.command("list")
@click.argument("flow", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option("--where", "where", multiple=True, metavar="COND",
              help='Filter, e.g. --where "metrics.ndcg@10 > 0.3" or --where "params.alpha == 2" (repeatable).')
@_guard
def runs_list(flow: str | None, limit: int, tags: Sequence[str], where: Sequence[str]) -> None:
    """Runs of FLOW (or of every flow), newest first, optionally filtered."""
    from .client import find_runs, namespace
    from .errors import ParameterError
    from .store import get_store

    namespace(None)
    try:
        found = find_runs(flow, tags=tags, where=where, limit=limit)
    except ParameterError as exc:  # a --where that cannot be read
        raise click.UsageError(str(exc)) from None
    if not found:
        click.echo(f"no matching runs{' of ' + flow if flow else ''} in the store ({get_store().describe()})")
        return
    click.echo(f"{'RUN':<24} {'STATUS':<10} {'STARTED':<20} {'DURATION':>9}  TAGS")
    for run in found:
        r = run._row
        dur = f"{r['finished_at'] - r['created_at']:.2f}s" if r["finished_at"] else "-"
        click.echo(f"{run.pathspec:<24} {r['status']:<10} {_fmt_time(r['created_at']):<20} "
                   f"{dur:>9}  {' '.join(r['tags'])}")


@runs.command("compare")
@click.argument("pathspecs", nargs=-1, required=True)
@_guard
def runs_compare(pathspecs: Sequence[str]) -> None:
    """Parameters and final metrics of FLOW/RUN_ID ... side by side."""
    import pandas as pd

    from .client import compare_runs, namespace

    namespace(None)
    table = compare_runs(pathspecs)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 200):
        click.echo(table.fillna("-").to_string())


@runs.command("show")
@click.argument("pathspec")
@_guard
def runs_show(pathspec: str) -> None:
    """Steps, tasks, status, durations and artifacts of FLOW/RUN_ID."""
    from .client import Run, namespace

    namespace(None)
    run = Run(pathspec)
    click.echo(f"Run {run.pathspec}: {run.status}, by {run.user}, started {_fmt_time(run._row['created_at'])}"
               + (f", resumed from {run.origin_run_id}" if run.origin_run_id else ""))
    if run.abandoned_reason:
        click.echo(f"Abandoned: {run.abandoned_reason}; resume it with `reelflow resume FLOW_FILE --origin-run-id "
                   f"{run.id}`")
    elif run.status_reason:
        click.echo(f"Reason: {run.status_reason}")
    trig = run.trigger
    click.echo("Started by: " + (trig.describe() + f" (deployment {trig.deployment})" if trig else "hand (manual)"))
    if run.parameters:
        click.echo("Parameters: " + ", ".join(f"{k}={v}" for k, v in run.parameters.items()))
    if run.user_tags:
        click.echo("Tags: " + ", ".join(sorted(run.user_tags)))
    for st in run.steps():
        tasks = st.tasks()
        ok = sum(t.successful for t in tasks)
        click.echo(f"\nStep {st.id}: {ok}/{len(tasks)} tasks succeeded")
        for t in tasks:
            status = "ok" if t.successful else "FAILED"
            cached = t.cached_from
            extra = f", cached from {cached}" if cached else f", cloned from {t.origin_pathspec}" if t.origin_pathspec else ""
            extra += f", attempt {t.current_attempt}" if t.current_attempt else ""
            click.echo(f"  task {t.id} [{status}] {t.duration:.3f}s{extra}")
            for a in t:
                click.echo(f"    {a.id:<24} {a.type:<28} {_fmt_size(a.size):>10}")
            if t.exception:
                click.echo("    " + t.exception.strip().splitlines()[-1])


@main.command()
@click.argument("spec")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (non-loopback needs --token).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--token", default=None,
              help="Require Authorization: Bearer TOKEN on every route but /healthz. Prefer the environment "
                   "variable REELFLOW_SERVE_TOKEN: a command line is visible to other users of the machine.")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              help="Seconds between checks of the alias (hot-swap); 0 disables.")
@click.option("--access-log", is_flag=True, help="Log one line per request on stderr.")
@click.option("--generate-queue", type=click.IntRange(min=1), default=16, show_default=True,
              help="Generation models: jobs that may wait per server process; more are answered 429.")
@_guard
def serve(spec: str, host: str, port: int, workers: int, token: str | None, poll_interval: float,
          access_log: bool, generate_queue: int) -> None:
    """Serve a registered recommender over HTTP: reelflow serve NAME@ALIAS."""
    from .errors import ParameterError
    from .serving import serve as run_server

    if token:
        click.echo("warning: --token is visible to other users of this machine (ps, /proc/PID/cmdline); "
                   "set REELFLOW_SERVE_TOKEN in the environment instead", err=True)
    try:
        run_server(spec, host=host, port=port, workers=workers, token=token, poll_interval=poll_interval,
                   access_log=access_log, generate_queue=generate_queue)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None


@main.group()
def models() -> None:
    """The model registry: versions, aliases and their history."""


@models.command("list")
@_guard
def models_list() -> None:
    """Every registered model with its latest version and aliases."""
    from . import registry

    from .store import get_store

    found = registry.list()
    if not found:
        click.echo(f"no models are registered in the store ({get_store().describe()})")
        return
    click.echo(f"{'MODEL':<28} {'LATEST':>6}  {'ALIASES':<28} SOURCE")
    for mv in found:
        aliases = ", ".join(f"{a}->{v.version}" for v in registry.versions(mv.name) for a in v.aliases)
        click.echo(f"{mv.name:<28} {mv.version:>6}  {aliases or '-':<28} {mv.source or '(script)'}")


@models.command("show")
@click.argument("name")
@_guard
def models_show(name: str) -> None:
    """Every version of NAME: when, by whom, from which run, metrics, aliases."""
    from . import registry

    for v in registry.versions(name):
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in v.metrics.items())
        click.echo(f"{v.spec}{aliases}: {v.type}, {_fmt_size(v.size)}, {_fmt_time(v.created_at)} by {v.user}, "
                   f"from {v.source or '(script)'}" + (f"; {metrics}" if metrics else ""))
        if v.description:
            click.echo(f"    {v.description}")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int)
@_guard
def models_alias(name: str, alias: str, version: int) -> None:
    """Point NAME@ALIAS at VERSION (servers following the alias swap to it)."""
    from . import registry

    registry.set_alias(name, alias, version)
    click.echo(f"{name}@{alias} -> version {version}")


@models.command("history")
@click.argument("name")
@_guard
def models_history(name: str) -> None:
    """Every alias move of NAME, oldest first."""
    from . import registry

    rows = registry.history(name)
    if not rows:
        click.echo(f"model {name!r} has no alias history")
        return
    for r in rows:
        to = "deleted" if r["version"] is None else f"-> {r['version']}"
        prev = f" (was {r['previous_version']})" if r["previous_version"] is not None else ""
        if r.get("decision") == "kept":
            to, prev = f"kept {r['version']}", ""
        why = f"  -- {r['reason']}" if r.get("reason") else ""
        click.echo(f"{_fmt_time(r['at'])}  {r['alias']:<16} {to}{prev}  by {r['user']}{why}")


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--alias", default="champion", show_default=True)
@click.option("--metric", default="ndcg@10", show_default=True, help="A metric registered with both versions.")
@click.option("--lower-is-better", is_flag=True, help="The metric is a loss or error.")
@click.option("--min-improvement", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How much better the candidate must be.")
@_guard
def models_promote(name: str, version: int, alias: str, metric: str, lower_is_better: bool,
                   min_improvement: float) -> None:
    """Move NAME@ALIAS to VERSION only if it beats the current holder on METRIC (the verdict is recorded)."""
    from . import registry
    from .errors import ParameterError

    try:
        d = registry.promote(name, version, alias=alias, metric=metric, higher_is_better=not lower_is_better,
                             min_improvement=min_improvement)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{name}@{alias}: {'moved to ' + str(version) if d.moved else 'kept ' + str(d.incumbent)} -- "
               f"{d.reason}")


@models.command("rollback")
@click.argument("name")
@click.argument("alias")
@_guard
def models_rollback(name: str, alias: str) -> None:
    """Point NAME@ALIAS back at its previous holder (servers following the alias swap back)."""
    from . import registry

    d = registry.rollback(name, alias)
    click.echo(f"{name}@{alias} -> version {d.candidate} (was {d.incumbent})")



@main.command()
@click.option("--grace", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Hours: files younger than this (and than the start of any live run) are kept.")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--keep-last", type=click.IntRange(min=0), default=None,
              help="Retention: keep the newest N runs of each flow; delete older runs' metadata.")
@click.option("--older-than", default=None, metavar="AGE",
              help="Retention: delete runs created more than AGE ago (30d, 12h, 90m); with --keep-last, both apply.")
@_guard
def gc(grace: float, dry_run: bool, keep_last: int | None, older_than: str | None) -> None:
    """Remove partial writes of crashed writers, blobs no run or model refers to, and quarantined blobs.

    With --keep-last / --older-than it first deletes the metadata of runs past the policy, never
    runs still running, runs a registered model came from, or runs tagged 'keep'.
    """
    from .store import get_store
    from .store._gc import collect_garbage

    store = get_store(create=False)
    if keep_last is not None or older_than is not None:
        from .errors import ParameterError
        from .store._retention import delete_runs, parse_age, select_expired_runs

        try:
            age = None if older_than is None else parse_age(older_than)
        except ParameterError as exc:
            raise click.UsageError(str(exc)) from None
        ret = select_expired_runs(store, keep_last=keep_last, older_than=age)
        if not dry_run:
            delete_runs(store, ret.deleted)
        for p in ret.deleted[:20]:
            click.echo(f"{'would delete' if dry_run else 'deleted'} run {p}")
        if len(ret.deleted) > 20:
            click.echo(f"... and {len(ret.deleted) - 20} more")
        click.echo(ret.summary(dry_run))
    report = collect_garbage(store, grace=grace * 3600, dry_run=dry_run)
    click.echo(f"{report.summary()} ({store.describe()})")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (non-loopback needs a token).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token", default=None,
              help="Require this token on every page (log in once in the browser). Prefer the environment "
                   "variable REELFLOW_UI_TOKEN: a command line is visible to other users of the machine.")
@_guard
def ui(host: str, port: int, token: str | None) -> None:
    """The web UI: runs, graphs, logs, metrics, cards and models (http://127.0.0.1:8080/)."""
    from .errors import ParameterError
    from .ui import serve_ui

    if token:
        click.echo("warning: --token is visible to other users of this machine (ps, /proc/PID/cmdline); "
                   "set REELFLOW_UI_TOKEN in the environment instead", err=True)
    try:
        serve_ui(host=host, port=port, token=token)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None


@main.group()
def card() -> None:
    """Cards of tasks: list them, or write one as a self-contained HTML file."""


@card.command("get")
@click.argument("pathspec")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option("--id", "card_id", default=None, help="Which card of the task (default: its first).")
@click.option("--attempt", type=int, default=None, help="Which attempt (default: the latest with cards).")
@_guard
def card_get(pathspec: str, out: str, card_id: str | None, attempt: int | None) -> None:
    """Write the card of task FLOW/RUN_ID/STEP/TASK_ID to OUT (one HTML file that opens offline)."""
    from .cards import get_cards
    from .errors import NotFoundError

    found = get_cards(pathspec, attempt=attempt)
    if not found:
        raise NotFoundError(f"task {pathspec} has no card; decorate its step with @card or use current.card")
    if card_id is not None:
        pick = [c for c in found if c.id == card_id]
        if not pick:
            raise NotFoundError(f"task {pathspec} has no card {card_id!r}; its cards are "
                                f"{', '.join(c.id for c in found)}")
        found = pick
    html = found[0].html()
    Path(out).write_text(html, encoding="utf-8")
    click.echo(f"wrote card {found[0].id!r} of {pathspec} (attempt {found[0].attempt}) to {out} "
               f"({_fmt_size(len(html.encode()))})")


@card.command("list")
@click.argument("pathspec")
@_guard
def card_list(pathspec: str) -> None:
    """The cards of task FLOW/RUN_ID/STEP/TASK_ID."""
    from .cards import get_cards

    found = get_cards(pathspec)
    if not found:
        click.echo(f"task {pathspec} has no card")
    for c in found:
        click.echo(f"{c.id:<20} {c.type:<8} attempt {c.attempt}  {'final' if c.final else 'live'}  "
                   f"{_fmt_time(c.updated_at)}")


@main.group()
def review() -> None:
    """Review generated outputs: list, show, approve, reject (each decision recorded with who and when)."""


def _review_api() -> Any:
    from . import _extras

    _extras.require("gen", "reelflow review", modules=("numpy", "PIL"))
    from .generate import _review

    return _review


@review.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected"]), default=None,
              help="Only outputs with this status.")
@click.option("--model", default=None, help="Only outputs of this model reference (e.g. backgrounds@champion).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@_guard
def review_list(status: str | None, model: str | None, limit: int) -> None:
    """Generated outputs, newest first, with their status."""
    rows = _review_api().list_outputs(status=status, model=model, limit=limit)
    if not rows:
        click.echo("no generated outputs" + (f" with status {status}" if status else "") +
                   "; run a generation flow (python -m reelflow.generate.generate_flow run ...)")
        return
    click.echo(f"{'ID':>6}  {'STATUS':<9} {'CREATED':<19}  {'MODEL':<28} {'SEED':>6}  INPUT")
    for r in rows:
        lin = r["lineage"]
        inp = r["input_name"] or (lin.get("prompt") or "")[:40]
        click.echo(f"{r['id']:>6}  {r['status']:<9} {_fmt_time(r['created_at']):<19}  "
                   f"{lin.get('model_version', r['model'])[:28]:<28} {lin.get('seed', ''):>6}  {inp}")


@review.command("show")
@click.argument("output_id", type=int)
@click.option("--save", "save_to", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the image to this PNG file.")
@_guard
def review_show(output_id: int, save_to: str | None) -> None:
    """One output: its lineage, status and every decision on it."""
    import json

    r = _review_api().get_output(output_id)
    click.echo(f"output {r['id']}: {r['status']}  (blob {r['key']}, {_fmt_size(r['size'])})")
    click.echo(f"generated by {r['pathspec'] or '-'} at {_fmt_time(r['created_at'])} for {r['user']}")
    click.echo("lineage: " + json.dumps(r["lineage"], indent=2, sort_keys=True, default=str))
    for d in r["decisions"]:
        why = f" -- {d['reason']}" if d["reason"] else ""
        click.echo(f"{_fmt_time(d['at'])}  {d['decision']:<9} by {d['user']}{why}")
    if save_to:
        from .store import get_store

        Path(save_to).write_bytes(get_store(create=False).load(r["key"], what=f"generated output {output_id}"))
        click.echo(f"wrote {save_to}")


@review.command("approve")
@click.argument("output_ids", type=int, nargs=-1, required=True)
@click.option("--reason", default=None, help="Optional note.")
@click.option("--image", "image", type=click.Path(dir_okay=False), default=None,
              help="A retouched version (PNG, the output's size) approved in place of the output (one ID only).")
@_guard
def review_approve(output_ids: Sequence[int], reason: str | None, image: str | None) -> None:
    """Approve outputs: they join the next training set of their model."""
    from .errors import ParameterError

    if image is not None and len(output_ids) != 1:
        raise ParameterError("--image retouches one output; approve one ID at a time with it")
    api = _review_api()
    for i in output_ids:
        r = api.approve(i, reason=reason, image=image)
        extra = " (retouched image stored)" if image else ""
        click.echo(f"output {i}: approved by {r['decisions'][-1]['user']}{extra}")


@review.command("reject")
@click.argument("output_ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True, help="What is wrong (required).")
@_guard
def review_reject(output_ids: Sequence[int], reason: str) -> None:
    """Reject outputs, saying why."""
    api = _review_api()
    for i in output_ids:
        r = api.reject(i, reason=reason)
        click.echo(f"output {i}: rejected by {r['decisions'][-1]['user']}")


def _add_operate_commands() -> None:
    """deploy, deployments, events, scheduler (issue #10: continuous operation)."""
    from .operate._cli import deploy_cmd, deployments, events, scheduler

    for cmd in (deploy_cmd, deployments, events, scheduler):
        main.add_command(cmd)


_add_operate_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
