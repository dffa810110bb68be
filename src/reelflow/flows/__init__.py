"""Authoring flows: ``FlowSpec``, ``@step``, parameters, step decorators and ``current``."""

from __future__ import annotations

from ._artifacts import Inputs, InputView
from ._config import Config, ConfigValue, config_expr
from ._current import Current, current
from ._decorators import StepDecorator, cache, card, catch, checkpoint, environment, parallel, resources, retry, step, timeout
from ._environments import conda, conda_base, pypi, pypi_base
from ._graph import FlowGraph, StepNode
from ._mutators import FlowMutator, MutableFlow, MutableStep
from ._parameters import IncludeFile, JSONType, Parameter, ParameterContext
from ._project import namespaced_event_name, project
from ._spec import FlowSpec
from ._triggers import Trigger, TriggerEvent, schedule, trigger, trigger_on_finish

__all__ = [
    "FlowSpec",
    "step",
    "Parameter",
    "JSONType",
    "IncludeFile",
    "ParameterContext",
    "current",
    "Current",
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
    "Config",
    "ConfigValue",
    "config_expr",
    "FlowMutator",
    "MutableFlow",
    "MutableStep",
    "namespaced_event_name",
    "pypi",
    "conda",
    "pypi_base",
    "conda_base",
    "Trigger",
    "TriggerEvent",
    "StepDecorator",
    "FlowGraph",
    "StepNode",
    "Inputs",
    "InputView",
]
