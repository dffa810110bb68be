"""Finding runs by tag, parameter and metric, and comparing them side by side."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ParameterError
from ..store import get_store
from ._core import Run, get_namespace

__all__ = ["find_runs", "compare_runs", "parse_condition"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq, ">": operator.gt, "<": operator.lt,
    "=": operator.eq,
}
_COND = re.compile(r"^\s*(metrics|params)\.(.+?)\s*(>=|<=|!=|==|>|<|=)\s*(.+?)\s*$")


def parse_condition(text: str) -> tuple[str, str, str, Any]:
    """``"metrics.ndcg@10 > 0.3"`` -> ("metrics", "ndcg@10", ">", 0.3)."""
    m = _COND.match(text)
    if not m:
        raise ParameterError(
            f"cannot read the condition {text!r}; write KIND.NAME OP VALUE with KIND metrics or params "
            "and OP one of > >= < <= == !=, e.g. 'metrics.ndcg@10 > 0.3'"
        )
    kind, name, op, raw = m.groups()
    raw = raw.strip("'\"")
    try:
        value: Any = float(raw)
    except ValueError:
        value = raw
    return kind, name, op, value


def _matches(run_row: dict[str, Any], final: dict[str, float], cond: tuple[str, str, str, Any]) -> bool:
    kind, name, op, value = cond
    if kind == "metrics":
        have: Any = final.get(name)
    else:
        p = run_row["params"].get(name)
        have = None if p is None else p["repr"].strip("'\"")
        if have is not None and isinstance(value, float):
            try:
                have = float(have)
            except ValueError:
                return False
    if have is None:
        return False
    try:
        return bool(_OPS[op](have, value))
    except TypeError:
        return False


def find_runs(flow: str | None = None, *, tags: Sequence[str] = (), where: Sequence[str] = (),
              limit: int | None = None) -> list[Run]:
    """Runs (newest first, in the current namespace) with all ``tags`` that satisfy every
    ``where`` condition, e.g. ``find_runs("RecsDemoFlow", where=["metrics.ndcg@10 > 0.3"])``.

    ``limit`` keeps the newest that many; without ``where`` conditions that is one
    indexed query whose cost does not grow with the number of runs in the store.
    """
    store = get_store(create=False)
    conds = [parse_condition(w) for w in where]
    ns = get_namespace()
    if limit is not None and not conds:
        want = [*tags, *([ns] if ns is not None else [])]
        return [Run._from_row(r, store) for r in store.metadata.recent_runs(flow, limit=limit, tags=want)]
    rows = store.metadata.list_runs(flow)
    rows = [r for r in rows if (ns is None or ns in set(r["tags"]) | set(r["system_tags"]))
            and set(tags) <= set(r["tags"]) | set(r["system_tags"])]
    finals: dict[str, dict[str, float]] = {r["run_id"]: {} for r in rows}
    if conds and any(c[0] == "metrics" for c in conds) and rows:
        for m in store.metadata.metrics_of([r["run_id"] for r in rows]):
            finals[str(m["run_id"])][m["name"]] = m["value"]
    found = [Run._from_row(r, store) for r in rows if all(_matches(r, finals[r["run_id"]], c) for c in conds)]
    return found if limit is None else found[:limit]


def compare_runs(pathspecs: Sequence[str]) -> Any:
    """Parameters and final metrics of several runs side by side (a DataFrame, one column per run)."""
    from .._extras import require

    require("pandas", "comparing runs")
    import pandas as pd

    cols = {}
    for p in pathspecs:
        run = Run(p)
        col: dict[str, Any] = {"status": run.status}
        col.update({f"params.{k}": v for k, v in run.parameters.items()})
        col.update({f"metrics.{k}": v for k, v in run.final_metrics.items()})
        cols[run.pathspec] = col
    return pd.DataFrame(cols)
