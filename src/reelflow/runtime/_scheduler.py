"""The runtime: a scheduler in this process that hands task attempts to an executor.

The scheduler owns the run's metadata (it is the only writer for its run), decides
which tasks are ready (linear, static split, foreach, conditional, join), submits
each task attempt to the run's executor (in-process, fork, fork server, spawn or
Ray: see ``_executors.py``), echoes the tasks' output with a pathspec prefix,
retries, applies ``@catch``, and on resume clones the origin run's successful
tasks by reference instead of running them again. What belongs to one run lives
in a :class:`~reelflow.runtime._state.RunState` (``self.state``); which tasks a
finished task makes ready is ``_walk.py``.

A run is never left half-recorded (see ``_lifecycle.py``): SIGINT and SIGTERM stop
the workers (and what their steps started), record the run as failed and exit
130 / 143; a heartbeat shows the run alive while it runs; a batch of task rows the
database refuses is written row by row, so the good tasks are kept.

Each task carries a stack of *frames*, one per enclosing split or foreach::

    {"kind": "foreach", "step": "start", "task_id": 1, "index": 3, "num_splits": 10,
     "param": "items", "key": <blob key of self.items>}

A join waits for ``num_splits`` inputs with the same innermost frame (same
splitting task) and pops that frame.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ParameterError, ReelflowError, RunFailedError, RunInterruptedError
from ..flows._decorators import StepDecorator, retry_delay
from ..flows._config import ConfigValue, apply_configs, config_values
from ..flows._parameters import ParameterContext
from ..flows._project import ProjectInfo, resolve_project
from ..flows._spec import FlowSpec
from ..store import ArtifactRef, Store, TaskRecord, get_store
from . import _tmp
from ._executors import Attempt, Executor, ExecutorContext, make_executor, resolve_executor_name
from ._gang import take_gang
from ._lifecycle import INTERRUPTED, Beater, RunLifecycle
from ._options import check_run_id
from ._cache import StepCache
from ._state import Origin, Pending, RunState
from ._task import TaskResult, TaskSpec
from ._walk import GraphWalk

__all__ = ["LocalRuntime"]

_LOG_TAIL_LINES = 20


class LocalRuntime(RunLifecycle, GraphWalk):
    """Run a flow class on this machine.

    Parameters
    ----------
    flow_cls : the FlowSpec subclass.
    store : where runs go (default: the environment's store).
    max_workers : worker processes at once (default: CPU count).
    max_num_splits : the widest foreach allowed.
    tags : user tags of the run.
    with_decorators : decorators attached to every step (``--with retry``).
    quiet : do not echo task output.
    inprocess : run every task in this process (breakpoints and pdb work); the same as
        ``executor="inprocess"``.
    use_fork : False: start workers as fresh interpreters (``executor="spawn"``).
    on_run_created : called with the run id as soon as the run is recorded.
    zygote : a fork server (``_zygote.Zygote``) started before heavy imports; workers are
        forked from it, which is cheaper than forking this process (``executor="forkserver"``).
    executor : how tasks run: ``inprocess``, ``fork``, ``forkserver``, ``spawn`` or ``ray``
        (see ``_executors.py``); default ``$REELFLOW_EXECUTOR``, else what the flags above imply.
    executor_options : keyword arguments of the executor (Ray: ``address``, ``num_cpus``).
    project : the ``@project`` branch of the run (default: the user's branch, or the one the
        scheduler of a deployment sets); ignored for a flow without ``@project``.
    configs : the run's ``Config`` values by attribute (default: from the configs' defaults);
        ``resume`` always reuses the origin run's.
    """

    def __init__(
        self,
        flow_cls: type[FlowSpec],
        *,
        store: Store | None = None,
        max_workers: int | None = None,
        max_num_splits: int = 100,
        tags: Sequence[str] = (),
        with_decorators: Sequence[StepDecorator] = (),
        quiet: bool = False,
        inprocess: bool = False,
        use_fork: bool = True,
        on_run_created: Callable[[str], None] | None = None,
        zygote: Any = None,
        executor: str | None = None,
        executor_options: Mapping[str, Any] | None = None,
        project: ProjectInfo | None = None,
        configs: Mapping[str, Any] | None = None,
    ) -> None:
        self.flow_cls = flow_cls
        self.graph = flow_cls.graph()
        self.store = store or get_store()
        self.executor_name = resolve_executor_name(executor, inprocess=inprocess, use_fork=use_fork, zygote=zygote)
        self.executor_options = dict(executor_options or {})
        self.max_workers = max_workers  # None: the executor's default
        if max_num_splits < 1:
            raise ParameterError("--max-num-splits must be at least 1")
        self.max_num_splits = max_num_splits
        self.tags = frozenset(tags)
        self.with_decorators = {d.name: d for d in with_decorators}
        self.quiet = quiet
        self.inprocess = self.executor_name == "inprocess"
        self.on_run_created = on_run_created
        self.zygote = zygote
        self.flow_name = flow_cls.__name__
        self.user = self.store.config.user
        self.tmp_base = self.store.config.home / "tmp"
        self.state = RunState()  # replaced by a fresh one for each run
        self.step_cache = StepCache(flow_cls, self.store, self._say)
        self.project = project or resolve_project(flow_cls, user=self.user)
        self.configs = None if configs is None else dict(configs)
        self.config_values: dict[str, Any] = {}  # those of the run being executed

    # -- entry points ------------------------------------------------------------
    def run(self, raw_params: Mapping[str, Any] | None = None) -> str:
        """Start a new run; return its id or raise RunFailedError."""
        self._apply_configs(dict(self.configs) if self.configs is not None
                            else config_values(self.flow_cls, user=self.user))
        params = self._resolve_params(raw_params or {})
        params.update(self.config_values)  # stored like parameters: read-only artifacts of every step
        self.store.preflight()  # an unusable store is one clear error before any run is recorded
        param_refs = {name: self.store.save(value) for name, value in params.items()}
        self.state = RunState()
        with self._signals():
            reprs = {name: _short_repr(v) for name, v in params.items()}
            self._open_executor()  # an executor that cannot run the flow refuses before a run is recorded
            try:
                run_id = self._create_run(param_refs, reprs, origin_run_id=None)
            except BaseException:
                self._close_executor()
                raise
            return self._execute(run_id, param_refs, origin=None)

    def resume(self, origin_run_id: str | None = None, step: str | None = None) -> str:
        """Re-run from the failed step (or ``step``), reusing the origin run's successful tasks."""
        md = self.store.metadata
        if origin_run_id is None:
            runs = md.recent_runs(self.flow_name, limit=1)  # the newest: one index seek
            if not runs:
                raise RunFailedError(f"flow {self.flow_name} has no run to resume; run it first")
            origin_run_id = runs[0]["run_id"]
        origin_run_id = check_run_id(origin_run_id, "resume --origin-run-id")
        origin_run = md.get_run(self.flow_name, origin_run_id)
        # The store reads a dead "running" run (killed, out of memory) as "abandoned":
        # that one is resumable; a live one is not.
        if origin_run["status"] == "running" and origin_run.get("pid") != os.getpid():
            raise ParameterError(
                f"run {self.flow_name}/{origin_run_id} is still running (pid {origin_run.get('pid')} on "
                f"{origin_run.get('host')}); wait for it to end, or stop it, before resuming it"
            )
        rows = md.tasks_of_run(origin_run_id)
        ok_rows = [r["id"] for r in rows if r["status"] == "succeeded"]
        refs_by_row = md.artifacts_of(ok_rows)
        metrics_by_row: dict[int, list[tuple[str, float, int | None, float]]] = {}
        for m in md.metrics_of([origin_run_id]) if ok_rows else []:
            metrics_by_row.setdefault(m["task_row"], []).append((m["name"], m["value"], m["step"], m["timestamp"]))
        tasks: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["status"] == "succeeded":
                tasks[r["task_key"]] = {**r, "refs": refs_by_row[r["id"]], "metrics": metrics_by_row.get(r["id"], [])}
        if step is not None and step not in self.graph:
            raise ParameterError(
                f"resume: flow {self.flow_name} has no step {step!r}; steps are {', '.join(self.graph.nodes)}"
            )
        if step is None:
            # Tasks stopped by an interruption were not broken: like the missing tasks of
            # a killed run, they run again while every successful task is reused.
            failed = [r for r in rows if r["status"] == "failed" and r["task_key"] not in tasks
                      and not (r["exception"] or "").startswith(INTERRUPTED)]
            if failed:
                step = failed[0]["step_name"]
            # else, as Metaflow does: every successful task is cloned and only what never ran
            # runs (a successful run is cloned whole: a new run, nothing executed again)
        rerun = self._reachable(step) if step else set()
        param_refs = {
            name: ArtifactRef(p["key"], p["size"], p["type"]) for name, p in origin_run["params"].items()
        }
        declared = self.flow_cls._flow_configs()
        if declared:  # the origin run's configs, so decorators and steps see what the origin saw
            values = config_values(self.flow_cls, user=self.user) if set(declared) - set(param_refs) else {}
            values.update({a: self.store.load(param_refs[a].key, what=f"config {a!r} of the origin run")
                           for a in declared if a in param_refs})
            self._apply_configs(values)
        else:
            self._apply_configs({})  # the flow's mutators, if it has any
        self.state = RunState()
        with self._signals():
            self._open_executor()
            try:
                run_id = self._create_run(
                    param_refs, {k: v["repr"] for k, v in origin_run["params"].items()}, origin_run_id=origin_run_id
                )
            except BaseException:
                self._close_executor()
                raise
            return self._execute(run_id, param_refs, origin=Origin(origin_run_id, tasks, rerun))

    # -- setup ---------------------------------------------------------------------
    def _apply_configs(self, values: dict[str, Any]) -> None:
        apply_configs(self.flow_cls, values)
        self.config_values = values

    def _resolve_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        declared = self.flow_cls.parameters()
        by_name = {p.name: (attr, p) for attr, p in declared.items()}
        unknown = [k for k in raw if k not in by_name and k not in declared]
        if unknown:
            raise ParameterError(
                f"flow {self.flow_name} has no parameter {unknown[0]!r}; its parameters are "
                f"{', '.join(sorted(by_name)) or 'none'}"
            )
        out: dict[str, Any] = {}
        configs = ConfigValue(self.config_values)  # ctx.configs.<name> in a callable default, as Metaflow
        for attr, p in declared.items():
            value = raw.get(p.name, raw.get(attr))
            ctx = ParameterContext(self.flow_name, self.user, p.name, configs=configs)
            out[attr] = p.load(value, ctx)
        return out

    def _create_run(self, param_refs: dict[str, ArtifactRef], reprs: Mapping[str, str], origin_run_id: str | None) -> str:
        params_json = {
            name: {"key": r.key, "size": r.size, "type": r.type, "repr": reprs.get(name, "None")}
            for name, r in param_refs.items()
        }
        run_id = self.store.metadata.create_run(
            self.flow_name,
            user=self.user,
            tags=sorted(self.tags),
            system_tags=[f"user:{self.user}", *(self.project.system_tags if self.project else ())],
            graph=self.graph.to_json(),
            params=params_json,
            origin_run_id=origin_run_id,
        )
        if self.on_run_created is not None:
            self.on_run_created(run_id)
        return run_id

    def _reachable(self, step: str) -> set[str]:
        seen: set[str] = set()
        stack = [step]
        while stack:
            s = stack.pop()
            if s not in seen:
                seen.add(s)
                stack.extend(self.graph[s].out_funcs)
        return seen

    def _open_executor(self) -> None:
        """The run's private temporary folder and its executor (``self.state``)."""
        st = self.state
        _tmp.clean_stale(self.tmp_base)
        st.tmp_dir = _tmp.make_run_dir(self.tmp_base)
        try:
            ctx = ExecutorContext(self.flow_cls, self.store, st.tmp_dir, echo=None if self.quiet else self._emit)
            st.executor = make_executor(self.executor_name, ctx, zygote=self.zygote, options=self.executor_options)
        except BaseException:
            self._close_executor()
            raise

    def _close_executor(self) -> None:
        st = self.state
        executor, st.executor = st.executor, None
        try:
            if executor is not None:
                executor.shutdown()
        finally:
            _tmp.remove_run_dir(st.tmp_dir)
            st.tmp_dir = None

    # -- the scheduling loop ---------------------------------------------------------
    def _execute(self, run_id: str, param_refs: dict[str, ArtifactRef], origin: Origin | None) -> str:
        st = self.state  # made by run() / resume() before the signal handlers went in
        st.run_id = run_id
        st.param_refs = param_refs
        st.origin = origin
        started = time.time()
        beater: Beater | None = None
        try:
            if st.executor.runs_here:  # the loop blocks in the steps: beat from a thread
                beater = Beater(self)
            self._say(f"Run {self.flow_name}/{run_id} started" + (f" (resuming {origin.run_id})" if origin else ""),
                      always=True)
            self._heartbeat(force=True)
            self._schedule("start", None, dict(param_refs), [])
            self._loop()
            self._flush_records()
        except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised
            # A crash of the scheduler itself (or an interrupt before the loop
            # noticed it): leave nothing running, record what finished.
            self._stop_workers()
            self._salvage_records()
            try:
                self._finish_run("failed", "interrupted" if isinstance(exc, KeyboardInterrupt) else "crashed")
            except Exception:  # noqa: BLE001 - the original error is the one to show
                pass
            raise
        finally:
            if beater is not None:
                beater.stop()
            self._close_executor()
        if self.state.interrupted is not None:
            name = signal.Signals(self.state.interrupted).name
            self._finish_run("failed", "interrupted")
            self._say(f"Run {self.flow_name}/{run_id} interrupted ({name}); stopped its tasks and marked it failed",
                      always=True)
            raise RunInterruptedError(
                f"run {self.flow_name}/{run_id} was interrupted ({name}) and is marked failed; "
                f"continue it with `{self._resume_hint()}`",
                self.state.interrupted,
            )
        status = "failed" if self.state.failure else "succeeded"
        self._finish_run(status, self.state.failure.splitlines()[0][:300] if self.state.failure else None)
        if self.state.failure:
            raise RunFailedError(self.state.failure)
        self._say(
            f"Run {self.flow_name}/{run_id} succeeded in {time.time() - started:.2f}s; stored in "
            f"{self._where()} (look at it: reelflow runs show {self.flow_name}/{run_id})",
            always=True,
        )
        return run_id

    def _loop(self) -> None:
        st = self.state
        executor: Executor = st.executor
        max_workers = max(1, self.max_workers or executor.default_workers())
        while (st.ready or executor) and not st.failure and st.interrupted is None:
            now = time.time()
            self._heartbeat()
            # Ended tasks are recorded before their successors start: a run killed now
            # never has a running task whose predecessor's row is missing.
            self._flush_records()
            for _ in range(len(st.ready)):
                if not st.ready or len(executor) >= max_workers or st.failure or st.interrupted is not None:
                    break
                p = st.ready.popleft()
                if p.not_before > now:
                    st.ready.append(p)
                    continue
                if p.spec.parallel is not None:  # a @parallel gang starts whole (see _gang.py)
                    self._start_gang(executor, take_gang(st.ready, p), now)
                elif p.clone is not None:
                    self._complete_clone(p)
                else:
                    self._submit(executor, p, now)
            self._flush_records()
            if executor:
                for attempt, result in executor.poll():
                    self._worker_ended(attempt, result)
            elif st.ready and not any(p.clone for p in st.ready):
                wait = min(p.not_before for p in st.ready) - time.time()
                if wait > 0:
                    time.sleep(min(wait, 0.5))
        if st.failure or st.interrupted is not None:
            self._stop_workers()

    def _start_gang(self, executor: Executor, members: list[Pending], now: float) -> None:
        if all(p.clone is not None for p in members):
            for p in members:
                self._complete_clone(p)
            return
        prepare = getattr(executor, "prepare_gang", None)
        if prepare is not None:  # the executor places the gang (Ray: a placement group)
            try:
                specs = prepare([p.spec for p in members], self._decorators(members[0].spec.step_name))
            except ReelflowError as exc:
                self.state.failure = f"step {members[0].spec.step_name!r} cannot start its gang: {exc}"
                return
            members = [dataclasses.replace(p, spec=sp) for p, sp in zip(members, specs)]
        for p in members:
            self._submit(executor, p, now)

    def _submit(self, executor: Executor, p: Pending, now: float) -> None:
        decos = self._decorators(p.spec.step_name)
        self.state.in_step = executor.runs_here  # a signal stops a step running in this thread
        try:
            executor.submit(p.spec, p.frames, timeout_seconds=_timeout_seconds(decos), now=now, decorators=decos)
        except ReelflowError as exc:  # the attempt can never run (e.g. no node has its resources)
            self.state.failure = f"step {p.spec.step_name!r} cannot run (task {p.spec.pathspec}): {exc}"
        finally:
            self.state.in_step = False

    # -- completion -------------------------------------------------------------------
    def _emit(self, spec: TaskSpec, stream: str, line: bytes) -> None:
        if self.quiet:
            return
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(f"[{spec.run_id}/{spec.step_name}/{spec.task_id}] {line.decode('utf-8', 'replace')}\n")
        out.flush()

    def _worker_ended(self, w: Attempt, result: TaskResult) -> None:
        if w.spec.parallel is not None:  # a gang member: decided when the whole gang ended
            for a, r in self.state.gangs.ended(w, result):
                self._finish(Pending(a.spec, a.frames), r, a.started_at, logs=a.logs)
            return
        self._finish(Pending(w.spec, w.frames), result, w.started_at, logs=w.logs)

    def _finish(self, p: Pending, result: TaskResult, started_at: float, logs: Mapping[str, Any] | None) -> None:
        spec = p.spec
        log_keys: dict[str, str | None] = {"stdout": None, "stderr": None}
        for stream, sink in (logs or {}).items():
            log_keys[stream] = sink.close()
        if result.status == "failed" and self.state.interrupted is not None:
            name = signal.Signals(self.state.interrupted).name
            why = f"{INTERRUPTED} the run was stopped by {name}"
            result = dataclasses.replace(result, exception=why,
                                         traceback=why + ("\n" + result.traceback if result.traceback else ""))
        decos = self._decorators(spec.step_name)
        rec = TaskRecord(
            step_name=spec.step_name,
            task_id=spec.task_id,
            attempt=spec.attempt,
            status=result.status,
            task_key=spec.task_key,
            started_at=started_at,
            finished_at=time.time(),
            split_index=spec.foreach_frames[-1]["index"] if spec.foreach_frames else None,
            foreach_stack=[[f["index"], f["num_splits"]] for f in spec.foreach_frames],
            input_paths=spec.input_paths,
            exception=(result.traceback or result.exception) if result.status == "failed" else None,
            stdout_key=log_keys["stdout"],
            stderr_key=log_keys["stderr"],
            resources=decos["resources"].to_json() if "resources" in decos else None,
            result=result.transition,
            metrics=result.metrics,
        )
        # Written after the next tasks are launched (see _loop), in one transaction.
        # A failed attempt's artifacts are recorded too (the client reads them, as Metaflow's);
        # nothing downstream starts from a failed attempt.
        self.state.records.append((rec, result.artifacts))
        if result.status == "succeeded":
            if result.caught and not self.quiet and (spec.catch or {}).get("print_exception", True):
                self._say(f"[{self.state.run_id}/{spec.step_name}/{spec.task_id}] @catch handled: {result.caught}")
            self.step_cache.succeeded(spec, caught=bool(result.caught))
            if not self.quiet:
                self._say(f"[{self.state.run_id}/{spec.step_name}/{spec.task_id}] done in {rec.finished_at - started_at:.2f}s")
            self._advance(spec, p.frames, result.artifacts, result.transition or {})
            return
        if self.state.interrupted is not None:  # stopped, not broken: no retry, no @catch
            return
        retry = decos.get("retry")
        catch = decos.get("catch")
        times = int(retry["times"]) if retry else 0
        if spec.fallback_exception is None and spec.attempt < times:
            delay = retry_delay(retry) if retry else 0.0
            self._say(f"[{self.state.run_id}/{spec.step_name}/{spec.task_id}] attempt {spec.attempt} failed "
                      f"({result.exception}); retrying" + (f" in {delay:.0f}s" if delay else ""))
            self.state.ready.append(Pending(dataclasses.replace(spec, attempt=spec.attempt + 1), p.frames, time.time() + delay))
            return
        if catch is not None and spec.fallback_exception is None:
            if catch["print_exception"]:
                self._say(f"[{self.state.run_id}/{spec.step_name}/{spec.task_id}] @catch handled: {result.exception}")
            fallback = dataclasses.replace(spec, attempt=spec.attempt + 1, fallback_exception=result.exception or "")
            self.state.ready.append(Pending(fallback, p.frames))
            return
        tail = ""
        if logs and logs.get("stderr"):
            lines = logs["stderr"].tail().decode("utf-8", "replace").rstrip().splitlines()[-_LOG_TAIL_LINES:]
            tail = "\n--- last lines of its stderr ---\n" + "\n".join(lines)
        elif result.traceback:
            tail = "\n" + result.traceback.rstrip()
        self.state.failure = (
            f"step {spec.step_name!r} failed (task {spec.pathspec}, attempt {spec.attempt}): {result.exception}{tail}\n"
            f"Fix the step, then resume the run: `{self._resume_hint()}`"
        )

    def _complete_clone(self, p: Pending) -> None:
        origin_row = p.clone
        assert origin_row is not None
        source = origin_row.get("cache_source")  # a step-cache hit (_cache.py), else a resume clone
        if source is not None:
            self.step_cache.hit(p.spec, source)
        else:
            assert self.state.origin is not None
            source = f"{self.flow_name}/{self.state.origin.run_id}/{p.spec.step_name}/{origin_row['task_id']}"
        refs = origin_row["refs"]
        rec = TaskRecord(
            step_name=p.spec.step_name,
            task_id=p.spec.task_id,
            attempt=0,
            status="succeeded",
            task_key=p.spec.task_key,
            started_at=origin_row["started_at"],
            finished_at=origin_row["finished_at"],
            split_index=origin_row["split_index"],
            foreach_stack=origin_row["foreach_stack"],
            input_paths=p.spec.input_paths,
            stdout_key=origin_row["stdout_key"],
            stderr_key=origin_row["stderr_key"],
            cloned_from=source,
            resources=origin_row["resources"],
            result=origin_row["result"],
            metrics=list(origin_row.get("metrics", [])),
        )
        self.state.records.append((rec, refs))
        self._advance(p.spec, p.frames, refs, origin_row["result"] or {})


def _timeout_seconds(decos: Mapping[str, StepDecorator]) -> float:
    t = decos.get("timeout")
    if t is None:
        return 0.0
    a = t.attributes
    return float(a["seconds"]) + 60.0 * float(a["minutes"]) + 3600.0 * float(a["hours"])


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 200 else r[:197] + "..."

