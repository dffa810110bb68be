"""The command line of a flow file: ``python flow.py run|resume|show|check|logs``.

Bad input is a usage error (exit 2) with a message naming the option; a broken
flow or a failed run is exit 1 with the step named; nothing prints a traceback
of reelflow's own.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, NoReturn

import click

from ..errors import ParameterError, ReelflowError, RunFailedError, RunInterruptedError
from ..flows._decorators import parse_with_spec
from ..flows._spec import FlowSpec
from ._options import RUN_OPTIONS

__all__ = ["build_cli", "run_cli"]


def _fail(msg: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _guard(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ParameterError as exc:
            raise click.UsageError(str(exc)) from None
        except RunInterruptedError as exc:
            _fail(str(exc), exc.exit_code)
        except RunFailedError as exc:
            _fail(str(exc))
        except ReelflowError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _runtime_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``run`` and ``resume``, from the one table in ``_options.py``."""
    for o in reversed(RUN_OPTIONS):
        decls = [f"--{o.flag}", o.dest]
        if o.kind == "flag":
            f = click.option(*decls, is_flag=True, help=o.help, hidden=o.hidden)(f)
        elif o.kind == "multiple":
            metavar = "DECORATOR" if o.flag == "with" else None
            f = click.option(*decls, multiple=True, help=o.help, hidden=o.hidden, metavar=metavar)(f)
        elif o.kind == "choice":
            from ._executors import EXECUTORS

            f = click.option(*decls, type=click.Choice(EXECUTORS, case_sensitive=False), default=None, help=o.help,
                             hidden=o.hidden)(f)
        elif o.flag == "run-id-file":
            f = click.option(*decls, type=click.Path(dir_okay=False), default=None, hidden=o.hidden, help=o.help)(f)
        else:
            f = click.option(*decls, type=click.IntRange(min=1), default=o.default, help=o.help, hidden=o.hidden,
                             show_default=o.default is not None)(f)
    return f


def _make_runtime(flow_cls: type[FlowSpec], ctx_obj: dict[str, Any], **kw: Any) -> Any:
    from ._executors import resolve_executor_name

    specs: list[str] = []
    executor = kw.get("executor")
    executor_options: dict[str, Any] = {}
    for s in (*ctx_obj.get("with", ()), *kw["with_specs"]):
        name, _, rest = s.partition(":")
        if name.strip() != "ray":
            specs.append(s)
            continue
        # --with ray[:address=...,num_cpus=...]: the Ray executor, not a step decorator
        if executor not in (None, "ray"):
            raise ParameterError(f"--with ray and --executor {executor} disagree; choose one executor")
        executor = "ray"
        executor_options.update(_ray_options(s, rest))
    if kw.get("cache"):  # --cache: step caching for every step (see _cache.py)
        specs.append("cache")
    chosen = executor or os.environ.get("REELFLOW_EXECUTOR")  # None: the default, the fork server
    executor = resolve_executor_name(executor, inprocess=kw["inprocess"])
    zygote = None
    if executor == "forkserver" or (not chosen and executor == "fork"
                                    and os.environ.get("REELFLOW_FORK_SERVER", "1") != "0"):
        from ._zygote import Zygote, zygote_available

        if zygote_available():
            # Forked now, before the scheduler imports SQLAlchemy: forking workers from
            # this small process is several times cheaper than from the scheduler.
            zygote = Zygote(flow_cls)
            executor = "forkserver"
    from ._scheduler import LocalRuntime

    try:
        decos = [parse_with_spec(s) for s in specs]
    except ReelflowError as exc:  # a bad --with value is bad command-line input
        raise ParameterError(str(exc)) from None
    run_id_file = kw["run_id_file"]

    def created(run_id: str) -> None:
        if run_id_file:
            with open(run_id_file, "w") as f:
                f.write(run_id)

    project = _project(flow_cls, ctx_obj, kw)
    from ..flows._environments import environment_warning

    warn = environment_warning(flow_cls, [n.name for n in flow_cls.graph()], ctx_obj.get("environment"))
    if warn:
        click.echo(warn, err=True)
    try:
        return LocalRuntime(
            flow_cls,
            max_workers=1 if kw["inprocess"] else kw["max_workers"],
            max_num_splits=kw["max_num_splits"],
            tags=kw["tags"],
            with_decorators=decos,
            quiet=kw["quiet"],
            inprocess=kw["inprocess"],
            on_run_created=created,
            zygote=zygote,
            executor=executor,
            executor_options=executor_options,
            project=project,
            configs=ctx_obj.get("configs"),
        )
    except BaseException:
        if zygote is not None:
            zygote.close()
        raise


