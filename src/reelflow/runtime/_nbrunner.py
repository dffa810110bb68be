"""``NBRunner``: run a flow class defined in a notebook cell (or any script), as Metaflow does.

The flow's source is what defines it: the lines of its notebook cell (IPython keeps
them in ``linecache``) or of its script, up to the end of the class. They are written
to a temporary flow file beside the notebook (so its sibling modules import), with
``if __name__ == "__main__": Flow()`` added, and run with :class:`~reelflow.Runner`.
Code of the cell after the class does not run; names the flow uses must come from
its own cell, as with Metaflow.
"""

from __future__ import annotations

import ast
import linecache
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ._runner import ExecutingRun, Runner

if TYPE_CHECKING:
    from ..client import Run

__all__ = ["NBRunner", "flow_source"]


def flow_source(flow: Any) -> str:
    """The source of a flow file that defines ``flow`` (a FlowSpec subclass) and runs its command line."""
    from ..flows._decorators import is_step
    from ..flows._spec import FlowSpec

    cls = flow if isinstance(flow, type) else type(flow)
    if not (isinstance(cls, type) and issubclass(cls, FlowSpec)):
        raise ParameterError(f"NBRunner takes a flow class (a FlowSpec subclass), not {flow!r}")
    steps = [f for f in vars(cls).values() if callable(f) and is_step(f)]
    filename = steps[0].__code__.co_filename if steps else ""
    lines = linecache.getlines(filename) if filename else []
    if not lines and filename and os.path.isfile(filename):
        lines = Path(filename).read_text().splitlines(keepends=True)
    if not lines:
        lines = _ipython_cell().splitlines(keepends=True)
    text = "".join(lines)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    defs = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    if not defs:
        raise ParameterError(
            f"NBRunner: cannot find the source of flow {cls.__name__} (class {cls.__name__}(FlowSpec) in the "
            "cell or script that defines it); define the flow class in the cell that calls NBRunner"
        )
    body = "".join(text.splitlines(keepends=True)[: defs[-1].end_lineno]).rstrip("\n")
    return f"{body}\n\n\nif __name__ == \"__main__\":\n    {cls.__name__}()\n"


def _ipython_cell() -> str:
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:
        return ""
    ip = get_ipython()
    hist = getattr(getattr(ip, "history_manager", None), "input_hist_raw", None)
    return str(hist[-1]) if hist else ""


class NBRunner:
    """Run a flow class defined in a notebook cell: ``NBRunner(MyFlow).nbrun(alpha=2)`` is the run.

    Parameters are :class:`~reelflow.Runner`'s, with ``base_dir`` (where the temporary
    flow file goes and the run starts; default: the working directory) for ``cwd``.
    """

    def __init__(
        self,
        flow: Any,
        show_output: bool = True,
        profile: str | None = None,
        env: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        file_read_timeout: int = 3600,
        **kwargs: Any,
    ) -> None:
        source = flow_source(flow)
        self.flow = flow
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        name = getattr(flow, "__name__", type(flow).__name__)
        fd, path = tempfile.mkstemp(prefix=name, suffix=".py", dir=self.base_dir)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        self.flow_file = Path(path)
        # a notebook's kernel variables must not leak into the run's process
        env = {**(env or {}), "JPY_PARENT_PID": ""}
        self.runner = Runner(path, show_output=show_output, profile=profile, env=env, cwd=self.base_dir,
                             file_read_timeout=file_read_timeout, **kwargs)

    def nbrun(self, **kwargs: Any) -> Run | None:
        """Run and wait; return the :class:`~reelflow.Run` (and remove the temporary file)."""
        try:
            return self.runner.run(**kwargs).run
        finally:
            self.cleanup()

    def nbresume(self, **kwargs: Any) -> Run | None:
        """Resume and wait; return the :class:`~reelflow.Run` (and remove the temporary file)."""
        try:
            return self.runner.resume(**kwargs).run
        finally:
            self.cleanup()

    def run(self, **kwargs: Any) -> ExecutingRun:
        return self.runner.run(**kwargs)

    def resume(self, **kwargs: Any) -> ExecutingRun:
        return self.runner.resume(**kwargs)

    async def async_run(self, **kwargs: Any) -> ExecutingRun:
        return await self.runner.async_run(**kwargs)

    async def async_resume(self, **kwargs: Any) -> ExecutingRun:
        return await self.runner.async_resume(**kwargs)

    def cleanup(self) -> None:
        """Remove the temporary flow file (call it after ``async_run``; ``nbrun`` does)."""
        self.flow_file.unlink(missing_ok=True)
        self.runner.cleanup()
