"""``current``: what the running task knows about itself."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ReelflowError

__all__ = ["current", "Current"]


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
    def pathspec(self) -> str | None:
        i = self._info
        return None if i is None else f"{i.flow_name}/{i.run_id}/{i.step_name}/{i.task_id}"

    # -- tracking ---------------------------------------------------------------------
    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric point of this task (buffered; written with the task's record).

        ``step`` is your own counter (epoch, iteration); points of one name form its history.
        """
        info = self._info
        if info is None:
            raise ReelflowError("current.log_metric() works inside a running step; outside a flow, keep metrics yourself")
        if not isinstance(name, str) or not name:
            raise ReelflowError(f"metric name {name!r} must be a non-empty string")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ReelflowError(f"metric {name!r}: value {value!r} is not a number") from None
        if math.isnan(v) or math.isinf(v):
            raise ReelflowError(f"metric {name!r}: value {value!r} is not finite")
        if step is not None and not isinstance(step, int):
            raise ReelflowError(f"metric {name!r}: step={step!r} must be an integer")
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
