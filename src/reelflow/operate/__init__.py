"""Continuous operation: deployments, events and the scheduler.

``reelflow deploy flow.py`` snapshots a flow's code into the store with its
triggers (``@schedule``, ``@trigger``, ``@trigger_on_finish``);
``reelflow scheduler`` starts runs of deployments when they fire, exactly once per
slot, event or finished run, even with several schedulers on one PostgreSQL
database. See :mod:`reelflow.operate._scheduler` for the guarantees.

Names load on first use, so the ``reelflow`` command line (which registers the
``deploy``/``scheduler`` commands) does not import SQLAlchemy before a run forks
its workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "deploy",
    "Deployment",
    "get_deployment",
    "list_deployments",
    "pause",
    "resume",
    "delete_deployment",
    "deployment_history",
    "publish",
    "list_events",
    "Scheduler",
    "run_trigger",
]

_WHERE = {
    **dict.fromkeys(("deploy", "Deployment", "get_deployment", "list_deployments", "pause", "resume",
                     "delete_deployment", "deployment_history"), "._deploy"),
    "publish": "._events",
    "list_events": "._events",
    "Scheduler": "._scheduler",
    "run_trigger": "._trigger_lookup",
}

if TYPE_CHECKING:
    from ._deploy import (
        Deployment,
        delete_deployment,
        deploy,
        deployment_history,
        get_deployment,
        list_deployments,
        pause,
        resume,
    )
    from ._events import list_events, publish
    from ._scheduler import Scheduler
    from ._trigger_lookup import run_trigger


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'reelflow.operate' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
