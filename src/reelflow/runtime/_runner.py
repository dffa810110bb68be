"""``Runner``: run a flow file from a notebook or script and get the run back.

Each call starts ``python flow.py run ...`` in a subprocess (so a crash or
``sys.exit`` in a step never takes the notebook down) against the same store as
the caller, and returns an :class:`ExecutingRun` whose ``.run`` is the client's
:class:`~reelflow.Run`. The signature is Metaflow's: ``Runner(flow_file, show_output=,
profile=, env=, cwd=, file_read_timeout=, **top_level_options)``, blocking
``run``/``resume``/``spin`` and asyncio ``async_run``/``async_resume``/``async_spin``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ._options import RUN_OPTIONS
from ._runproc import Command

if TYPE_CHECKING:
    from ..client import Run
    from ..store import Store
    from ._spin import SpinTask

__all__ = ["Runner", "ExecutingRun", "ExecutingTask"]

# Runner keywords that are run options, not flow parameters (from the one table of options;
# ``with_`` stands for --with, a keyword Python reserves).
_BY_KEYWORD = {("with_" if o.flag == "with" else o.dest): o for o in RUN_OPTIONS if not o.hidden}
_ALIASES = {"decospecs": "with_", "tag": "tags"}  # Metaflow's keyword names
_RUN_OPTIONS = frozenset(_BY_KEYWORD)
# Metaflow's top-level options that choose its own backends; reelflow's store comes from
# REELFLOW_* variables (pass them in env=), so these are accepted and have no effect.
_IGNORED_TOP = frozenset({"pylint", "metadata", "environment", "datastore", "datastore_root", "event_logger",
                          "monitor", "package_suffixes", "force_rebuild_environments", "local_config_file", "mode"})
_IGNORED_RUN = frozenset({"max_log_size", "run_id_file", "runner_attribute_file"})


class ExecutingProcess:
    """A started ``python flow.py ...``: its status, output and (asyncio) wait."""

    def __init__(self, runner: Runner, command: Command) -> None:
        self.runner = runner
        self.command_obj = command

    @property
    def returncode(self) -> int | None:
        """The exit status; None while it runs."""
        return self.command_obj.returncode

    @property
    def status(self) -> str:
        """``running``, ``successful``, ``failed`` or ``timeout`` (stopped by ``wait(timeout=)``)."""
        if self.command_obj.timeout:
            return "timeout"
        rc = self.returncode
        return "running" if rc is None else "successful" if rc == 0 else "failed"

    @property
    def stdout(self) -> str:
        """Its stdout so far (all of it once it ended)."""
        return self.command_obj.read("stdout")

    @property
    def stderr(self) -> str:
        return self.command_obj.read("stderr")

    async def wait(self, timeout: float | None = None, stream: str | None = None) -> ExecutingProcess:
        """Wait for the end (stopping it after ``timeout`` s: status ``timeout``), printing ``stream``."""
        await self.command_obj.wait(timeout, stream)
        return self

    async def stream_log(self, stream: str, position: int | None = None) -> AsyncIterator[tuple[int, str]]:
        """``(position, line)`` of ``stdout`` or ``stderr`` as they are written; pass ``position``
        back to continue where an earlier stream stopped."""
        async for item in self.command_obj.stream_log(stream, position):
            yield item

    def __enter__(self) -> ExecutingProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.runner.cleanup()


class ExecutingRun(ExecutingProcess):
    """The outcome of :meth:`Runner.run` / :meth:`Runner.resume` (or a run still going, from
    :meth:`Runner.async_run`): ``.run`` is the client's :class:`~reelflow.Run`."""

    def __init__(self, runner: Runner, command: Command, run_id: str | None, store: Store) -> None:
        super().__init__(runner, command)
        self.run_id = run_id
        self._store = store
        self._run: Run | None = None

    @property
    def run(self) -> Run | None:
        """The run (read afresh while it is still going); None if it never started."""
        if self.run_id is None:
            return None
        if self._run is not None:
            return self._run
        from ..client import Run

        md = self._store.metadata
        run = Run._from_row(md.get_run(md.get_run_flow(self.run_id), self.run_id), self._store)
        if self.returncode is not None:
            self._run = run
        return run

    def __enter__(self) -> ExecutingRun:
        return self

    def __repr__(self) -> str:
        return f"ExecutingRun(run_id={self.run_id}, status={self.status})"


class ExecutingTask(ExecutingProcess):
    """The outcome of :meth:`Runner.spin`: ``.task`` is the spun task (its outputs in ``.task.data``)."""

    def __init__(self, runner: Runner, command: Command, task: SpinTask | None) -> None:
        super().__init__(runner, command)
        self.task = task

    def __enter__(self) -> ExecutingTask:
        return self

    def __repr__(self) -> str:
        return f"ExecutingTask({self.task!r}, status={self.status})"


