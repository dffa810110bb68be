"""Step caching across runs: a step whose code and inputs match a successful earlier task is not run again.

Opt-in, per step (``@cache``) or per run (``python flow.py run --cache``, ``Runner(...).run(cache=True)``,
the same as ``--with cache``); a step with side effects is marked ``@cache(enabled=False)`` and
always runs, also under ``--cache``.

A task's *cache key* is a SHA-256 over

- the flow's name and the step's name;
- the step's code: the normalised source (its AST, so comments, blank lines and docstrings do
  not count) of the step method and of every function, class and method of the flow file it
  refers to, followed transitively (other steps are not followed: their effect arrives as
  artifacts), with the values of plain constants of the flow file it names (``SCALE = 2``)
  and the variables ``@environment`` sets; code imported from other modules is not part
  of the key;
- its inputs: the content keys of every artifact it receives (parameters included), of each
  input of a join, and its place in the enclosing foreach loops (index, width, the list's key).

When a ``succeeded`` task of the same flow has the key, the new task is recorded as a clone of
it by reference: the same artifact blobs (no copy), logs, metrics and transition, with
``Task.origin_pathspec`` naming the source and ``Task.cached_from`` saying it was a cache hit
(``reelflow runs show``: "cached from ..."). Everything downstream whose inputs are then the
same is a hit too; a changed step re-runs, and so does every step whose inputs it changed.

The keys live in a ``step_cache`` table of the metadata database (created on first use like
``cards``, so no migration). A key row is written when the task ends; a lookup only accepts a
row whose task row says ``succeeded``, so two runs at once at worst both run a step, and a
run that was deleted is simply no longer a source.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..flows._spec import FlowSpec
    from ..store import Store
    from ._task import TaskSpec

__all__ = ["code_fingerprint", "cache_key", "lookup", "record", "cache_hits"]

_table: Any = None
_created: set[str] = set()
_lock = threading.Lock()
_NO_CODE = object()


def _cache_table() -> Any:
    global _table
    if _table is None:
        from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

        _table = Table(
            "step_cache",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("flow_name", String(255), nullable=False),
            Column("cache_key", String(64), nullable=False),
            Column("kind", String(8), nullable=False),  # "saved": this task computed it; "hit": cloned from source
            Column("run_id", Integer, nullable=False),
            Column("step_name", String(255), nullable=False),
            Column("task_id", Integer, nullable=False),
            Column("source", String(512)),  # pathspec of the task a hit was cloned from
            Column("created_at", Float, nullable=False),
        )
        Index("ix_step_cache_key", _table.c.flow_name, _table.c.cache_key)
        Index("ix_step_cache_run", _table.c.run_id)
    return _table


def _ensure(store: Store) -> Any:
    t = _cache_table()
    url = store.metadata.url
    if url not in _created:
        with _lock:
            if url not in _created:
                with store.metadata.write(lock="step-cache-schema", flush_blobs=False) as conn:
                    t.create(conn, checkfirst=True)
                _created.add(url)
    return t


# -- the code of a step ---------------------------------------------------------------------
def _normalised(obj: Any) -> tuple[str, ast.AST] | None:
    try:
        src = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):  # docstrings are documentation, not behaviour
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()
    return ast.dump(tree, annotate_fields=False, include_attributes=False), tree


def code_fingerprint(flow_cls: type[FlowSpec], step_name: str) -> str | None:
    """SHA-256 of the normalised source of the step and what it refers to in the flow file;
    None when the source cannot be read (e.g. a flow typed into an interpreter)."""
    from ..flows._decorators import is_step
    from ..flows._spec import FlowSpec

    module = sys.modules.get(flow_cls.__module__)
    mod_name = getattr(module, "__name__", None)
    mod_funcs = {n: v for n, v in vars(module).items()
                 if (inspect.isfunction(v) or inspect.isclass(v)) and getattr(v, "__module__", None) == mod_name} \
        if module is not None else {}
    members: dict[str, Any] = {}
    for klass in reversed(flow_cls.__mro__):
        if klass in (object,) or issubclass(FlowSpec, klass):
            continue
        for n, v in vars(klass).items():
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            elif isinstance(v, property):
                v = v.fget
            if inspect.isfunction(v):
                members[n] = v
    parts: list[str] = []
    seen: set[tuple[str, str]] = set()
    todo = [("self", step_name)]
    while todo:
        kind, name = todo.pop()
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        obj = members.get(name) if kind == "self" else mod_funcs.get(name)
        if obj is None or (kind == "self" and name != step_name and is_step(obj)):
            continue
        norm = _normalised(obj)
        if norm is None:
            return None
        text, tree = norm
        parts.append(f"{kind}.{name}:{text}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                todo.append(("self", node.attr))
            elif isinstance(node, ast.Name) and node.id in mod_funcs:
                todo.append(("mod", node.id))
            elif isinstance(node, ast.Name) and module is not None and node.id in vars(module):
                const = _constant(vars(module)[node.id])  # SCALE = 2 at the top of the flow file
                if const is not None:
                    parts.append(f"const.{node.id}:{const}")
    return hashlib.sha256("\n".join(sorted(set(parts))).encode()).hexdigest()


_PLAIN = (int, float, complex, str, bytes, bool, type(None))


def _constant(value: Any, depth: int = 0) -> str | None:
    """``repr`` of a plain constant (numbers, strings, and tuples, lists, sets, dicts of them), else None."""
    if isinstance(value, _PLAIN):
        r = repr(value)
    elif isinstance(value, (tuple, list, set, frozenset, dict)) and depth < 4 and len(value) <= 10_000:
        items = value.items() if isinstance(value, dict) else ((v, None) for v in value)
        for k, v in items:
            if _constant(k, depth + 1) is None or (v is not None and _constant(v, depth + 1) is None):
                return None
        r = repr(sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value)
    else:
        return None
    return r if len(r) <= 100_000 else hashlib.sha256(r.encode()).hexdigest()


def cache_key(flow_name: str, spec: TaskSpec, code: str, env: dict[str, str] | None = None) -> str:
    """The key of one task: its step's code and everything it reads (see the module docstring);
    ``env``: the variables ``@environment`` sets for it."""
    doc = {
        "flow": flow_name,
        "step": spec.step_name,
        "code": code,
        "inputs": sorted((n, r.key) for n, r in spec.base_refs.items()),
        "join": [[step, sorted((n, r.key) for n, r in refs.items())] for step, _path, refs in spec.join_inputs or []],
        "foreach": [[f["index"], f["num_splits"], f.get("key")] for f in spec.foreach_frames],
        "visit": spec.visit,
        "environment": env,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# -- lookups and records ---------------------------------------------------------------------
def lookup(store: Store, flow_name: str, key: str) -> dict[str, Any] | None:
    """The newest successful task with ``key``, in the form the scheduler clones
    (``refs``, ``metrics``, ``cloned_from``, ...), or None."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from ..cards._storage import _missing_table

    t = _cache_table()
    md = store.metadata
    try:
        with md.engine.connect() as conn:
            rows = list(conn.execute(
                select(t.c.run_id, t.c.step_name, t.c.task_id).where(
                    t.c.flow_name == flow_name, t.c.cache_key == key, t.c.kind == "saved").order_by(t.c.id.desc())
                .limit(20)))
    except DBAPIError as exc:
        if _missing_table(exc):
            return None
        raise
    for run_id, step_name, task_id in rows:
        done = [r for r in md.tasks_of_run(str(run_id), step_name)
                if r["task_id"] == task_id and r["status"] == "succeeded"]
        if not done:
            continue  # not recorded yet (still running), or its attempt failed after all
        row = done[-1]
        metrics = [(m["name"], m["value"], m["step"], m["timestamp"]) for m in md.metrics_of([], task_row=row["id"])]
        return {**row, "refs": md.artifacts_of([row["id"]])[row["id"]], "metrics": metrics,
                "cloned_from": f"{flow_name}/{run_id}/{step_name}/{task_id}"}
    return None


