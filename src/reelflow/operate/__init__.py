"""Continuous operation: deployments, events and the scheduler.

``reelflow deploy flow.py`` snapshots a flow's code into the store with its
triggers (``@schedule``, ``@trigger``, ``@trigger_on_finish``);
``reelflow scheduler`` starts runs of deployments when they fire, exactly once per
slot, event or finished run, even with several schedulers on one PostgreSQL
database. See :mod:`reelflow.operate._scheduler` for the guarantees.
"""

from __future__ import annotations

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
