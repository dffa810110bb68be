"""Walking the flow's graph: which tasks a finished (or cloned) task makes ready.

A finished task's transition (linear, ``switch`` branch, static split, foreach or
``@parallel`` gang) schedules its successors; a join waits in a bucket until all the
inputs of its innermost frame (one splitting task) arrived, then pops that frame.
Each scheduled task gets a :class:`TaskSpec` with its ``task_key``
(``step[foreach path]#visit``), which is also how resume and the step cache find the
task to clone instead of running it.
"""

from __future__ import annotations

from typing import Any

from ..flows._decorators import StepDecorator
from ..flows._graph import FlowGraph
from ..flows._project import ProjectInfo
from ..store import ArtifactRef
from ._cache import StepCache
from ._gang import gang_info
from ._state import Pending, RunState
from ._task import TaskSpec

__all__ = ["GraphWalk"]


class GraphWalk:
    """The part of the scheduler that turns transitions into ready tasks (``self.state.ready``)."""

    graph: FlowGraph
    state: RunState
    flow_name: str
    user: str
    tags: frozenset[str]
    project: ProjectInfo | None
    config_values: dict[str, Any]
    with_decorators: dict[str, StepDecorator]
    max_num_splits: int
    step_cache: StepCache

    def _decorators(self, step: str) -> dict[str, StepDecorator]:
        """The step's decorators, over those every step got (``--with``)."""
        return {**self.with_decorators, **self.graph[step].decorators}

    def _advance(self, spec: TaskSpec, frames: list[dict[str, Any]], refs: dict[str, ArtifactRef], transition: dict[str, Any]) -> None:
        node = self.graph[spec.step_name]
        if node.kind == "end":
            return
        if node.kind == "linear":
            self._schedule(node.out_funcs[0], spec, refs, frames)
        elif node.kind == "switch":
            self._schedule(transition["branch"], spec, refs, frames)
        elif node.kind == "split":
            for i, target in enumerate(node.out_funcs):
                frame = {"kind": "split", "step": node.name, "task_id": spec.task_id, "index": i,
                         "num_splits": len(node.out_funcs)}
                self._schedule(target, spec, refs, frames + [frame])
        elif node.kind == "foreach":
            n = int(transition["num_splits"])
            param = node.foreach_param
            gang = bool(transition.get("parallel"))
            if n > self.max_num_splits:
                what = f"num_parallel={n}" if gang else f"foreach over self.{param}"
                self.state.failure = (
                    f"step {node.name!r}: {what} would start {n} tasks, more than "
                    f"--max-num-splits {self.max_num_splits}; raise --max-num-splits or shorten the list"
                )
                return
            if n == 0:
                self.state.failure = f"step {node.name!r}: foreach over an empty self.{param}; a foreach needs at least one item"
                return
            key = refs[param].key if param in refs else None
            control = self.state.next_task_id  # a gang's node 0 (its ids are consecutive)
            for i in range(n):
                frame = {"kind": "foreach", "step": node.name, "task_id": spec.task_id, "index": i,
                         "num_splits": n, "param": param, "key": key}
                if gang:  # self.input is the node index, as in Metaflow
                    frame.update(value=i, control_task_id=control)
                self._schedule(node.out_funcs[0], spec, refs, frames + [frame])

    def _schedule(self, step: str, parent: TaskSpec | None, refs: dict[str, ArtifactRef], frames: list[dict[str, Any]]) -> None:
        node = self.graph[step]
        join_inputs = None
        join_frames = None
        input_paths = [parent.pathspec] if parent else []
        base = refs
        if node.is_join:
            assert parent is not None
            top = frames[-1]
            bucket = self.state.buckets.setdefault((step, top["task_id"]), {})
            bucket[top["index"]] = (parent, refs)
            if len(bucket) < top["num_splits"]:
                return
            del self.state.buckets[(step, top["task_id"])]
            ordered = [bucket[i] for i in sorted(bucket)]
            join_inputs = [(s.step_name, s.pathspec, r) for s, r in ordered]
            join_frames = [list(s.foreach_frames) for s, _ in ordered]
            input_paths = [s.pathspec for s, _ in ordered]
            base = dict(self.state.param_refs)
            frames = frames[:-1]
        path = "/".join(str(f["index"]) for f in frames)
        visit = self.state.visits.get((step, path), 0)
        self.state.visits[(step, path)] = visit + 1
        task_key = f"{step}[{path}]#{visit}"
        decos = self._decorators(step)
        spec = TaskSpec(
            flow_name=self.flow_name,
            run_id=self.state.run_id,
            step_name=step,
            task_id=self.state.next_task_id,
            attempt=0,
            task_key=task_key,
            input_paths=input_paths,
            base_refs=base,
            params=frozenset(self.state.param_refs),
            user=self.user,
            tags=self.tags,
            origin_run_id=self.state.origin.run_id if self.state.origin else None,
            foreach_frames=[f for f in frames if f["kind"] == "foreach"],
            join_inputs=join_inputs,
            visit=visit,
            project=self.project.to_json() if self.project else None,
            parallel=gang_info(node.decorators, frames),
            join_frames=join_frames,
            catch=dict(decos["catch"].attributes) if "catch" in decos else None,
            retries=int(decos["retry"]["times"]) if "retry" in decos else 0,
            configs=self.config_values,
            with_decorators=dict(self.with_decorators),
        )
        self.state.next_task_id += 1
        clone = None
        if self.state.origin is not None and step not in self.state.origin.rerun:
            clone = self.state.origin.tasks.get(task_key)
        if clone is None:
            clone = self.step_cache.lookup(spec, self._decorators(step))
        self.state.ready.append(Pending(spec, frames, clone=clone))