def record(store: Store, flow_name: str, items: list[tuple[str, str, str, str, int, str | None]]) -> None:
    """Write key rows: ``(key, kind, run_id, step_name, task_id, source)`` tuples ("saved" or "hit")."""
    from sqlalchemy import insert

    if not items:
        return
    t = _ensure(store)
    now = time.time()
    with store.metadata.write(flush_blobs=False) as conn:
        conn.execute(insert(t), [
            {"flow_name": flow_name, "cache_key": key, "kind": kind, "run_id": int(run_id), "step_name": step,
             "task_id": int(task_id), "source": source, "created_at": now}
            for key, kind, run_id, step, task_id, source in items
        ])


def cache_hits(store: Store, run_id: str) -> dict[tuple[str, int], str]:
    """``{(step, task_id): source pathspec}`` of the tasks of a run that were cache hits."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from ..cards._storage import _missing_table

    t = _cache_table()
    try:
        with store.metadata.engine.connect() as conn:
            return {(s, int(i)): src for s, i, src in conn.execute(
                select(t.c.step_name, t.c.task_id, t.c.source).where(t.c.run_id == int(run_id), t.c.kind == "hit"))}
    except DBAPIError as exc:
        if _missing_table(exc):
            return {}
        raise


class StepCache:
    """The scheduler's side: one per runtime; keys computed when a task is scheduled."""

    def __init__(self, flow_cls: type[FlowSpec], store: Store, say: Any) -> None:
        self.flow_cls = flow_cls
        self.store = store
        self.say = say
        self._codes: dict[str, str | None] = {}
        self._keys: dict[tuple[str, int], str] = {}

    def lookup(self, spec: TaskSpec, decorators: dict[str, Any]) -> dict[str, Any] | None:
        """The task to clone for ``spec``, or None (run it); remembers the key for :meth:`succeeded`."""
        deco = decorators.get("cache")
        if deco is None or not deco["enabled"] or spec.fallback_exception is not None or "parallel" in decorators:
            return None
        if spec.step_name not in self._codes:
            code = self._codes[spec.step_name] = code_fingerprint(self.flow_cls, spec.step_name)
            if code is None:
                self.say(f"step {spec.step_name!r}: its source cannot be read, so it is not cached "
                         "(step caching needs the flow in a file)")
        code = self._codes[spec.step_name]
        if code is None:
            return None
        env = decorators["environment"]["vars"] if "environment" in decorators else None
        key = cache_key(self.flow_cls.__name__, spec, code, env)
        self._keys[(spec.run_id, spec.task_id)] = key
        row = lookup(self.store, self.flow_cls.__name__, key)
        if row is not None:
            row = {**row, "cache_source": row.pop("cloned_from")}
        return row

    def succeeded(self, spec: TaskSpec, *, caught: bool = False) -> None:
        """Record the key of a task that computed its step (``caught``: @catch swallowed its failure)."""
        key = self._keys.pop((spec.run_id, spec.task_id), None)
        if key is not None and not caught and spec.fallback_exception is None:
            record(self.store, self.flow_cls.__name__, [(key, "saved", spec.run_id, spec.step_name, spec.task_id, None)])

    def hit(self, spec: TaskSpec, source: str) -> None:
        key = self._keys.pop((spec.run_id, spec.task_id), "")
        record(self.store, self.flow_cls.__name__, [(key, "hit", spec.run_id, spec.step_name, spec.task_id, source)])
        self.say(f"[{spec.run_id}/{spec.step_name}/{spec.task_id}] cached from {source}")
