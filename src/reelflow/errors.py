"""Exceptions raised by reelflow.

Every error reelflow raises derives from :class:`ReelflowError`; the tree is
kept shallow so that ``except`` clauses stay readable::

    ReelflowError
    ├── FlowDefinitionError      the flow class is malformed (graph checks)
    │   └── ParameterDefinitionError  a parameter's declaration (also a ParameterError)
    ├── ParameterError           a parameter value is missing or invalid
    ├── StoreError               the store cannot be used
    │   ├── CorruptArtifactError a blob failed its hash check on read
    │   └── SchemaVersionError   the metadata schema is newer than this code
    ├── RunFailedError           a run ended with a failed task
    │   └── RunInterruptedError  the run was stopped by SIGINT/SIGTERM
    ├── NotFoundError            a flow, run, step, task or artifact is missing
    │   ├── NamespaceMismatchError   the object exists outside the namespace
    │   └── InvalidPathspecError     a pathspec is malformed
    ├── MergeArtifactsError      merge_artifacts found conflicting values
    ├── TransitionError          a step's self.next() disagrees with the graph
    ├── NotFittedError           a model method needs fit() first
    ├── ModelFileError           a model file is foreign, unsafe or of the wrong class
    │   └── CorruptModelFileError    it is damaged (also a CorruptArtifactError)
    ├── MissingExtraError        a toolkit's optional dependencies are not installed
    └── ExecutorError            an executor cannot run the flow's tasks (e.g. Ray)

    ReelflowWarning (UserWarning)
    └── NamespaceWarning         the client's namespace hides runs that exist

Messages name the offending step, parameter, file or id and say what to do.
Metaflow's names for these (``MetaflowException``, ``MetaflowNotFound``, ...) live in
:mod:`reelflow.exception`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ReelflowWarning",
    "NamespaceWarning",
    "ReelflowError",
    "FlowDefinitionError",
    "ParameterError",
    "ParameterDefinitionError",
    "StoreError",
    "CorruptArtifactError",
    "SchemaVersionError",
    "RunFailedError",
    "RunInterruptedError",
    "NotFoundError",
    "NamespaceMismatchError",
    "InvalidPathspecError",
    "MergeArtifactsError",
    "TransitionError",
    "NotFittedError",
    "ModelFileError",
    "CorruptModelFileError",
    "MissingExtraError",
    "ExecutorError",
]


class ReelflowError(Exception):
    """Root of every exception raised by reelflow.

    Also takes Metaflow's ``MetaflowException(msg=..., lineno=..., source_file=...)``
    keywords, so code written for Metaflow raises it unchanged.
    """

    headline = "Flow failed"

    def __init__(self, *args: Any, msg: Any = None, lineno: int | None = None,
                 source_file: str | None = None) -> None:
        if msg is not None:
            args = (msg, *args)
        super().__init__(*args)
        self.line_no = lineno
        self.source_file = source_file

    @property
    def message(self) -> str:
        """The message (Metaflow's attribute name)."""
        return str(self.args[0]) if self.args else ""


class FlowDefinitionError(ReelflowError):
    """The flow class breaks a rule of the flow graph."""


class ParameterError(ReelflowError, ValueError):
    """A flow parameter is missing, of the wrong type or clashes with a name."""


class ParameterDefinitionError(FlowDefinitionError, ParameterError):
    """A parameter is declared wrongly: a bad type, or a name taken by a step or by an
    option of the flow's command line."""


class StoreError(ReelflowError):
    """The artifact or metadata store cannot be used."""


class CorruptArtifactError(StoreError):
    """A blob's content does not match its hash."""


class SchemaVersionError(StoreError):
    """The metadata database was written by a newer reelflow."""


class RunFailedError(ReelflowError):
    """A run ended with a failed task."""


class RunInterruptedError(RunFailedError):
    """A run was stopped by a signal (Ctrl-C, SIGTERM); it is recorded as failed, reason
    "interrupted". ``exit_code`` is what a shell reports for that signal (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class NotFoundError(ReelflowError, KeyError):
    """A flow, run, step, task or artifact does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NamespaceMismatchError(NotFoundError):
    """The object exists but lies outside the current namespace."""


class InvalidPathspecError(NotFoundError):
    """A pathspec does not have the shape its object needs (``FlowName/RUN_ID``, ...)."""


class MergeArtifactsError(ReelflowError):
    """``merge_artifacts`` found artifacts whose values differ between inputs."""


class TransitionError(ReelflowError):
    """A step called ``self.next`` in a way the static graph does not allow."""


class NotFittedError(ReelflowError, ValueError, AttributeError):
    """A model method that needs learned state was called before ``fit``."""


class ModelFileError(ReelflowError, ValueError):
    """A model file is not one, holds another class, or holds something unsafe to load."""


class CorruptModelFileError(ModelFileError, CorruptArtifactError):
    """A model file is damaged or truncated (its content fails its integrity check)."""


class MissingExtraError(ReelflowError, ImportError):
    """A toolkit was used whose optional dependencies (a ``reelflow[...]`` extra) are absent."""


class ExecutorError(ReelflowError):
    """An executor cannot run the flow's tasks: a cluster that cannot be reached, a step
    whose resources no node has, a store the cluster's nodes cannot share."""


class ReelflowWarning(UserWarning):
    """Root of the warnings reelflow emits."""


class NamespaceWarning(ReelflowWarning):
    """The client found no run in its namespace while runs of other namespaces exist."""
