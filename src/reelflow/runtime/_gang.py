"""``@parallel`` gangs: N tasks of one step that start together and succeed or fail together.

``self.next(self.train, num_parallel=N)`` schedules N tasks of the ``@parallel`` step
``train`` (a foreach whose ``self.input`` and ``self.index`` are the node index, as
in Metaflow). The scheduler submits a gang's members at once, even past
``--max-workers`` (members may wait for each other, e.g. a ``torch.distributed``
rendezvous at ``current.parallel.main_ip``), and decides when the last member
ended: the gang succeeded if every member did; otherwise every member's attempt
is recorded as failed, so ``@retry`` starts the whole gang again and ``resume``
runs it whole. An executor may place a gang itself (``prepare_gang``: Ray reserves
a placement group so that all members start or none does; see ``_ray.py``).

Members running in one process (``--inprocess``) run one after another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._task import TaskResult, TaskSpec

if TYPE_CHECKING:
    from ._state import Pending

__all__ = ["gang_key", "gang_info", "take_gang", "Gangs"]


def gang_key(spec: TaskSpec) -> tuple[str, str, int]:
    """Members of one gang attempt share the step, the control task and the attempt."""
    assert spec.parallel is not None
    return spec.step_name, str(spec.parallel["control_task_id"]), spec.attempt


def gang_info(node_decorators: Any, frames: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """``TaskSpec.parallel`` of a task of ``@parallel`` step scheduled with ``frames`` (else None)."""
    if "parallel" not in node_decorators or not frames or "control_task_id" not in frames[-1]:
        return None
    f = frames[-1]
    return {"node_index": f["index"], "num_nodes": f["num_splits"], "main_ip": "127.0.0.1",
            "control_task_id": str(f["control_task_id"])}


def take_gang(ready: deque[Pending], first: Pending) -> list[Pending]:
    """``first`` and the other members of its gang waiting in ``ready`` (removed from it), by node index.

    On resume, a gang is cloned only when every member can be; otherwise it all runs again.
    """
    key = gang_key(first.spec)
    rest = [p for p in ready if p.spec.parallel is not None and gang_key(p.spec) == key]
    for p in rest:
        ready.remove(p)
    members = sorted([first, *rest], key=lambda p: int(p.spec.parallel["node_index"]))  # type: ignore[index]
    if any(p.clone is None for p in members):
        for p in members:
            p.clone = None
    return members


class Gangs:
    """Results of gang members, held until their whole gang ended."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, str, int], dict[int, tuple[Any, TaskResult]]] = {}

    def ended(self, attempt: Any, result: TaskResult) -> list[tuple[Any, TaskResult]]:
        """Record one member's end; return every member's (attempt, result) once the gang ended."""
        spec: TaskSpec = attempt.spec
        assert spec.parallel is not None
        key = gang_key(spec)
        bucket = self.waiting.setdefault(key, {})
        bucket[int(spec.parallel["node_index"])] = (attempt, result)
        if len(bucket) < int(spec.parallel["num_nodes"]):
            return []
        del self.waiting[key]
        members = [bucket[i] for i in sorted(bucket)]
        failed = [(a, r) for a, r in members if r.status != "succeeded"]
        if not failed:
            return members
        a0, r0 = failed[0]
        why = (f"GangFailed: node {a0.spec.parallel['node_index']} ({a0.spec.pathspec}) of the @parallel gang failed: "
               f"{r0.exception}")
        # The members that finished are failed too (their gang did not succeed); the real
        # failures come last, so the run's failure message names one of them.
        out = [(a, TaskResult("failed", exception=why, traceback=why, metrics=r.metrics))
               for a, r in members if r.status == "succeeded"]
        return out + failed
