"""Metaflow's exception names, so ``from metaflow.exception import ...`` works with the import changed.

Each name is reelflow's own class (or a small subclass of it), so an ``except`` clause
written for Metaflow catches what reelflow raises::

    from reelflow import Flow
    from reelflow.exception import MetaflowNotFound

    try:
        Flow("NoSuchFlow")
    except MetaflowNotFound:
        ...

==============================  ===========================================
Metaflow                        reelflow
==============================  ===========================================
``MetaflowException``           :class:`~reelflow.errors.ReelflowError`
``MetaflowNotFound``            :class:`~reelflow.errors.NotFoundError`
``MetaflowNamespaceMismatch``   :class:`~reelflow.errors.NamespaceMismatchError`
``MetaflowInvalidPathspec``     :class:`~reelflow.errors.InvalidPathspecError`
``MissingInMergeArtifacts...``  :class:`~reelflow.errors.MergeArtifactsError`
``InvalidDecoratorAttribute``   :class:`~reelflow.errors.FlowDefinitionError`
``ParameterField...``           :class:`~reelflow.errors.ParameterError`
``MetaflowExceptionWrapper``    what ``@catch(var=...)`` stores (``.type``, ``.exception``, ``.stacktrace``)
==============================  ===========================================
"""

from __future__ import annotations

from .errors import (
    FlowDefinitionError,
    InvalidPathspecError,
    MergeArtifactsError,
    NamespaceMismatchError,
    NotFoundError,
    ParameterError,
    ReelflowError,
)
from .flows._decorators import CaughtException

__all__ = [
    "MetaflowException",
    "MetaflowNotFound",
    "MetaflowNamespaceMismatch",
    "MetaflowInvalidPathspec",
    "MetaflowInternalError",
    "MetaflowDataMissing",
    "MetaflowTaggingError",
    "MetaflowUnknownUser",
    "MetaflowExceptionWrapper",
    "CommandException",
    "ExternalCommandFailed",
    "InvalidDecoratorAttribute",
    "MissingInMergeArtifactsException",
    "UnhandledInMergeArtifactsException",
    "ParameterFieldFailed",
    "ParameterFieldTypeMismatch",
    "METAFLOW_EXIT_DISALLOW_RETRY",
    "METAFLOW_EXIT_ALLOW_RETRY",
]

METAFLOW_EXIT_DISALLOW_RETRY = 202
METAFLOW_EXIT_ALLOW_RETRY = 203

MetaflowException = ReelflowError
MetaflowNotFound = NotFoundError
MetaflowNamespaceMismatch = NamespaceMismatchError
MetaflowInvalidPathspec = InvalidPathspecError
MissingInMergeArtifactsException = MergeArtifactsError
UnhandledInMergeArtifactsException = MergeArtifactsError
InvalidDecoratorAttribute = FlowDefinitionError
ParameterFieldFailed = ParameterError
ParameterFieldTypeMismatch = ParameterError
MetaflowExceptionWrapper = CaughtException


class MetaflowInternalError(ReelflowError):
    """An internal error (Metaflow's name; user code may raise it)."""

    headline = "Internal error"


class MetaflowDataMissing(ReelflowError):
    """Data a task should have is missing (Metaflow's name; user code may raise it)."""

    headline = "Data missing"


class MetaflowTaggingError(ReelflowError):
    """A tag operation is invalid (Metaflow's name; user code may raise it)."""

    headline = "Tagging error"


class MetaflowUnknownUser(ReelflowError):
    """The user could not be determined (Metaflow's name; user code may raise it)."""

    headline = "Unknown user"


class CommandException(ReelflowError):
    """A command line is invalid (Metaflow's name; user code may raise it)."""

    headline = "Invalid command"


class ExternalCommandFailed(ReelflowError):
    """An external command failed (Metaflow's name; user code may raise it)."""

    headline = "External command failed"