class Runner:
    """Run ``flow_file`` programmatically.

    Parameters
    ----------
    flow_file : the flow's ``.py`` file.
    show_output : echo the run's output here (blocking calls); it is kept in
        ``.stdout`` / ``.stderr`` either way.
    profile : accepted for Metaflow code; reelflow's store is chosen by ``REELFLOW_*``
        variables (pass them in ``env``).
    env : environment variables added for the run (``REELFLOW_HOME`` here chooses the store).
    cwd : the run's working directory (default: this process's).
    file_read_timeout : seconds to wait for a started run to report its id.
    **kwargs : top-level options of ``python flow.py``: ``with_``/``decospecs`` (``--with``),
        ``quiet``; Metaflow's backend options (``pylint``, ``metadata``, ``datastore``, ...)
        are accepted and have no effect; others are passed as ``--name value``.

    Examples
    --------
    >>> with Runner("flow.py", pylint=False).run(alpha=0.5) as running:   # doctest: +SKIP
    ...     print(running.run.data.score)
    """

    def __init__(
        self,
        flow_file: str | os.PathLike[str],
        show_output: bool = True,
        profile: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        file_read_timeout: int = 3600,
        **kwargs: Any,
    ) -> None:
        self.flow_file = Path(flow_file).absolute()
        if not self.flow_file.is_file():
            raise ParameterError(f"Runner: flow file {str(flow_file)!r} does not exist")
        self.show_output = show_output
        self.profile = profile
        self.env = dict(env or {})
        self.cwd = cwd
        self.file_read_timeout = file_read_timeout
        self.top_level_kwargs = dict(kwargs)
        self._commands: list[Command] = []
        self._spin_dirs: list[Path] = []  # where spun tasks put their outputs (read by .task.data)
        self._finalizer = weakref.finalize(self, _cleanup_all, self._commands, self._spin_dirs)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the temporary files: output (it stays readable in memory) and spun tasks' outputs."""
        _cleanup_all(self._commands, self._spin_dirs)

    # -- blocking -------------------------------------------------------------------------
    def run(self, **kwargs: Any) -> ExecutingRun:
        """Run the flow and wait for the end; keyword arguments are flow parameters or run
        options (``max_workers``, ``max_num_splits``, ``tags``, ``with_``, ``quiet``,
        ``inprocess``, ``executor``: ``"ray"`` runs the tasks on Ray)."""
        return self._blocking(["run"], kwargs)

    def resume(self, step: str | None = None, origin_run_id: str | None = None, **kwargs: Any) -> ExecutingRun:
        """Resume the latest run (or ``origin_run_id``) from its failed step (or ``step``,
        also spelt ``step_to_rerun``); a successful run is cloned whole."""
        return self._blocking(self._resume_args(step, origin_run_id, kwargs), kwargs)

    def spin(self, pathspec: str, **kwargs: Any) -> ExecutingTask:
        """Run one step again on a past run's inputs (``"train"``, ``"RUN/train"`` or
        ``"RUN/train/TASK"``) without recording a run; ``persist=True`` keeps its outputs
        in the spin store. ``.task.data`` holds what the step produced."""
        from ._spin import spin_args

        argv, out_dir = self._spin_argv(pathspec, kwargs, spin_args)
        command = self._command(argv)
        command.run_blocking(self.show_output)
        return ExecutingTask(self, command, self._spin_task(out_dir))

    # -- asyncio ----------------------------------------------------------------------------
    async def async_run(self, **kwargs: Any) -> ExecutingRun:
        """Start the run and return once it has its id; ``await result.wait()`` for the end."""
        return await self._started(["run"], kwargs)

    async def async_resume(self, step: str | None = None, origin_run_id: str | None = None,
                           **kwargs: Any) -> ExecutingRun:
        """:meth:`resume` without waiting for the end."""
        return await self._started(self._resume_args(step, origin_run_id, kwargs), kwargs)

    async def async_spin(self, pathspec: str, **kwargs: Any) -> ExecutingTask:
        """:meth:`spin` as a coroutine (it returns when the step ended)."""
        from ._spin import spin_args

        argv, out_dir = self._spin_argv(pathspec, kwargs, spin_args)
        command = self._command(argv)
        await command.start_async()
        await command.wait()
        return ExecutingTask(self, command, self._spin_task(out_dir))

    # -- the command lines ------------------------------------------------------------------
    def _resume_args(self, step: str | None, origin_run_id: str | None, kwargs: dict[str, Any]) -> list[str]:
        step = step or kwargs.pop("step_to_rerun", None)
        if kwargs.pop("clone_only", False):
            raise ParameterError("Runner.resume(clone_only=True) is not supported; resume clones what succeeded "
                                 "and runs the rest")
        args = ["resume"] + ([step] if step else [])
        if origin_run_id:
            args += ["--origin-run-id", str(origin_run_id)]
        return args

    def _env(self) -> tuple[dict[str, str], Store]:
        from ..config import load_config
        from ..store import get_store

        home = self.env.get("REELFLOW_HOME")
        store = get_store(load_config(home) if home else None)
        env = {**os.environ, **self.env}
        if "REELFLOW_HOME" not in self.env:
            env["REELFLOW_HOME"] = str(store.config.home)
        return env, store

    def _top_level(self) -> list[str]:
        argv: list[str] = []
        for k, v in self.top_level_kwargs.items():
            k = _ALIASES.get(k, k)
            if k in _IGNORED_TOP or v is None:
                continue
            if k in ("with_", "with"):
                argv += [x for s in ([v] if isinstance(v, str) else v) for x in ("--with", str(s))]
            elif k == "quiet":
                continue  # a run option here (added to the subcommand)
            else:
                argv += _option(k, v)
        return argv

    def _argv(self, args: list[str], kwargs: dict[str, Any]) -> list[str]:
        argv = [sys.executable, str(self.flow_file), *self._top_level(), *args]
        if self.top_level_kwargs.get("quiet") and "quiet" not in kwargs:
            kwargs = {**kwargs, "quiet": True}
        for k, v in kwargs.items():
            k = _ALIASES.get(k, k)
            if k in _IGNORED_RUN:
                continue
            if k in _RUN_OPTIONS:
                argv += _run_option(k, v)
            else:
                argv += [f"--{k}", _cli_value(v)]
        return argv

    def _command(self, argv: list[str]) -> Command:
        env, _ = self._env()
        command = Command(argv, env=env, cwd=self.cwd)
        self._commands.append(command)
        return command

    def _blocking(self, args: list[str], kwargs: dict[str, Any]) -> ExecutingRun:
        env, store = self._env()
        id_file = _id_file()
        try:
            command = Command(self._argv(args, kwargs) + ["--run-id-file", id_file], env=env, cwd=self.cwd)
            self._commands.append(command)
            command.run_blocking(self.show_output)
            run_id = Path(id_file).read_text().strip() or None
        finally:
            os.unlink(id_file)
        return ExecutingRun(self, command, run_id, store)

    async def _started(self, args: list[str], kwargs: dict[str, Any]) -> ExecutingRun:
        env, store = self._env()
        id_file = _id_file()
        try:
            command = Command(self._argv(args, kwargs) + ["--run-id-file", id_file], env=env, cwd=self.cwd)
            self._commands.append(command)
            await command.start_async()
            deadline = time.monotonic() + self.file_read_timeout
            run_id = None
            while run_id is None:
                run_id = Path(id_file).read_text().strip() or None
                if run_id is None:
                    if command.returncode is not None or time.monotonic() > deadline:
                        break  # it ended (or never said) before recording a run: bad input
                    await asyncio.sleep(0.05)
        finally:
            os.unlink(id_file)
        return ExecutingRun(self, command, run_id, store)

    def _spin_argv(self, pathspec: str, kwargs: dict[str, Any], spin_args: Any) -> tuple[list[str], Path]:
        out_dir = Path(tempfile.mkdtemp(prefix="reelflow-spin-"))
        self._spin_dirs.append(out_dir)
        argv = [sys.executable, str(self.flow_file), *self._top_level(), "spin", str(pathspec),
                *spin_args(kwargs), "--result-dir", str(out_dir)]
        return argv, out_dir

    def _spin_task(self, out_dir: Path) -> SpinTask | None:
        from ._spin import SpinTask

        _, store = self._env()
        return SpinTask.open(out_dir, store)


