"""``@project``: separate namespaces for variant deployments of the same flows (Metaflow's names).

A flow decorated with ``@project(name="recs")`` runs on a *branch* of its project:

==========================================  ===========================
how it is started                           ``current.branch_name``
==========================================  ===========================
``python flow.py run``                      ``user.<username>``
``python flow.py --branch new_ease run``    ``test.new_ease``
``python flow.py --production run``         ``prod``
``--production --branch x``                 ``prod.x``
==========================================  ===========================

What keeps a branch apart from production:

* **runs** carry the system tags ``project:<name>`` and ``project_branch:<branch>``
  (Metaflow's), so ``Flow(...).runs("project_branch:prod")`` lists production's runs;
* **registry aliases** set from a run of any branch but ``prod`` are stored under
  ``<project>.<branch>/<alias>`` (e.g. ``recs.test.new_ease/champion``); production's
  are the plain aliases that servers watch (see :func:`scoped_alias`);
* **deployments** (``reelflow deploy flow.py --branch x``) are named after
  ``current.project_flow_name`` (``recs.test.x.TrainFlow``) and start their runs on
  their branch; ``@trigger_on_finish`` of a project flow only follows upstream runs of
  the same project and branch, and ``namespaced_event_name("ready")`` is an event
  name of the branch (``recs.test.x.ready``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import FlowDefinitionError, ParameterError

__all__ = ["project", "ProjectInfo", "project_spec", "resolve_project", "scoped_alias", "namespaced_event_name",
           "resolve_event_name", "PROJECT_ENV"]

T = TypeVar("T", bound=type)
_ATTR = "_reelflow_project"
_VALID = re.compile(r"^[a-z0-9_]{1,128}$")
PROJECT_ENV = "REELFLOW_PROJECT_INFO"  # ProjectInfo JSON of a deployment's branch (set by the scheduler)


@dataclass(frozen=True)
class _ProjectSpec:
    name: str
    branch: str | None = None
    production: bool = False


@dataclass(frozen=True)
class ProjectInfo:
    """A project flow's branch as one run sees it (``current.project_name`` and friends)."""

    project_name: str
    branch_name: str
    project_flow_name: str
    is_production: bool
    is_user_branch: bool

    @property
    def system_tags(self) -> list[str]:
        return [f"project:{self.project_name}", f"project_branch:{self.branch_name}"]

    @property
    def alias_prefix(self) -> str | None:
        """``<project>.<branch>/`` for every branch but production's ``prod`` (whose aliases are plain)."""
        return None if self.branch_name == "prod" else f"{self.project_name}.{self.branch_name}/"

    def to_json(self) -> dict[str, Any]:
        return {"project_name": self.project_name, "branch_name": self.branch_name,
                "project_flow_name": self.project_flow_name, "is_production": self.is_production,
                "is_user_branch": self.is_user_branch}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProjectInfo:
        return cls(**d)


