"""``@pypi`` / ``@conda`` / ``@pypi_base`` / ``@conda_base``: accepted and ignored (Metaflow's names).

reelflow runs every step in the Python environment that runs the flow, which is what
Metaflow's local mode does when the environment is already there. Flows written with
these decorators run unchanged; the run prints one warning naming the steps, so nobody
believes a package was installed for them.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from ..errors import FlowDefinitionError
from ._decorators import DECORATORS, StepDecorator, _make, get_decorators

__all__ = ["pypi", "conda", "pypi_base", "conda_base", "environment_warning"]

T = TypeVar("T", bound=type)
_ATTR = "_reelflow_env_bases"


class _Pypi(StepDecorator):
    name = "pypi"
    defaults: dict[str, Any] = {"packages": {}, "python": None, "disabled": None}

    def validate(self) -> None:
        if not isinstance(self.attributes["packages"], dict):
            raise FlowDefinitionError(f"@{self.name}(packages=...) takes a dict of package names to versions, "
                                      "e.g. {'pandas': '2.2.2'}")


class _Conda(_Pypi):
    name = "conda"
    defaults: dict[str, Any] = {"packages": {}, "libraries": {}, "python": None, "disabled": None}


DECORATORS.update({"pypi": _Pypi, "conda": _Conda})
pypi = _make(_Pypi)
conda = _make(_Conda)


def _base(cls_: type[StepDecorator]) -> Any:
    def deco(flow_cls: Any = None, **attributes: Any) -> Any:
        spec = cls_(**attributes)

        def attach(c: T) -> T:
            from ._spec import FlowSpec

            if not (isinstance(c, type) and issubclass(c, FlowSpec)):
                raise FlowDefinitionError(f"@{cls_.name}_base decorates a FlowSpec subclass")
            setattr(c, _ATTR, {**getattr(c, _ATTR, {}), cls_.name: spec})
            return c

        return attach(flow_cls) if flow_cls is not None else attach

    deco.__name__ = f"{cls_.name}_base"
    deco.__doc__ = f"Flow decorator @{cls_.name}_base: accepted and ignored (steps run in this Python environment)."
    return deco


pypi_base = _base(_Pypi)
conda_base = _base(_Conda)


def environment_warning(flow_cls: type, steps: Any, requested: str | None = None) -> str | None:
    """The one warning line for a flow that asks for @pypi/@conda environments (None if it does not)."""
    names = sorted(f"@{n}_base" for n in getattr(flow_cls, _ATTR, {}))
    used = [s for s in steps if {"pypi", "conda"} & set(get_decorators(getattr(flow_cls, s, None)))]
    if used:
        names.append(f"@pypi/@conda on {', '.join(used)}")
    if requested:
        names.insert(0, f"--environment={requested}")
    if not names:
        return None
    return (f"warning: {'; '.join(names)} ignored: reelflow runs every step in this Python environment "
            f"({sys.executable}); install the packages there")
