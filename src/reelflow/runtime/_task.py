"""Running one task: build the flow instance, run the step, persist what changed.

This is the code that runs inside a worker process (or in-process for debugging).
It reads inputs lazily from the store and writes new artifact blobs there; the
scheduler records the task's metadata from the result it returns.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..errors import ReelflowError, TransitionError
from ..flows._artifacts import ArtifactScope, Inputs, InputView
from ..flows._current import _TaskInfo, current
from ..flows._decorators import CaughtException
from ..flows._spec import FlowSpec, TaskState
from ..store import ArtifactRef, Store
from ..store._serialize import encode

__all__ = ["TaskSpec", "TaskResult", "CaughtException", "execute_task"]


@dataclass
class TaskSpec:
    """Everything a worker needs to run one attempt of one task."""

    flow_name: str
    run_id: str
    step_name: str
    task_id: int
    attempt: int
    task_key: str
    input_paths: list[str]
    base_refs: dict[str, ArtifactRef]
    params: frozenset[str]
    user: str
    tags: frozenset[str]
    origin_run_id: str | None = None
    foreach_frames: list[dict[str, Any]] = field(default_factory=list)
    join_inputs: list[tuple[str, str, dict[str, ArtifactRef]]] | None = None
    fallback_exception: str | None = None  # set for a @catch fallback attempt
    visit: int = 0
    project: dict[str, Any] | None = None  # ProjectInfo.to_json() of a @project flow's branch
    parallel: dict[str, Any] | None = None  # a @parallel gang member: node_index, num_nodes, main_ip, control_task_id
    # The foreach frames of each join input (for ``inputs[i].index``), in input order.
    join_frames: list[list[dict[str, Any]]] | None = None
    # @catch's settings when the step has it, and the @retry count: the last try catches in the task.
    catch: dict[str, Any] | None = None
    retries: int = 0
    configs: dict[str, Any] | None = None  # the run's Config values (decorators that use them are resolved)
    with_decorators: dict[str, Any] = field(default_factory=dict)  # --with: on every step, under the step's own

    @property
    def pathspec(self) -> str:
        return f"{self.flow_name}/{self.run_id}/{self.step_name}/{self.task_id}"


@dataclass
class TaskResult:
    status: str  # succeeded | failed
    artifacts: dict[str, ArtifactRef] = field(default_factory=dict)
    transition: dict[str, Any] | None = None
    exception: str | None = None  # "Type: message"
    traceback: str | None = None
    metrics: list[tuple[str, float, int | None, float]] = field(default_factory=list)
    caught: str | None = None  # the exception @catch handled in the task ("Type: message")


def _persist(flow: FlowSpec, state: TaskState, store: Store, step_name: str) -> dict[str, ArtifactRef]:
    refs = dict(state.scope.refs)
    for name, value in list(flow.__dict__.items()):
        if name.startswith("_"):
            continue
        try:
            blob = encode(value)
        except Exception as exc:
            raise ReelflowError(
                f"step {step_name!r}: artifact {name!r} ({type(value).__name__}) cannot be saved: {exc}. "
                f"Assign only picklable values to self; keep others in local variables or self._{name}"
            ) from None
        old = refs.get(name)
        if old is not None and old.key == blob.key:
            continue  # loaded and unchanged: keep the reference
        store.blobs.put(blob.key, blob.chunks)
        t = type(value)
        tname = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        refs[name] = ArtifactRef(blob.key, blob.raw_size, tname)
    return refs


def _project_info(d: dict[str, Any] | None) -> Any:
    if d is None:
        return None
    from ..flows._project import ProjectInfo

    return ProjectInfo.from_json(d)


def _persist_failed(flow: FlowSpec, state: TaskState, store: Store, step_name: str,
                    exc: BaseException) -> dict[str, ArtifactRef]:
    """What a failed attempt had set, kept for the client as Metaflow keeps it (``Task(p, attempt=0).data``).

    Best effort: nothing when the step was interrupted or a value cannot be saved.
    """
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: stop, do not write
        return {}
    try:
        return _persist(flow, state, store, step_name)
    except Exception:  # noqa: BLE001 - the step's own error is the one to report
        return {}


def _catches(spec: TaskSpec, kind: str) -> bool:
    """Whether a failure of this attempt is @catch's to handle here (its last try, a step whose
    transition needs no value from the failed code)."""
    return spec.catch is not None and spec.attempt >= spec.retries and kind not in ("foreach", "switch")


def _catch_in_task(flow: FlowSpec, state: TaskState, spec: TaskSpec, exc: Exception) -> str:
    """Handle a failure as Metaflow's @catch does: the task keeps what it set before the error,
    stores the exception in ``var`` and goes on to its next step(s)."""
    assert spec.catch is not None
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None))
    if spec.catch.get("print_exception", True):
        sys.stderr.write(tb)
    if spec.catch.get("var"):
        setattr(flow, spec.catch["var"], CaughtException(exc, stacktrace=tb))
    state.transition = {}
    return f"{type(exc).__name__}: {exc}"


def _param_values(flow: Any, names: frozenset[str]) -> dict[str, Any]:
    """The run's parameter values, for a default card (one that cannot be read is left out)."""
    out: dict[str, Any] = {}
    for n in sorted(names):
        try:
            out[n] = getattr(flow, n)
        except Exception:  # noqa: BLE001 - a card never fails the task
            pass
    return out


