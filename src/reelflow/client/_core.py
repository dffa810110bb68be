"""Reading runs back: ``Flow -> Run -> Step -> Task -> data`` with dot access.

Objects are cheap handles over the metadata store; artifact values are read from
the blob store only when asked for, and every read verifies the blob's hash.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from ..config import load_config
from ..errors import InvalidPathspecError, NamespaceMismatchError, NamespaceWarning, NotFoundError
from ..store import ArtifactRef, Store, get_store

__all__ = [
    "Flow",
    "Run",
    "Step",
    "Task",
    "DataArtifact",
    "namespace",
    "get_namespace",
    "default_namespace",
]

_DEFAULT = object()
_namespace: Any = _DEFAULT


def default_namespace() -> str:
    """Reset the namespace to the current user's (``user:<name>``) and return it."""
    global _namespace
    _namespace = f"user:{load_config().user}"
    return _namespace  # type: ignore[no-any-return]


def namespace(ns: str | None) -> str | None:
    """Restrict the client to runs tagged ``ns`` (e.g. ``"user:alice"``); ``None`` sees every run."""
    global _namespace
    _namespace = ns
    return ns


def get_namespace() -> str | None:
    """The current namespace (``None`` for the global one)."""
    if _namespace is _DEFAULT:
        return default_namespace()
    return _namespace  # type: ignore[no-any-return]


def _split(pathspec: str, parts: int, kind: str, example: str) -> list[str]:
    bits = [b for b in str(pathspec).strip("/").split("/")]
    if len(bits) != parts or not all(bits):
        raise InvalidPathspecError(f"{kind} pathspec {pathspec!r} is malformed; write it as {example}")
    if parts >= 2 and bits[1] == "latest":  # FlowName/latest: the newest run in the current namespace
        latest = Flow(bits[0]).latest_run
        if latest is None:
            raise NotFoundError(f"flow {bits[0]} has no run in the namespace {get_namespace()!r}; "
                                "run it first, or call reelflow.namespace(None) to see every user's runs")
        bits[1] = latest.id
    return bits


def _ts(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)


class Flow:
    """All runs of one flow: ``Flow("TrainFlow").latest_successful_run``."""

    def __init__(self, name: str, *, _store: Store | None = None) -> None:
        self._store = _store or get_store(create=False)
        self.id = name
        self.pathspec = name
        self.parent = None  # the top of the hierarchy, as in Metaflow
        if not self._store.metadata.has_flow(name):
            raise NotFoundError(f"flow {name!r} has no runs in the store ({self._store.describe()})")

    def runs(self, *tags: str) -> list[Run]:
        """Runs in the current namespace carrying all ``tags``, newest first.

        When the namespace hides every matching run, a :class:`NamespaceWarning`
        says whose runs exist and how to see them.
        """
        return self._runs(tags, successful=False)

    def _runs(self, tags: tuple[str, ...], *, successful: bool) -> list[Run]:
        ns = get_namespace()
        out, hidden = [], []
        for row in self._store.metadata.list_runs(self.id):
            all_tags = set(row["tags"]) | set(row["system_tags"])
            if not set(tags) <= all_tags:
                continue
            if ns is not None and ns not in all_tags:
                hidden.append(row)
                continue
            out.append(Run._from_row(row, self._store))
        found = [r for r in out if r.successful] if successful else out
        if not found:
            hidden = [r for r in hidden if r["status"] == "succeeded"] if successful else hidden
            if hidden:
                _warn_hidden(self.id, ns, hidden, "successful runs" if successful else "runs")
        return found

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    @property
    def latest_run(self) -> Run | None:
        """The newest run in the current namespace (None, with a warning naming the namespace, if none).

        One indexed query: as fast with 100,000 runs as with one.
        """
        return self._latest(successful=False)

    @property
    def latest_successful_run(self) -> Run | None:
        """The newest successful run in the current namespace (None, with a warning, if none).

        One indexed query: as fast with 100,000 runs as with one.
        """
        return self._latest(successful=True)

    def _latest(self, *, successful: bool) -> Run | None:
        ns = get_namespace()
        statuses = ("succeeded",) if successful else ()
        md = self._store.metadata
        rows = md.recent_runs(self.id, limit=1, statuses=statuses, tags=() if ns is None else (ns,))
        if rows:
            return Run._from_row(rows[0], self._store)
        if ns is not None:  # none in the namespace: say whose runs there are (the slow path is the rare one)
            self._runs((), successful=successful)
        return None

    def __getitem__(self, run_id: str) -> Run:
        return Run(f"{self.id}/{run_id}", _store=self._store)

    def __repr__(self) -> str:
        return f"Flow('{self.id}')"


