"""reelflow: the machine-learning platform of a video-streaming service.

Authoring names come straight from the package (Metaflow's surface)::

    from reelflow import FlowSpec, step, Parameter, current, Flow, Run

Heavy parts (the store, the runtime, SQLAlchemy) load on first use, so
``import reelflow`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "FlowSpec",
    "step",
    "Parameter",
    "JSONType",
    "IncludeFile",
    "current",
    "retry",
    "catch",
    "timeout",
    "resources",
    "environment",
    "card",
    "checkpoint",
    "parallel",
    "cache",
    "schedule",
    "trigger",
    "trigger_on_finish",
    "project",
    "namespaced_event_name",
    "Config",
    "config_expr",
    "FlowMutator",
    "pypi",
    "conda",
    "pypi_base",
    "conda_base",
    "events",
    "Runner",
    "NBRunner",
    "Flow",
    "Run",
    "Step",
    "Task",
    "DataArtifact",
    "Metaflow",
    "get_metadata",
    "metadata",
    "default_metadata",
    "namespace",
    "get_namespace",
    "default_namespace",
    "ReelflowError",
    "models",
    "cards",
    "exception",
    "__version__",
]

_MODULES = {"models": "reelflow.registry", "events": "reelflow.events", "cards": "reelflow.cards",
            "exception": "reelflow.exception"}

_LAZY = {
    "FlowSpec": "reelflow.flows",
    "step": "reelflow.flows",
    "Parameter": "reelflow.flows",
    "JSONType": "reelflow.flows",
    "IncludeFile": "reelflow.flows",
    "current": "reelflow.flows",
    "retry": "reelflow.flows",
    "catch": "reelflow.flows",
    "timeout": "reelflow.flows",
    "resources": "reelflow.flows",
    "environment": "reelflow.flows",
    "card": "reelflow.flows",
    "checkpoint": "reelflow.flows",
    "parallel": "reelflow.flows",
    "cache": "reelflow.flows",
    "schedule": "reelflow.flows",
    "trigger": "reelflow.flows",
    "trigger_on_finish": "reelflow.flows",
    "project": "reelflow.flows",
    "Config": "reelflow.flows",
    "config_expr": "reelflow.flows",
    "FlowMutator": "reelflow.flows",
    "namespaced_event_name": "reelflow.flows",
    "pypi": "reelflow.flows",
    "conda": "reelflow.flows",
    "pypi_base": "reelflow.flows",
    "conda_base": "reelflow.flows",
    "Runner": "reelflow.runtime",
    "NBRunner": "reelflow.runtime",
    "Flow": "reelflow.client",
    "Run": "reelflow.client",
    "Step": "reelflow.client",
    "Task": "reelflow.client",
    "DataArtifact": "reelflow.client",
    "Metaflow": "reelflow.client",
    "get_metadata": "reelflow.client",
    "metadata": "reelflow.client",
    "default_metadata": "reelflow.client",
    "namespace": "reelflow.client",
    "get_namespace": "reelflow.client",
    "default_namespace": "reelflow.client",
    "ReelflowError": "reelflow.errors",
}

if TYPE_CHECKING:  # what IDEs and mypy see
    from .client import (
        DataArtifact,
        Flow,
        Metaflow,
        Run,
        Step,
        Task,
        default_metadata,
        default_namespace,
        get_metadata,
        get_namespace,
        metadata,
        namespace,
    )
    from .errors import ReelflowError
    from .flows import (
        Config,
        FlowMutator,
        FlowSpec,
        IncludeFile,
        JSONType,
        Parameter,
        card,
        catch,
        conda,
        conda_base,
        cache,
        checkpoint,
        config_expr,
        current,
        environment,
        namespaced_event_name,
        project,
        pypi,
        pypi_base,
        parallel,
        resources,
        retry,
        schedule,
        step,
        timeout,
        trigger,
        trigger_on_finish,
    )
    from . import cards, events, exception
    from . import registry as models
    from .runtime import NBRunner, Runner


def __getattr__(name: str) -> Any:
    if name in _MODULES:  # modules: models.register(...), events.publish(...), cards.Markdown
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'reelflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
