"""The ``reelflow`` command: run flow files and look at runs.

    reelflow run path/to/flow.py [--param value ...]   same as python flow.py run
    reelflow resume path/to/flow.py [STEP] [...]       same as python flow.py resume
    reelflow demo                                      the recommender demo (main job)
    reelflow runs list [FLOW]                          newest first
    reelflow runs show FLOW/RUN_ID                     steps, status, durations, artifacts
"""

from __future__ import annotations

import importlib.util
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

    return wrapper


@click.group()
@click.version_option(package_name="reelflow")
def main() -> None:
    """reelflow: flows, runs, models and serving for a streaming service's ML."""


def _delegate(command: str) -> Callable[..., Any]:
    @_guard
    def cmd(flow_file: str, args: Sequence[str]) -> None:
        from .runtime._cli import run_cli

        run_cli(load_flow_file(flow_file), [command, *args])

    return cmd


for _name, _help in (("run", "Run a flow file (same options as `python flow.py run`)."),
                     ("resume", "Resume a run of a flow file (same as `python flow.py resume`).")):
    main.add_command(
        click.Command(
            _name,
            callback=_delegate(_name),
            help=_help,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            params=[click.Argument(["flow_file"]), click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        )
    )


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
@_guard
def runs_list(flow: str | None, limit: int) -> None:
    """Runs of FLOW (or of every flow), newest first."""
    from .store import get_store

    rows = get_store().metadata.list_runs(flow)[:limit]
    if not rows:
        click.echo(f"no runs{' of ' + flow if flow else ''} in {get_store().config.home}")
        return
    click.echo(f"{'RUN':<24} {'STATUS':<10} {'STARTED':<20} {'DURATION':>9}  TAGS")
    for r in rows:
        dur = f"{r['finished_at'] - r['created_at']:.2f}s" if r["finished_at"] else "-"
        click.echo(f"{r['flow_name'] + '/' + r['run_id']:<24} {r['status']:<10} {_fmt_time(r['created_at']):<20} "
                   f"{dur:>9}  {' '.join(r['tags'])}")


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
            extra = f", cloned from {t.origin_pathspec}" if t.origin_pathspec else ""
            extra += f", attempt {t.current_attempt}" if t.current_attempt else ""
            click.echo(f"  task {t.id} [{status}] {t.duration:.3f}s{extra}")
            for a in t.artifacts.values():
                click.echo(f"    {a.id:<24} {a.type:<28} {_fmt_size(a.size):>10}")
            if t.exception:
                click.echo("    " + t.exception.strip().splitlines()[-1])


if __name__ == "__main__":  # pragma: no cover
    main()