def _id_file() -> str:
    fd, path = tempfile.mkstemp(prefix="reelflow-run-id-")
    os.close(fd)
    return path


def _cleanup_all(commands: list[Command], spin_dirs: list[Path]) -> None:
    import shutil

    for c in commands:
        c.cleanup()
    for d in spin_dirs:
        shutil.rmtree(d, ignore_errors=True)


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    return str(v)


def _text(x: Any) -> str:
    """An option's value as text: a dict or list as JSON (``config_value=[("cfg", {...})]``)."""
    return json.dumps(x) if isinstance(x, (dict, list)) else str(x)


def _option(k: str, v: Any) -> list[str]:
    """A top-level option as click's API would write it (Metaflow's ``click_api``)."""
    flag = "--" + k.replace("_", "-")
    if isinstance(v, bool):
        return [flag] if v else []
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (list, tuple)) for x in v):
        return [y for x in v for y in (flag, *map(_text, x))]  # multiple options of several values
    if isinstance(v, (list, tuple)):
        return [y for x in v for y in (flag, str(x))]
    return [flag, str(v)]


def _run_option(k: str, v: Any) -> list[str]:
    o = _BY_KEYWORD[k]
    if o.kind == "flag":
        return [f"--{o.flag}"] if v else []
    if o.kind == "multiple":
        return [x for t in ([v] if isinstance(v, str) else v) for x in (f"--{o.flag}", str(t))]
    return [f"--{o.flag}", str(v)]