def _project(flow_cls: type[FlowSpec], ctx_obj: dict[str, Any], kw: dict[str, Any]) -> Any:
    """The @project branch from ``--branch`` / ``--production`` (before or after the command)."""
    from ..flows._project import resolve_project

    branch = kw.pop("branch", None) or ctx_obj.get("branch")
    production = bool(kw.pop("production", False) or ctx_obj.get("production"))
    info = resolve_project(flow_cls, branch=branch, production=production)
    if info is not None and not kw.get("quiet"):
        click.echo(f"Project: {info.project_name}, Branch: {info.branch_name}")
    return info


def _user() -> str:
    from ..config import load_config

    return str(load_config().user)


def _project_options() -> list[click.Parameter]:
    return [click.Option(["--branch"], default=None, metavar="NAME",
                         help="Run on branch test.NAME of the @project (prod.NAME with --production)."),
            click.Option(["--production"], is_flag=True, default=False, help="Run on the @project's production branch.")]


def _ray_options(spec: str, rest: str) -> dict[str, Any]:
    """``--with ray:address=HOST:PORT,num_cpus=2`` -> the Ray executor's keyword arguments."""
    known = {"address": str, "num_cpus": int, "object_store_memory": int}
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq or k not in known:
            raise ParameterError(f"--with {spec!r}: the ray executor takes {', '.join(known)} as key=value, "
                                 "e.g. --with ray:address=127.0.0.1:6379")
        try:
            out[k] = known[k](v.strip())
        except ValueError:
            raise ParameterError(f"--with {spec!r}: {k} must be {known[k].__name__}") from None
    return out


