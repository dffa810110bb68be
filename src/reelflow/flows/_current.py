"""``current``: what the running task knows about itself."""

from __future__ import annotations

import math
import numbers
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ReelflowError

if TYPE_CHECKING:
    from ..cards import CardCollector
    from ._project import ProjectInfo
    from ..runtime._checkpoint import Checkpointer
    from ._triggers import Trigger

__all__ = ["current", "Current", "Parallel", "MAX_METRIC_NAME"]

MAX_METRIC_NAME = 1000  # characters; the metadata schema holds longer names, no one reads them
_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 1  # what every metadata backend's BIGINT holds


class Parallel(NamedTuple):
    """``current.parallel``: where this task stands in its ``@parallel`` gang (Metaflow's fields)."""

    main_ip: str
    num_nodes: int
    node_index: int
    control_task_id: str | None


@dataclass
class _TaskInfo:
    flow_name: str
    run_id: str
    step_name: str
    task_id: str
    retry_count: int
    origin_run_id: str | None
    username: str
    tags: frozenset[str]
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[str, float, int | None, float]] = field(default_factory=list)


class Current:
    """Read-only view of the task being executed (``from reelflow import current``).

    Outside a running task ``current.is_running_flow`` is False and the other
    properties are None.
    """

    def __init__(self) -> None:
        self._info: _TaskInfo | None = None

    def _bind(self, info: _TaskInfo | None) -> None:
        self._info = info

    def _get(self, name: str) -> Any:
        return getattr(self._info, name) if self._info is not None else None

    @property
    def is_running_flow(self) -> bool:
        return self._info is not None

    @property
    def flow_name(self) -> str | None:
        return self._get("flow_name")  # type: ignore[no-any-return]

    @property
    def run_id(self) -> str | None:
        return self._get("run_id")  # type: ignore[no-any-return]

    @property
    def step_name(self) -> str | None:
        return self._get("step_name")  # type: ignore[no-any-return]

    @property
    def task_id(self) -> str | None:
        return self._get("task_id")  # type: ignore[no-any-return]

    @property
    def retry_count(self) -> int:
        return self._get("retry_count") or 0  # type: ignore[no-any-return]

    @property
    def origin_run_id(self) -> str | None:
        return self._get("origin_run_id")  # type: ignore[no-any-return]

    @property
    def username(self) -> str | None:
        return self._get("username")  # type: ignore[no-any-return]

    @property
    def tags(self) -> frozenset[str]:
        return self._get("tags") or frozenset()  # type: ignore[no-any-return]

    @property
    def parameter_names(self) -> list[str]:
        """The names of the flow's parameters (empty outside a running flow)."""
        return list(self._info.extra.get("parameter_names", ())) if self._info is not None else []

    @property
    def trigger(self) -> Trigger | None:
        """What started this run when the scheduler did (``current.trigger.event.name``, ``.payload``,
        ``.timestamp``; ``current.trigger.run`` for ``@trigger_on_finish``); None for a run started by hand."""
        if self._info is None:
            return None
        from ._triggers import trigger_from_env

        return trigger_from_env()

    # -- @project (None for a flow without it) ----------------------------------------
    @property
    def project_info(self) -> ProjectInfo | None:
        return self._info.extra.get("project") if self._info is not None else None

    @property
    def project_name(self) -> str | None:
        """``X`` of ``@project(name=X)``."""
        p = self.project_info
        return None if p is None else p.project_name

    @property
    def branch_name(self) -> str | None:
        """``user.<username>``, ``test.<branch>`` (``--branch``), ``prod`` (``--production``) or ``prod.<branch>``."""
        p = self.project_info
        return None if p is None else p.branch_name

    @property
    def project_flow_name(self) -> str | None:
        """``<project>.<branch>.<FlowName>``: the name the branch's deployment goes by."""
        p = self.project_info
        return None if p is None else p.project_flow_name

    @property
    def is_production(self) -> bool:
        p = self.project_info
        return bool(p is not None and p.is_production)

    @property
    def is_user_branch(self) -> bool:
        p = self.project_info
        return bool(p is not None and p.is_user_branch)

    @property
    def parallel(self) -> Parallel:
        """In a ``@parallel`` step: ``node_index`` (0 is the control task), ``num_nodes``, ``main_ip``
        (the address of node 0: 127.0.0.1 on one machine) and ``control_task_id``; elsewhere one node."""
        g = self._info.extra.get("parallel") if self._info is not None else None
        if not g:
            return Parallel("127.0.0.1", 1, 0, None)
        return Parallel(g["main_ip"], g["num_nodes"], g["node_index"], g["control_task_id"])

    @property
    def is_parallel(self) -> bool:
        """True inside a task of a ``@parallel`` gang."""
        return bool(self._info is not None and self._info.extra.get("parallel"))

    @property
    def pathspec(self) -> str | None:
        i = self._info
        return None if i is None else f"{i.flow_name}/{i.run_id}/{i.step_name}/{i.task_id}"

    @property
    def card(self) -> CardCollector:
        """The task's card: ``current.card.append(Markdown(...))``, ``current.card.refresh()``;
        ``current.card["id"]`` is another card of the task (see :mod:`reelflow.cards`)."""
        cards = self._info.extra.get("cards") if self._info is not None else None
        if cards is None:
            raise ReelflowError("current.card works inside a running step; decorate the step with @card")
        return cards.main  # type: ignore[no-any-return]

    @property
    def checkpoint(self) -> Checkpointer:
        """The task's checkpoints (``@checkpoint``): ``current.checkpoint.directory``, ``.save()``,
        ``.is_loaded``, ``.load()``, ``.list()``; see :mod:`reelflow.runtime._checkpoint`."""
        ckpt = self._info.extra.get("checkpoint") if self._info is not None else None
        if ckpt is None:
            raise ReelflowError("current.checkpoint works inside a running step decorated with @checkpoint")
        return ckpt  # type: ignore[no-any-return]

    def _checkpointer(self) -> Checkpointer | None:
        """The running step's checkpointer, or None (no task, or no ``@checkpoint``): for library code."""
        return self._info.extra.get("checkpoint") if self._info is not None else None

    # -- tracking ---------------------------------------------------------------------
    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric point of this task (buffered; written with the task's record).

        ``step`` is your own counter (epoch, iteration); points of one name form its history.
        The name is a non-empty string of at most 1000 characters, the value a finite real
        number (a bool counts as 0 or 1), the step an integer that fits 64 bits; anything
        else raises ReelflowError here, in the step, instead of failing the run's record.
        """
        info = self._info
        if info is None:
            raise ReelflowError("current.log_metric() works inside a running step; outside a flow, keep metrics yourself")
        if not isinstance(name, str) or not name.strip():
            raise ReelflowError(f"metric name {name!r} must be a non-empty string such as 'ndcg@10'")
        if len(name) > MAX_METRIC_NAME:
            raise ReelflowError(
                f"metric name {name[:40]!r}... is {len(name)} characters; names are at most {MAX_METRIC_NAME}"
            )
        if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Real):
            raise ReelflowError(f"metric {name!r}: value {value!r} is not a real number; log an int or a float")
        try:
            v = float(value)  # bool counts as 0/1, numpy scalars as their value
        except (TypeError, ValueError, OverflowError):
            raise ReelflowError(f"metric {name!r}: value {value!r} is not a number") from None
        if math.isnan(v) or math.isinf(v):
            raise ReelflowError(f"metric {name!r}: value {value!r} is not finite")
        if step is not None:
            if isinstance(step, bool):
                raise ReelflowError(f"metric {name!r}: step={step!r} must be an integer, not a bool")
            try:
                step = operator.index(step)  # int and numpy integers
            except TypeError:
                raise ReelflowError(f"metric {name!r}: step={step!r} must be an integer") from None
            if not _STEP_MIN <= step <= _STEP_MAX:
                raise ReelflowError(
                    f"metric {name!r}: step={step} does not fit a signed 64-bit integer "
                    f"({_STEP_MIN}..{_STEP_MAX}); count steps from 0"
                )
        info.metrics.append((name, v, step, time.time()))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record several metric points at once: ``current.log_metrics({"loss": 0.3, "ndcg@10": 0.41})``."""
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def _take_metrics(self) -> list[tuple[str, float, int | None, float]]:
        info = self._info
        if info is None:
            return []
        out, info.metrics = info.metrics, []
        return out

    def __repr__(self) -> str:
        return f"<current {self.pathspec or '(not in a running flow)'}>"


current = Current()