def _check(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _VALID.match(value):
        raise FlowDefinitionError(f"{what} {value!r} is not valid; use 1-128 lowercase letters, digits or "
                                  "underscores, e.g. 'recs' or 'new_ease'")
    return value


def project(flow_cls: Any = None, *, name: str | None = None, branch: str | None = None,
            production: bool = False) -> Any:
    """Put the flow in project ``name``: ``@project(name="recs")`` above ``class MyFlow(FlowSpec):``.

    ``branch`` / ``production`` fix the branch in the code instead of on the command line
    (``--branch NAME`` / ``--production``); giving both a decorator value and a different
    command-line value is an error, as in Metaflow.
    """
    if flow_cls is not None and name is None:
        raise FlowDefinitionError("@project needs a name: @project(name='some_name')")
    spec = _ProjectSpec(_check("@project name", name), None if branch is None else _check("@project branch", branch),
                        bool(production))

    def attach(cls: T) -> T:
        from ._spec import FlowSpec

        if not (isinstance(cls, type) and issubclass(cls, FlowSpec)):
            raise FlowDefinitionError("@project decorates a FlowSpec subclass: put it above `class MyFlow(FlowSpec):`")
        setattr(cls, _ATTR, spec)
        return cls

    return attach(flow_cls) if flow_cls is not None else attach


def project_spec(flow_cls: type) -> _ProjectSpec | None:
    found = getattr(flow_cls, _ATTR, None)
    return found if isinstance(found, _ProjectSpec) else None


def resolve_project(flow_cls: type, *, branch: str | None = None, production: bool = False,
                    user: str | None = None) -> ProjectInfo | None:
    """The branch a run of ``flow_cls`` uses, from ``@project`` and the command line (None without @project).

    Without command-line values, a deployment's runs take the branch it was deployed on from
    the environment the scheduler sets (``REELFLOW_PROJECT_INFO``).
    """
    spec = project_spec(flow_cls)
    if spec is None:
        if branch is not None or production:
            opt = "--branch" if branch is not None else "--production"
            raise ParameterError(f"{opt} works only for a flow with @project(name=...); {flow_cls.__name__} "
                                 "has none (add @project above the class, or drop the option)")
        return None
    if branch is None and not production and os.environ.get(PROJECT_ENV):
        try:
            deployed = ProjectInfo.from_json(json.loads(os.environ[PROJECT_ENV]))
        except (ValueError, TypeError):
            deployed = None
        if deployed is not None and deployed.project_name == spec.name:
            return deployed
    if branch is not None:
        if spec.branch is not None and spec.branch != branch:
            raise ParameterError(f"--branch {branch}: @project already sets branch={spec.branch!r}; "
                                 "give the branch in one place only")
        branch = _check_option("--branch", branch)
    else:
        branch = spec.branch
    production = production or spec.production
    if user is None:
        from ..config import load_config

        user = load_config().user
    if branch:
        branch_name = f"prod.{branch}" if production else f"test.{branch}"
    elif production:
        branch_name = "prod"
    else:
        branch_name = f"user.{user}"
    return ProjectInfo(project_name=spec.name, branch_name=branch_name,
                       project_flow_name=f"{spec.name}.{branch_name}.{flow_cls.__name__}",
                       is_production=production, is_user_branch=not branch and not production)


def _check_option(opt: str, value: str) -> str:
    if not _VALID.match(value or ""):
        raise ParameterError(f"{opt} {value!r}: a branch name is 1-128 lowercase letters, digits or underscores, "
                             "e.g. --branch new_ease")
    return value


def _running_project() -> ProjectInfo | None:
    from ._current import current

    return current.project_info


def scoped_alias(alias: str) -> str:
    """The stored name of registry alias ``alias`` for the running task's project branch.

    Inside a run of a ``@project`` flow on any branch but ``prod`` the alias is stored as
    ``<project>.<branch>/<alias>``, so a branch's promotions never move production's
    aliases; outside such a run, and on ``prod``, it is ``alias`` unchanged. An alias that
    already names a branch (contains ``/``) is taken as it is.
    """
    if "/" in alias:
        return alias
    info = _running_project()
    prefix = info.alias_prefix if info is not None else None
    return alias if prefix is None else prefix + alias


class _NamespacedEvent(str):
    """An event name resolved against the project branch when the flow is deployed."""

    __slots__ = ()


def namespaced_event_name(name: str) -> str:
    """The event ``name`` of this project branch: ``<project>.<branch>.<name>`` (Metaflow's name).

    Inside a running project flow it is resolved at once (for ``events.publish``); in
    ``@trigger(event=namespaced_event_name("ready"))`` it is resolved when the flow is
    deployed, against the branch it is deployed on.
    """
    if not isinstance(name, str) or not name.strip():
        raise FlowDefinitionError(f"namespaced_event_name({name!r}): give an event name such as 'ratings.ready'")
    info = _running_project()
    if info is not None:
        return f"{info.project_name}.{info.branch_name}.{name.strip()}"
    return _NamespacedEvent(name.strip())


def resolve_event_name(name: str, info: ProjectInfo | None) -> str:
    """An event name of ``@trigger`` as deployed on ``info``'s branch."""
    if isinstance(name, _NamespacedEvent):
        if info is None:
            raise FlowDefinitionError(f"@trigger(event=namespaced_event_name({str(name)!r})) needs @project on the flow")
        return f"{info.project_name}.{info.branch_name}.{name}"
    return str(name)