def build_cli(flow_cls: type[FlowSpec]) -> click.Group:
    """The click group of ``flow_cls``'s command line."""
    name = flow_cls.__name__

    @click.group(help=(flow_cls.__doc__ or f"Flow {name}.").strip())
    @click.option("--with", "with_specs", multiple=True, metavar="DECORATOR",
                  help="Attach a decorator to every step, e.g. --with retry.")
    @click.option("--environment", default=None, hidden=True,
                  help="Metaflow's --environment=pypi|conda: accepted; steps run in this Python environment.")
    @click.option("--config", "config_files", nargs=2, multiple=True, metavar="NAME FILE",
                  help="Read config NAME of the flow from FILE (repeatable).")
    @click.option("--config-value", "config_texts", nargs=2, multiple=True, metavar="NAME TEXT",
                  help="Config NAME of the flow given as text (JSON unless the config has a parser).")
    @click.pass_context
    @_guard
    def cli(ctx: click.Context, with_specs: Sequence[str], environment: str | None = None,
            config_files: Sequence[tuple[str, str]] = (), config_texts: Sequence[tuple[str, str]] = (),
            branch: str | None = None, production: bool = False) -> None:
        flow_cls.graph()  # every graph check before anything runs
        ctx.obj = {"with": with_specs, "branch": branch, "production": production,
                   "environment": None if environment in (None, "local") else environment}
        from ..flows._mutators import has_mutators

        if flow_cls._flow_configs() or config_files or config_texts or has_mutators(flow_cls):
            from ..flows._config import apply_configs, config_values

            # Fixed before anything forks (the fork server copies this class as it is now).
            from ..flows._config import deployed_config_values

            deployed = None if config_files or config_texts else deployed_config_values(flow_cls)
            values = deployed if deployed is not None else config_values(
                flow_cls, dict(config_files), dict(config_texts), user=_user())
            apply_configs(flow_cls, values)
            ctx.obj["configs"] = values

    from ..flows._project import project_spec

    has_project = project_spec(flow_cls) is not None
    if has_project:  # Metaflow's top-level options of a @project flow (also accepted after run/resume)
        cli.params.extend(_project_options())

    params = flow_cls.parameters()

    def run_cmd(**kwargs: Any) -> None:
        ctx = click.get_current_context()
        raw = {p.name: kwargs.pop(attr) for attr, p in params.items() if kwargs.get(attr) is not None}
        for attr in params:
            kwargs.pop(attr, None)
        rt = _make_runtime(flow_cls, ctx.obj or {}, **kwargs)
        try:
            rt.run(raw)
        finally:
            if rt.zygote is not None:
                rt.zygote.close()

    param_opts: list[click.Parameter] = []
    for attr, p in params.items():
        default = "" if not p.has_default or callable(p.default) else f"; default: {p.default!r}"
        req = "; required" if p.required and not p.has_default else ""
        help_text = f"{p.help or ''} [{p.type_name()}{default}{req}]".strip()
        param_opts.append(click.Option([f"--{p.name}", attr], type=str, default=None, help=help_text,
                                       metavar=p.type_name().upper()))
    run = click.command("run", help=f"Run {name}.")(_runtime_options(_guard(run_cmd)))
    run.params = param_opts + run.params
    if has_project and not {"branch", "production"} & {p.name for p in params.values()}:
        run.params.extend(_project_options())
    cli.add_command(run)

    @cli.command(help="Run again from the failed step (or STEP), reusing the origin run's successful tasks. "
                      "A run that was interrupted or killed can be resumed too.")
    @click.argument("step", required=False)
    @click.option("--origin-run-id", default=None, help="Run to resume [default: the latest].")
    @_runtime_options
    @click.pass_context
    @_guard
    def resume(ctx: click.Context, step: str | None, origin_run_id: str | None, **kwargs: Any) -> None:
        from ._options import check_run_id

        if origin_run_id is not None:
            origin_run_id = check_run_id(origin_run_id, "--origin-run-id")
        rt = _make_runtime(flow_cls, ctx.obj or {}, **kwargs)
        try:
            rt.resume(origin_run_id, step)
        finally:
            if rt.zygote is not None:
                rt.zygote.close()

    from ._spin import add_spin_command

    add_spin_command(cli, flow_cls, _guard)

    @cli.command(help="Check the flow's graph and parameters without running it.")
    @_guard
    def check() -> None:
        g = flow_cls.graph()
        click.echo(f"Flow {name} is valid: {len(g.nodes)} steps, {len(params)} parameters.")

    @cli.command(help="Describe the flow: its steps, transitions and parameters.")
    @_guard
    def show() -> None:
        g = flow_cls.graph()
        if flow_cls.__doc__:
            click.echo(flow_cls.__doc__.strip() + "\n")
        for n in g:
            if n.kind == "end":
                arrow = "(end)"
            elif n.num_parallel is not None:
                arrow = f"=> {n.out_funcs[0]} as a gang of num_parallel tasks (@parallel)"
            elif n.kind == "foreach":
                arrow = f"=> {n.out_funcs[0]} for each item of self.{n.foreach_param}"
            elif n.kind == "switch":
                arrow = "=> " + ", ".join(f"{k}: {v}" for k, v in n.switch_cases.items()) + f" (by self.{n.condition})"
            else:
                arrow = "=> " + ", ".join(n.out_funcs)
            join = " [join]" if n.is_join else ""
            decos = "".join(f" @{d}" for d in n.decorators)
            click.echo(f"Step {n.name}{join}{decos}  {arrow}")
            if n.doc:
                click.echo("    " + n.doc.replace("\n", "\n    "))
        if params:
            click.echo("\nParameters:")
            for attr, p in params.items():
                click.echo(f"  --{p.name} ({p.type_name()})  {p.help or ''}")
        configs = flow_cls._flow_configs()
        if configs:
            click.echo("\nConfigs (--config NAME FILE / --config-value NAME TEXT before the command):")
            for c in configs.values():
                where = (f"default file {c.default!r}" if isinstance(c.default, str) else
                         "a default value" if c.default_value is not None else "required" if c.required else "no default")
                click.echo(f"  {c.name} ({where})  {c.help or ''}")

    @cli.command(help="Print the captured output of RUN_ID/STEP or RUN_ID/STEP/TASK_ID.")
    @click.argument("pathspec")
    @click.option("--stderr", "which", flag_value="stderr", help="Only stderr.")
    @click.option("--stdout", "which", flag_value="stdout", help="Only stdout.")
    @_guard
    def logs(pathspec: str, which: str | None) -> None:
        from ._logcli import print_logs

        bits = pathspec.strip("/").split("/")
        if len(bits) not in (2, 3):
            raise ParameterError(f"logs: {pathspec!r} is not RUN_ID/STEP or RUN_ID/STEP/TASK_ID")
        print_logs("/".join([name, *bits]), which)

    if has_project:
        resume.params.extend(_project_options())
    return cli


def run_cli(flow_cls: type[FlowSpec], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``flow_cls``'s command line and exit."""
    cli = build_cli(flow_cls)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else flow_cls.__name__
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name=prog, standalone_mode=True)
    finally:
        # The interpreter's last garbage collection would walk every object the run
        # imported (tens of ms); nothing here needs collecting any more.
        gc.freeze()
    sys.exit(0)
