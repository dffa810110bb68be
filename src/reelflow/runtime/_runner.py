"""``Runner``: run a flow file from a notebook or script and get the run back.

Each call starts ``python flow.py run ...`` in a subprocess (so a crash or
``sys.exit`` in a step never takes the notebook down) against the same store as
the caller, and returns an :class:`ExecutingRun` whose ``.run`` is the client's
:class:`~reelflow.Run`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ._options import RUN_OPTIONS

if TYPE_CHECKING:
    from ..client import Run

__all__ = ["Runner", "ExecutingRun"]

# Runner keywords that are run options, not flow parameters (from the one table of options;
# ``with_`` stands for --with, a keyword Python reserves).
_BY_KEYWORD = {("with_" if o.flag == "with" else o.dest): o for o in RUN_OPTIONS if not o.hidden}
_RUN_OPTIONS = frozenset(_BY_KEYWORD)


class ExecutingRun:
    """The outcome of :meth:`Runner.run` / :meth:`Runner.resume`."""

    def __init__(self, run: Run | None, returncode: int, stdout: str, stderr: str) -> None:
        self.run = run
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def status(self) -> str:
        return "successful" if self.returncode == 0 else "failed"

    def __enter__(self) -> ExecutingRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"ExecutingRun({self.run!r}, status={self.status})"


class Runner:
    """Run ``flow_file`` programmatically.

    Examples
    --------
    >>> with Runner("flow.py").run(alpha=0.5) as running:   # doctest: +SKIP
    ...     print(running.run.data.score)
    """

    def __init__(
        self,
        flow_file: str | os.PathLike[str],
        *,
        show_output: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.flow_file = Path(flow_file).absolute()
        if not self.flow_file.is_file():
            raise ParameterError(f"Runner: flow file {str(flow_file)!r} does not exist")
        self.show_output = show_output
        self.env = dict(env or {})
        self.cwd = cwd

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def run(self, **kwargs: Any) -> ExecutingRun:
        """Start a run; keyword arguments are flow parameters or run options
        (``max_workers``, ``max_num_splits``, ``tags``, ``with_``, ``quiet``, ``inprocess``,
        ``executor``: ``"ray"`` runs the tasks on Ray)."""
        return self._execute(["run"], kwargs)

    def resume(self, step: str | None = None, origin_run_id: str | None = None, **kwargs: Any) -> ExecutingRun:
        """Resume the latest run (or ``origin_run_id``) from its failed step (or ``step``)."""
        args = ["resume"] + ([step] if step else [])
        if origin_run_id:
            args += ["--origin-run-id", str(origin_run_id)]
        return self._execute(args, kwargs)

    def _execute(self, args: list[str], kwargs: dict[str, Any]) -> ExecutingRun:
        from ..client import Run
        from ..store import get_store

        store = get_store()
        argv = [sys.executable, str(self.flow_file), *args]
        for k, v in kwargs.items():
            if k in _RUN_OPTIONS:
                argv += _run_option(k, v)
            else:
                argv += [f"--{k}", _cli_value(v)]
        env = {**os.environ, **self.env, "REELFLOW_HOME": str(store.config.home)}
        fd, id_file = tempfile.mkstemp(prefix="reelflow-run-id-")
        os.close(fd)
        argv += ["--run-id-file", id_file]
        try:
            pipe = None if self.show_output else subprocess.PIPE
            proc = subprocess.Popen(argv, env=env, cwd=self.cwd, stdout=pipe, stderr=pipe, text=True)
            try:
                out, err = proc.communicate()
            except KeyboardInterrupt:
                # A notebook's interrupt reaches only this process: pass it on and let the
                # run stop cleanly (recorded as failed, workers stopped) instead of killing it.
                _stop(proc)
                raise
            returncode = proc.returncode
            out, err = out or "", err or ""
            run_id = Path(id_file).read_text().strip()
        finally:
            os.unlink(id_file)
        run = None
        if run_id:
            flow_name = store.metadata.get_run_flow(run_id)
            run = Run._from_row(store.metadata.get_run(flow_name, run_id), store)
        return ExecutingRun(run, returncode, out, err)


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    return str(v)


def _run_option(k: str, v: Any) -> list[str]:
    o = _BY_KEYWORD[k]
    if o.kind == "flag":
        return [f"--{o.flag}"] if v else []
    if o.kind == "multiple":
        return [x for t in ([v] if isinstance(v, str) else v) for x in (f"--{o.flag}", str(t))]
    return [f"--{o.flag}", str(v)]


def _stop(proc: subprocess.Popen[str], grace: float = 60.0) -> None:
    """SIGINT (what Ctrl-C in a terminal sends), then SIGKILL if the run does not stop in ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
