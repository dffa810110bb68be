"""The options of ``python flow.py run|resume``, declared once.

The click command line, ``Runner`` and the check of parameter names all derive
from this table, so a flow parameter can never shadow a runtime option (a
parameter named ``tags`` or ``inprocess`` is refused when the flow is checked).
No click import here: the flow checks use it at definition time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError

__all__ = ["RunOption", "RUN_OPTIONS", "reserved_parameter_names", "check_run_id"]

_MAX_RUN_ID = 2**63 - 1


@dataclass(frozen=True)
class RunOption:
    flag: str  # the command-line name, without "--"
    dest: str  # the Python name click passes (and Runner's keyword)
    help: str
    kind: str = "value"  # value (a positive integer) | flag | multiple | choice (an executor name)
    hidden: bool = False
    default: Any = None


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("max-workers", "max_workers", "Worker processes at once [default: CPU count]."),
    RunOption("max-num-splits", "max_num_splits", "Widest foreach allowed.", default=100),
    RunOption("tag", "tags", "Tag the run (repeatable).", kind="multiple"),
    RunOption("with", "with_specs", "Attach a decorator to every step, e.g. --with retry:times=2.", kind="multiple"),
    RunOption("cache", "cache", "Reuse the outputs of earlier tasks whose step code and inputs match (step "
              "caching) for every step not marked @cache(enabled=False); the same as --with cache.", kind="flag"),
    RunOption("quiet", "quiet", "Do not echo task output (the run id and the result line still print).",
              kind="flag"),
    RunOption("inprocess", "inprocess",
              "Run every task in this process, one at a time, so breakpoint()/pdb work in steps.", kind="flag"),
    RunOption("executor", "executor",
              "How tasks run: inprocess, fork, forkserver, spawn or ray [default: $REELFLOW_EXECUTOR, else "
              "forkserver]. `--with ray` is the same as `--executor ray`.", kind="choice"),
    RunOption("run-id-file", "run_id_file", "Write the run id to this file.", hidden=True),
)

_OTHER = ("help",)  # click's own


def reserved_parameter_names() -> frozenset[str]:
    """Names a flow parameter may not take: every option of ``run``/``resume`` in both spellings."""
    names = set(_OTHER)
    for o in RUN_OPTIONS:
        names.update({o.flag, o.dest, o.flag.replace("-", "_")})
    names.add("with_")  # Runner's keyword for --with
    return frozenset(names)


def check_run_id(run_id: Any, what: str) -> str:
    """``run_id`` as a canonical string, or ParameterError naming ``what``."""
    s = str(run_id).strip()
    if not s.isdigit() or not 0 < int(s) <= _MAX_RUN_ID:
        raise ParameterError(f"{what}: {str(run_id)[:40]!r} is not a run id; run ids are positive integers "
                             "such as 12 (see `reelflow runs list`)")
    return str(int(s))