def _warn_hidden(flow: str, ns: str | None, hidden: list[dict[str, Any]], what: str) -> None:
    owners = sorted({f"user:{r['user']}" for r in hidden})
    warnings.warn(
        f"flow {flow!r} has {len(hidden)} {what} outside the namespace {ns!r} (made by {', '.join(owners)}); "
        f"the client only sees runs of the current namespace: call reelflow.namespace(None) to see every run, "
        f"or reelflow.namespace({owners[0]!r})",
        NamespaceWarning,
        stacklevel=4,
    )


class Run:
    """One run: ``Run("TrainFlow/12")``. ``run["train"]`` is a :class:`Step`."""

    def __init__(self, pathspec: str, *, _store: Store | None = None, _row: dict[str, Any] | None = None) -> None:
        self._store = _store or get_store(create=False)
        flow, run_id = _split(pathspec, 2, "run", "'FlowName/RUN_ID'")
        self._row = _row or self._store.metadata.get_run(flow, run_id)
        if _row is None:
            ns = get_namespace()
            if ns is not None and ns not in set(self._row["tags"]) | set(self._row["system_tags"]):
                raise NamespaceMismatchError(
                    f"run {pathspec} is not in the namespace {ns!r}; call reelflow.namespace(None) to see all runs"
                )
        self.flow_name = flow
        self.id = run_id
        self.pathspec = f"{flow}/{run_id}"

    @classmethod
    def _from_row(cls, row: dict[str, Any], store: Store) -> Run:
        return cls(f"{row['flow_name']}/{row['run_id']}", _store=store, _row=row)

    @cached_property
    def _tasks(self) -> list[dict[str, Any]]:
        return self._store.metadata.tasks_of_run(self.id)

    def _latest_attempts(self, step: str | None = None) -> list[dict[str, Any]]:
        latest: dict[int, dict[str, Any]] = {}
        for r in self._tasks:
            if step is None or r["step_name"] == step:
                latest[r["task_id"]] = r  # rows are oldest first: the last attempt wins
        return [latest[k] for k in sorted(latest)]

    # -- status ----------------------------------------------------------------------
    @property
    def status(self) -> str:
        """``running``, ``succeeded``, ``failed`` or ``abandoned`` (recorded as running, but its
        process is gone: see :attr:`abandoned_reason`)."""
        return str(self._row["status"])

    @property
    def abandoned_reason(self) -> str | None:
        """Why a run recorded as running is dead (None unless :attr:`status` is ``abandoned``)."""
        return self._row.get("abandoned_reason")

    @property
    def status_reason(self) -> str | None:
        """Why the run ended as it did, when known (an interruption, or why it was abandoned)."""
        return self._row.get("status_reason")

    @property
    def successful(self) -> bool:
        return self._row["status"] == "succeeded"

    @property
    def finished(self) -> bool:
        """True once the run cannot change any more: it succeeded, failed or was abandoned."""
        return self._row["status"] in ("succeeded", "failed", "abandoned")

    @property
    def created_at(self) -> datetime:
        return _ts(self._row["created_at"])  # type: ignore[return-value]

    @property
    def finished_at(self) -> datetime | None:
        return _ts(self._row["finished_at"])

    @property
    def origin_run_id(self) -> str | None:
        return self._row["origin_run_id"]  # type: ignore[no-any-return]

    @property
    def origin_pathspec(self) -> str | None:
        """``FlowName/ORIGIN_RUN_ID`` of the run this one resumed (None for a fresh run)."""
        origin = self._row["origin_run_id"]
        return f"{self.flow_name}/{origin}" if origin else None

    @property
    def parent(self) -> Flow:
        """The flow of this run."""
        return Flow(self.flow_name, _store=self._store)

    @property
    def trigger(self) -> Any:
        """How the run was started: a :class:`reelflow.flows.Trigger` (schedule slot, event, upstream
        run) when the scheduler started it, None when it was started by hand."""
        from ..operate._trigger_lookup import run_trigger

        return run_trigger(self.id, self._store)

    @property
    def user(self) -> str:
        return str(self._row["user"])

    @property
    def parameters(self) -> dict[str, str]:
        """The run's parameter values as recorded (their ``repr``)."""
        return {k: v["repr"] for k, v in self._row["params"].items()}

    @property
    def graph(self) -> dict[str, Any]:
        return dict(self._row["graph"])

    # -- metrics -------------------------------------------------------------------
    @property
    def metrics(self) -> Any:
        """Every metric point of the run as a tidy DataFrame
        (``step_name, task_id, name, value, step, timestamp``), in logging order."""
        return _metrics_frame(self._store.metadata.metrics_of([self.id]))

    @property
    def final_metrics(self) -> dict[str, float]:
        """The last logged value of each metric name."""
        out: dict[str, float] = {}
        for r in self._store.metadata.metrics_of([self.id]):
            out[r["name"]] = r["value"]
        return out

    # -- tags ------------------------------------------------------------------------
    @property
    def user_tags(self) -> frozenset[str]:
        return frozenset(self._row["tags"])

    @property
    def system_tags(self) -> frozenset[str]:
        return frozenset(self._row["system_tags"])

    @property
    def tags(self) -> frozenset[str]:
        return self.user_tags | self.system_tags

    def add_tag(self, tag: str) -> None:
        self.add_tags([tag])

    def add_tags(self, tags: list[str]) -> None:
        new = sorted(self.user_tags | set(tags))
        self._store.metadata.set_tags(self.id, new)
        self._row["tags"] = new

    def remove_tag(self, tag: str) -> None:
        new = sorted(self.user_tags - {tag})
        self._store.metadata.set_tags(self.id, new)
        self._row["tags"] = new

    # -- steps -----------------------------------------------------------------------
    def steps(self) -> list[Step]:
        """Steps that ran, in the order they first started."""
        names = list(dict.fromkeys(r["step_name"] for r in self._tasks))
        return [Step(f"{self.pathspec}/{n}", _run=self) for n in names]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps())

    def __getitem__(self, step: str) -> Step:
        if not any(r["step_name"] == step for r in self._tasks):
            raise NotFoundError(f"run {self.pathspec} has no step {step!r} (it did not run)")
        return Step(f"{self.pathspec}/{step}", _run=self)

    def __contains__(self, step: object) -> bool:
        return any(r["step_name"] == step for r in self._tasks)

    @property
    def end_task(self) -> Task | None:
        ends = self._latest_attempts("end")
        return Task._from_row(self, ends[-1]) if ends else None

    @property
    def data(self) -> TaskData | None:
        """Artifacts of the ``end`` task (None until the end step has run)."""
        t = self.end_task
        return t.data if t is not None else None

    def __repr__(self) -> str:
        return f"Run('{self.pathspec}')"


