"""Printing a task's captured output (``reelflow logs`` and ``python flow.py logs``).

Logs are streamed chunk by chunk from the store, so a huge log is never held whole.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from ..errors import ParameterError
from ._logs import iter_log

__all__ = ["print_logs"]


def print_logs(pathspec: str, which: str | None = None) -> int:
    """Print the output of FLOW/RUN_ID/STEP[/TASK_ID] (RUN_ID may be ``latest``), each line prefixed
    with its task; returns the number of lines printed."""
    from ..client import Run, namespace
    from ._options import check_run_id

    bits = pathspec.strip("/").split("/")
    if len(bits) not in (3, 4) or not all(bits):
        raise ParameterError(f"logs: {pathspec!r} is not FLOW/RUN_ID/STEP or FLOW/RUN_ID/STEP/TASK_ID")
    run_id = bits[1] if bits[1] == "latest" else check_run_id(bits[1], "logs")  # FLOW/latest: the newest run
    namespace(None)
    run = Run(f"{bits[0]}/{run_id}")
    run_id = run.id
    step = run[bits[2]]
    tasks = [step[bits[3]]] if len(bits) == 4 else step.tasks()
    printed = 0
    for t in tasks:
        for stream in ("stdout", "stderr"):
            if which not in (None, stream):
                continue
            key = t._row[f"{stream}_key"]
            if key:
                out = sys.stdout if stream == "stdout" else sys.stderr
                printed += _print_stream(out, t.pathspec, iter_log(t._store, key, f"{stream} of {t.pathspec}"))
    if not printed:
        what = f"{which} " if which else ""
        where = tasks[0].pathspec if len(tasks) == 1 else f"{len(tasks)} tasks of {bits[0]}/{run_id}/{bits[2]}"
        print(f"{where}: no {what}output was captured (the step printed nothing)", file=sys.stderr)
    return printed


def _print_stream(out: TextIO, prefix: str, chunks: Iterable[bytes]) -> int:
    n = 0
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            out.write(f"[{prefix}] {line.decode('utf-8', 'replace')}\n")
            n += 1
    if rest:
        out.write(f"[{prefix}] {rest.decode('utf-8', 'replace')}\n")
        n += 1
    out.flush()
    return n
