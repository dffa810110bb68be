"""``@parallel`` gangs on Ray: one placement group per gang attempt (Ray loads lazily).

Each member gets one bundle of the step's ``@resources``; Ray reserves all bundles
at once, so the members start together or not at all (never half a gang waiting on
the other half). A gang bigger than the whole cluster fails at once, naming the
step. Member 0's node address becomes ``current.parallel.main_ip`` of every member.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ExecutorError
from ._gang import gang_key
from ._task import TaskSpec

__all__ = ["RayGangs", "with_main_ip"]


class RayGangs:
    """The placement groups of the gangs a Ray executor is running."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, int], list[Any]] = {}  # gang -> [placement group, members left]

    def reserve(self, specs: list[TaskSpec], opts: dict[str, Any], nodes: list[dict[str, float]]) -> None:
        from ray.util.placement_group import placement_group

        from ._ray import _as_cluster_request, _describe_request

        bundle = _as_cluster_request(opts) or {"CPU": 0.01}
        totals: dict[str, float] = {}
        for node in nodes:
            for k, v in node.items():
                totals[k] = totals.get(k, 0.0) + v
        short = [k for k, v in bundle.items() if totals.get(k, 0.0) < v * len(specs)]
        if short:
            raise ExecutorError(
                f"its gang of {len(specs)} tasks needs {len(specs)} x ({_describe_request(opts)}) at once but the "
                f"Ray cluster has only {', '.join(f'{k}={totals.get(k, 0.0):g}' for k in short)} in all; lower "
                "num_parallel or the step's @resources, or add nodes"
            )
        pg = placement_group([dict(bundle) for _ in specs], strategy="SPREAD", name=f"reelflow:{specs[0].pathspec}")
        self._groups[gang_key(specs[0])] = [pg, len(specs)]

    def placement(self, spec: TaskSpec) -> tuple[Any, Any]:
        """The member's placement group and the Ray scheduling strategy that puts it in its bundle."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        assert spec.parallel is not None
        pg = self._groups[gang_key(spec)][0]
        return pg, PlacementGroupSchedulingStrategy(placement_group=pg,
                                                    placement_group_bundle_index=int(spec.parallel["node_index"]))

    def ended(self, spec: TaskSpec) -> None:
        """One member ended; the group goes once every member did."""
        entry = self._groups.get(gang_key(spec))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._groups[gang_key(spec)]
            _remove(entry[0])

    def release_all(self) -> None:
        for pg, _ in self._groups.values():
            _remove(pg)
        self._groups.clear()


def _remove(pg: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    try:
        remove_placement_group(pg)
    except Exception:  # noqa: BLE001 - already gone with the cluster
        pass


def with_main_ip(spec: TaskSpec, pg: Any) -> TaskSpec:
    """``spec`` with ``parallel.main_ip``: the address of the node that holds the gang's member 0 (in a worker)."""
    import ray
    from ray.util.placement_group import placement_group_table

    assert spec.parallel is not None
    try:
        node_id = placement_group_table(pg)["bundles_to_node_id"][0]
        ip = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)
    except Exception:  # noqa: BLE001 - keep the local default rather than fail the task
        return spec
    return dataclasses.replace(spec, parallel={**spec.parallel, "main_ip": ip})
