"""Tasks and their artifacts: ``run["train"].task.data.model``, ``task["model"].sha``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import NotFoundError
from ..store import ArtifactRef, Store

if TYPE_CHECKING:
    from ._core import Run, Step

__all__ = ["DataArtifact", "TaskData", "Task", "Metadata", "ArtifactsView", "ExceptionText"]


def _ts(t: float | None) -> datetime | None:
    from ._core import _ts as ts

    return ts(t)


class Metadata(NamedTuple):
    """One metadata entry of a task (Metaflow's fields); ``created_at`` is in milliseconds."""

    name: str
    value: str
    created_at: int
    type: str
    task: Task


class DataArtifact:
    """One artifact of a task: ``.data`` (loaded on access), ``.size``, ``.type``, ``.sha``.

    Build one from its pathspec, as in Metaflow: ``DataArtifact("Flow/12/train/3/model")``.
    """

    def __init__(self, pathspec: str | None = None, *, _task: Task | None = None, _name: str | None = None,
                 _ref: ArtifactRef | None = None, _store: Store | None = None) -> None:
        if _task is None or _name is None:
            from ._core import _split

            if pathspec is None:
                raise NotFoundError("DataArtifact needs a pathspec: 'FlowName/RUN_ID/step/TASK_ID/name'")
            flow, run_id, step, task_id, name = _split(pathspec, 5, "artifact", "'FlowName/RUN_ID/step/TASK_ID/name'")
            _task = Task(f"{flow}/{run_id}/{step}/{task_id}", _store=_store)
            _name = name
        if _ref is None:
            if _name not in _task._refs:
                raise NotFoundError(f"task {_task.pathspec} has no artifact {_name!r}; it has "
                                    f"{', '.join(sorted(_task._refs)) or 'none'}")
            _ref = _task._refs[_name]
        self._task = _task
        self.id = _name
        self.pathspec = f"{_task.pathspec}/{_name}"
        self.sha = _ref.key
        self.size = _ref.size
        self.type = _ref.type

    @property
    def data(self) -> Any:
        return self._task._load(self.id)

    @property
    def parent(self) -> Task:
        return self._task

    @property
    def finished_at(self) -> datetime | None:
        """When the task that wrote it finished (artifacts are recorded with their task)."""
        return self._task.finished_at

    @property
    def created_at(self) -> datetime | None:
        return self._task.finished_at

    def __repr__(self) -> str:
        return f"DataArtifact('{self.pathspec}', type={self.type}, size={self.size})"


class ArtifactsView(dict):  # type: ignore[type-arg]
    """A task's artifacts by name; also by attribute, as Metaflow's ``task.artifacts.model.data``.

    An artifact's name wins over a dict method of the same name (``task.artifacts.items`` is
    the artifact ``items`` when there is one, as in Metaflow); ``dict.items(view)`` always works.
    """

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return super().__getattribute__(name)

    def __getattr__(self, name: str) -> DataArtifact:
        raise AttributeError(f"no artifact {name!r}; there are {', '.join(sorted(self)) or 'none'}")


class ExceptionText(str):
    """A failed attempt's traceback (a ``str``) with Metaflow's ``MetaflowExceptionWrapper`` fields."""

    @property
    def stacktrace(self) -> str:
        return str(self)

    def _last(self) -> tuple[str, str]:
        lines = [ln for ln in str(self).strip().splitlines() if ln.strip()]
        name, sep, message = (lines[-1] if lines else "").partition(": ")
        return (name.strip(), message) if sep and " " not in name.strip() else ("", lines[-1] if lines else "")

    @property
    def type(self) -> str:  # noqa: A003 - Metaflow's name
        """The exception's class as ``module.Class`` (``builtins.`` for built-in ones)."""
        import builtins

        name = self._last()[0]
        return f"builtins.{name}" if "." not in name and isinstance(getattr(builtins, name, None), type) else name

    @property
    def exception(self) -> str:
        """The exception's message."""
        return self._last()[1]


class TaskData:
    """Attribute access to a task's artifacts: ``task.data.model``."""

    def __init__(self, task: Task) -> None:
        self.__dict__["_task"] = task

    def __getattr__(self, name: str) -> Any:
        task: Task = self.__dict__["_task"]
        if name.startswith("__") or name not in task._refs:
            raise AttributeError(
                f"task {task.pathspec} has no artifact {name!r}; it has {', '.join(sorted(task._refs)) or 'none'}"
            )
        return task._load(name)

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__["_task"]._refs

    def __dir__(self) -> list[str]:
        return sorted(self.__dict__["_task"]._refs)

    def __repr__(self) -> str:
        return f"<data of {self.__dict__['_task'].pathspec}: {', '.join(sorted(self.__dict__['_task']._refs))}>"


class Task:
    """One task (its latest attempt): ``.data.<name>``, ``.artifacts``, ``.stdout``, ``.exception``."""

    def __init__(self, pathspec: str, attempt: int | None = None, *, _run: Run | None = None,
                 _row: dict[str, Any] | None = None, _store: Store | None = None) -> None:
        from ._core import Run, _split

        flow, run_id, step, task_id = _split(pathspec, 4, "task", "'FlowName/RUN_ID/step/TASK_ID'")
        self._run = _run or Run(f"{flow}/{run_id}", _store=_store)
        self.pathspec = f"{flow}/{run_id}/{step}/{task_id}"
        self.id = task_id
        if _row is None:
            if attempt is None:
                rows = [r for r in self._run._latest_attempts(step) if str(r["task_id"]) == task_id]
            else:  # one attempt of the task, as Metaflow's Task(pathspec, attempt=N)
                rows = [r for r in self._run._tasks if r["step_name"] == step and str(r["task_id"]) == task_id
                        and r["attempt"] == attempt]
            if not rows:
                raise NotFoundError(f"task {self.pathspec} does not exist"
                                    + (f" with attempt {attempt}" if attempt is not None else ""))
            _row = rows[-1]
        self._row = _row
        self._cache: dict[str, Any] = {}

    @classmethod
    def _from_row(cls, run: Run, row: dict[str, Any]) -> Task:
        return cls(f"{run.pathspec}/{row['step_name']}/{row['task_id']}", _run=run, _row=row)

    @property
    def _store(self) -> Store:
        return self._run._store

    @cached_property
    def _refs(self) -> dict[str, ArtifactRef]:
        return self._store.metadata.artifacts_of([self._row["id"]])[self._row["id"]]

    def _load(self, name: str) -> Any:
        if name not in self._cache:
            ref = self._refs[name]
            self._cache[name] = self._store.load(ref.key, what=f"artifact {name!r} of {self.pathspec}")
        return self._cache[name]

    @property
    def data(self) -> TaskData:
        return TaskData(self)

    @property
    def artifacts(self) -> ArtifactsView:
        """Artifacts by name (a dict), also by attribute: ``task.artifacts.model.data``."""
        return ArtifactsView({n: DataArtifact(_task=self, _name=n, _ref=r) for n, r in sorted(self._refs.items())})

    def __getitem__(self, name: str) -> DataArtifact:
        if name not in self._refs:
            raise NotFoundError(f"task {self.pathspec} has no artifact {name!r}")
        return DataArtifact(_task=self, _name=name, _ref=self._refs[name])

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __iter__(self) -> Iterator[DataArtifact]:
        return iter(dict.values(self.artifacts))

    # -- place in the run ------------------------------------------------------------
    @property
    def parent(self) -> Step:
        """The step this task belongs to."""
        from ._core import Step

        return Step(self.pathspec.rsplit("/", 1)[0], _run=self._run)

    @property
    def parent_tasks(self) -> list[Task]:
        """The tasks whose output this task started from (several for a join)."""
        wanted = set(self._row["input_paths"])
        return [Task._from_row(self._run, r) for r in self._run._latest_attempts()
                if f"{self._run.pathspec}/{r['step_name']}/{r['task_id']}" in wanted]

    @property
    def child_tasks(self) -> list[Task]:
        """The tasks that started from this task's output."""
        return [Task._from_row(self._run, r) for r in self._run._latest_attempts() if self.pathspec in r["input_paths"]]

    @property
    def tags(self) -> frozenset[str]:
        """The run's tags (user and system): a task carries its run's tags."""
        return self._run.tags

    @property
    def user_tags(self) -> frozenset[str]:
        return self._run.user_tags

    @property
    def system_tags(self) -> frozenset[str]:
        return self._run.system_tags

    # -- status ----------------------------------------------------------------------
    @property
    def successful(self) -> bool:
        return self._row["status"] == "succeeded"

    @property
    def finished(self) -> bool:
        return True  # task rows are written when an attempt ends

    @property
    def finished_at(self) -> datetime | None:
        return _ts(self._row["finished_at"])

    @property
    def created_at(self) -> datetime | None:
        return _ts(self._row["started_at"])

    @property
    def duration(self) -> float:
        return float(self._row["finished_at"] - self._row["started_at"])

    @property
    def current_attempt(self) -> int:
        return int(self._row["attempt"])

    @property
    def index(self) -> int | None:
        """Index in the innermost foreach, or None."""
        return self._row["split_index"]  # type: ignore[no-any-return]

    @property
    def exception(self) -> ExceptionText | None:
        """What a failed attempt raised: its traceback as text, which also has Metaflow's
        ``.type`` (``"builtins.ValueError"``), ``.exception`` (the message) and ``.stacktrace``."""
        text = self._row["exception"]
        return None if text is None else ExceptionText(text)

    @property
    def origin_pathspec(self) -> str | None:
        """The origin task this one was cloned from on resume (or, for a cache hit, by step caching)."""
        return self._row["cloned_from"]  # type: ignore[no-any-return]

    @property
    def cached_from(self) -> str | None:
        """The task whose outputs this one reused through step caching (``@cache`` / ``--cache``), or None."""
        if not self._row["cloned_from"]:
            return None
        from ..runtime._cache import cache_hits

        return cache_hits(self._store, self._run.id).get((self._row["step_name"], int(self._row["task_id"])))

    @property
    def resources(self) -> dict[str, Any] | None:
        return self._row["resources"]  # type: ignore[no-any-return]

    @property
    def metadata_dict(self) -> dict[str, str]:
        """Metaflow's task metadata by name (``attempt``, ``attempt_ok``, ``user``, ``origin-run-id``, ...)."""
        return {m.name: m.value for m in self.metadata}

    @property
    def metadata(self) -> list[Metadata]:
        """What is recorded about the task, as Metaflow's ``Metadata`` entries (all values are text)."""
        import platform

        row = self._row
        at = int((row["finished_at"] or row["started_at"] or 0) * 1000)
        entries = [
            ("attempt", str(row["attempt"]), "attempt"),
            ("attempt-done", str(row["attempt"]), "attempt-done"),
            ("attempt_ok", str(row["status"] == "succeeded"), "internal_attempt_status"),
            ("user", self._run.user, "user"),
            ("origin-run-id", str(self._run.origin_run_id), "origin-run-id"),
            ("runtime", "reelflow", "runtime"),
            ("python_version", platform.python_version(), "python_version"),
        ]
        if row.get("cloned_from"):
            entries.append(("origin-task-id", str(row["cloned_from"]).rsplit("/", 1)[-1], "origin-task-id"))
        return [Metadata(n, v, at, t, self) for n, v, t in entries]

    @property
    def metrics(self) -> Any:
        """This task's metric points as a tidy DataFrame (history per name)."""
        return _metrics_frame(self._store.metadata.metrics_of([], task_row=self._row["id"]))

    # -- logs ------------------------------------------------------------------------
    def _log(self, which: str) -> str:
        key = self._row[f"{which}_key"]
        if not key:
            return ""
        from ..runtime._logs import read_log  # follows the chunk manifest of a long log

        return read_log(self._store, key, what=f"{which} of {self.pathspec}").decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        return self._log("stdout")

    @property
    def stderr(self) -> str:
        return self._log("stderr")

    def loglines(self, stream: str, as_unicode: bool = True) -> Iterator[tuple[datetime | None, str]]:
        """``(timestamp, line)`` for each line of ``stream`` ("stdout" or "stderr"), as Metaflow.

        Lines are not stamped one by one: each carries the time the task finished.
        """
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"loglines({stream!r}): the stream is 'stdout' or 'stderr'")
        when = self.finished_at
        for line in self._log(stream).splitlines():
            yield when, line if as_unicode else line.encode("utf-8")  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Task('{self.pathspec}')"


def _metrics_frame(rows: list[dict[str, Any]]) -> Any:
    from .._extras import require

    require("pandas", "metrics as a DataFrame")
    import pandas as pd

    cols = ["step_name", "task_id", "name", "value", "step", "timestamp"]
    return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)