class Step:
    """One step of a run: ``run["train"].task`` or ``.tasks()`` for a foreach."""

    def __init__(self, pathspec: str, *, _run: Run | None = None, _store: Store | None = None) -> None:
        flow, run_id, step = _split(pathspec, 3, "step", "'FlowName/RUN_ID/step'")
        self._run = _run or Run(f"{flow}/{run_id}", _store=_store)
        self.id = step
        self.pathspec = f"{flow}/{run_id}/{step}"
        if step not in self._run:
            raise NotFoundError(f"run {self._run.pathspec} has no step {step!r} (it did not run)")

    def tasks(self) -> list[Task]:
        return [Task._from_row(self._run, r) for r in self._run._latest_attempts(self.id)]

    @property
    def parent(self) -> Run:
        """The run of this step."""
        return self._run

    def _graph_children(self, name: str) -> list[str]:
        node = self._run.graph.get(name, {})
        return list(dict.fromkeys([*node.get("next", []), *node.get("cases", {}).values()]))

    @property
    def child_steps(self) -> list[Step]:
        """The steps that come right after this one in the graph (those that ran)."""
        return [Step(f"{self._run.pathspec}/{n}", _run=self._run) for n in self._graph_children(self.id)
                if n in self._run]

    @property
    def parent_steps(self) -> list[Step]:
        """The steps that come right before this one in the graph (those that ran)."""
        return [Step(f"{self._run.pathspec}/{n}", _run=self._run) for n in self._run.graph
                if self.id in self._graph_children(n) and n in self._run]

    @property
    def created_at(self) -> datetime | None:
        """When the step's first task started."""
        ts = [t._row["started_at"] for t in self.tasks()]
        return _ts(min(ts)) if ts else None

    @property
    def origin_pathspec(self) -> str | None:
        """``FlowName/ORIGIN_RUN_ID/step`` when this step's tasks were cloned on resume, else None."""
        for t in self.tasks():
            if t.origin_pathspec:
                return t.origin_pathspec.rsplit("/", 1)[0]
        return None

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks())

    @property
    def task(self) -> Task:
        """The step's (first) task."""
        return self.tasks()[0]

    @property
    def finished_at(self) -> datetime | None:
        ts = [t._row["finished_at"] for t in self.tasks()]
        return _ts(max(ts)) if ts else None

    def __getitem__(self, task_id: str) -> Task:
        return Task(f"{self.pathspec}/{task_id}", _run=self._run)

    def __repr__(self) -> str:
        return f"Step('{self.pathspec}')"


from ._task import DataArtifact, Task, TaskData, _metrics_frame  # noqa: E402  (they use the names above)