def execute_task(flow_cls: type[FlowSpec], spec: TaskSpec, store: Store) -> TaskResult:
    """Run the step of ``spec`` in this process and return what the scheduler records."""
    if spec.configs is not None:
        from ..flows._config import apply_configs

        apply_configs(flow_cls, spec.configs)  # nothing to do when this process already has them
    graph = flow_cls.graph()
    node = graph[spec.step_name]
    flow = flow_cls.__new__(flow_cls)
    scope = ArtifactScope(store, spec.base_refs, where=spec.pathspec)
    inputs = None
    if spec.join_inputs is not None:
        frames = spec.join_frames or [[] for _ in spec.join_inputs]
        inputs = Inputs(
            [InputView(step, path, ArtifactScope(store, refs, where=path), frames=[dict(f) for f in fr])
             for (step, path, refs), fr in zip(spec.join_inputs, frames)]
        )
    state = TaskState(
        scope=scope,
        step_name=spec.step_name,
        params=spec.params,
        foreach_frames=[dict(f) for f in spec.foreach_frames],
        inputs=inputs,
    )
    flow.__dict__["_state"] = state
    from ..cards._collector import TaskCards  # light: nothing touches the database until a card is saved

    decos = {**spec.with_decorators, **node.decorators}  # `--with card`, `--with catch` ... and the step's own
    cards = TaskCards(store, flow_name=spec.flow_name, run_id=spec.run_id, step_name=spec.step_name,
                      task_id=spec.task_id, attempt=spec.attempt, decorator=decos.get("card"))
    outcome = "failed"
    ckpt = None
    extra: dict[str, Any] = {"cards": cards, "project": _project_info(spec.project), "parallel": spec.parallel,
                             "parameter_names": sorted(spec.params)}
    ck_deco = decos.get("checkpoint")
    if ck_deco is not None and spec.fallback_exception is None:
        from ._checkpoint import Checkpointer

        ckpt = extra["checkpoint"] = Checkpointer(store, spec, load_policy=ck_deco["load_policy"],
                                                  temp_dir_root=ck_deco["temp_dir_root"])
    current._bind(
        _TaskInfo(
            flow_name=spec.flow_name,
            run_id=spec.run_id,
            step_name=spec.step_name,
            task_id=str(spec.task_id),
            retry_count=spec.attempt,
            origin_run_id=spec.origin_run_id,
            username=spec.user,
            tags=spec.tags,
            extra=extra,
        )
    )
    env = decos.get("environment")
    saved_env: dict[str, str | None] = {}
    if env is not None:
        # Restored afterwards: in-process, later steps and the caller must not see them.
        saved_env = {k: os.environ.get(k) for k in env["vars"]}
        os.environ.update(env["vars"])
    caught: str | None = None
    try:
        if spec.fallback_exception is not None:
            catch = decos["catch"]
            if node.kind in ("foreach", "switch"):
                raise TransitionError(
                    f"step {spec.step_name!r} failed and @catch cannot choose its {node.kind} transition; "
                    f"original error: {spec.fallback_exception}"
                )
            if catch["var"]:
                type_name, _, message = spec.fallback_exception.partition(": ")
                setattr(flow, catch["var"], CaughtException.from_text(type_name, message, spec.fallback_exception))
            state.transition = {}
        else:
            if ckpt is not None:
                ckpt.restore_latest()
            func = getattr(flow, spec.step_name)
            try:
                func(inputs) if node.is_join else func()
            except Exception as exc:
                if not _catches(spec, node.kind):
                    raise
                caught = _catch_in_task(flow, state, spec, exc)
            else:
                if spec.catch is not None and spec.catch.get("var"):
                    setattr(flow, spec.catch["var"], None)  # as Metaflow: None when nothing was caught
            if node.kind != "end" and state.transition is None:
                raise TransitionError(
                    f"step {spec.step_name!r} finished without calling self.next(); end it with "
                    f"self.next({', '.join('self.' + s for s in node.out_funcs)})"
                )
        refs = _persist(flow, state, store, spec.step_name)
        outcome = "succeeded"
        return TaskResult("succeeded", artifacts=refs, transition=state.transition or {},
                          metrics=current._take_metrics(), caught=caught)
    except BaseException as exc:  # noqa: BLE001 - reported to the scheduler, which decides
        # The user's frames only: drop execute_task's own.
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None))
        return TaskResult("failed", artifacts=_persist_failed(flow, state, store, spec.step_name, exc),
                          exception=f"{type(exc).__name__}: {exc}", traceback=tb, metrics=current._take_metrics())
    finally:
        if cards._cards:  # only a task that made a card pays for storing it
            cards.finish({k: v for k, v in flow.__dict__.items() if not k.startswith("_")}, spec.base_refs, outcome,
                         params=_param_values(flow, spec.params))
        current._bind(None)
        if ckpt is not None:
            ckpt.close()
        for k, old in saved_env.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
