"""``FlowMutator``: change a flow's step decorators from its configs (a subset of Metaflow 2.13+'s API).

::

    class Retried(FlowMutator):
        def mutate(self, mutable_flow):
            times = dict(mutable_flow.configs)["cfg"].retries
            for name, s in mutable_flow.steps:
                s.add_decorator(retry, deco_kwargs={"times": times, "minutes_between_retries": 0})

    @Retried
    class TrainFlow(FlowSpec):
        cfg = Config("cfg", default="cfg.json")
        ...

``pre_mutate`` and ``mutate`` run when the run's configs are known (before anything runs,
and again in a worker process that starts fresh); every time from the decorators written
in the code, so running them twice never adds twice. Supported: ``mutable_flow.configs``,
``.parameters``, ``.steps``; ``mutable_step.decorator_specs``, ``.add_decorator`` (a
decorator function or a ``"name:key=value"`` spec, ``duplicates=IGNORE | OVERRIDE | ERROR``)
and ``.remove_decorator``. Adding parameters or flow decorators is not supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import FlowDefinitionError

__all__ = ["FlowMutator", "MutableFlow", "MutableStep", "run_mutators"]

_ATTR = "_reelflow_mutators"
IGNORE, ERROR, OVERRIDE = 1, 2, 3


class MutableStep:
    """One step as a mutator sees it."""

    IGNORE, ERROR, OVERRIDE = IGNORE, ERROR, OVERRIDE

    def __init__(self, node: Any) -> None:
        self._node = node
        self.name = node.name

    @property
    def decorator_specs(self) -> Iterator[tuple[str, str, list[Any], dict[str, Any]]]:
        """``(name, fully qualified name, args, kwargs)`` of each decorator of the step."""
        for name, d in list(self._node.decorators.items()):
            yield name, name, [], dict(d.attributes)

    def add_decorator(self, deco_type: Any, deco_args: list[Any] | None = None,
                      deco_kwargs: dict[str, Any] | None = None, duplicates: int = IGNORE) -> Any:
        """Add a step decorator (``retry`` or ``"retry:times=2"``); returns it, or None when ignored."""
        from ._decorators import DECORATORS, parse_with_spec

        if deco_args:
            raise FlowDefinitionError(f"step {self.name!r}: add_decorator takes keyword arguments (deco_kwargs)")
        if isinstance(deco_type, str):
            if ":" in deco_type and deco_kwargs:
                raise FlowDefinitionError(f"add_decorator({deco_type!r}): give the arguments in the spec or in "
                                          "deco_kwargs, not both")
            deco = parse_with_spec(deco_type) if ":" in deco_type or not deco_kwargs else None
            if deco is None:
                deco = _make(DECORATORS, deco_type, deco_kwargs or {})
        else:
            deco = _make(DECORATORS, getattr(deco_type, "__name__", str(deco_type)), deco_kwargs or {})
        have = self._node.decorators
        if deco.name in have:
            if duplicates == IGNORE:
                return None
            if duplicates == ERROR:
                raise FlowDefinitionError(f"step {self.name!r} already has @{deco.name}; a mutator may not add another")
        self._node.decorators = {**have, deco.name: deco}
        return deco

    def remove_decorator(self, deco_name: str, deco_args: list[Any] | None = None,
                         deco_kwargs: dict[str, Any] | None = None) -> bool:
        """Remove the step's decorator ``deco_name``; False if it has none."""
        if deco_name not in self._node.decorators:
            return False
        self._node.decorators = {k: v for k, v in self._node.decorators.items() if k != deco_name}
        return True

    def __repr__(self) -> str:
        return f"MutableStep({self.name!r})"


def _make(registry: dict[str, Any], name: str, kwargs: dict[str, Any]) -> Any:
    cls = registry.get(name)
    if cls is None:
        raise FlowDefinitionError(f"add_decorator: unknown step decorator {name!r}; choose one of "
                                  f"{', '.join(sorted(registry))}")
    return cls(**kwargs)


class MutableFlow:
    """The flow as a mutator sees it: configs, parameters and steps."""

    IGNORE, ERROR, OVERRIDE = IGNORE, ERROR, OVERRIDE

    def __init__(self, flow_cls: Any, env: dict[str, Any]) -> None:
        self._cls = flow_cls
        self._env = env

    @property
    def configs(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each config (a read-only ConfigValue)."""
        yield from self._env.items()

    @property
    def parameters(self) -> Iterator[tuple[str, Any]]:
        yield from self._cls.parameters().items()

    @property
    def steps(self) -> Iterator[tuple[str, MutableStep]]:
        for node in self._cls.graph():
            yield node.name, MutableStep(node)


class FlowMutator:
    """Derive from it and implement ``mutate`` (and/or ``pre_mutate``); put ``@YourMutator`` or
    ``@YourMutator(args)`` above the flow class (``init(*args, **kwargs)`` receives the arguments)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from ._spec import FlowSpec

        self = super().__new__(cls)
        if len(args) == 1 and not kwargs and isinstance(args[0], type) and issubclass(args[0], FlowSpec):
            self.init()
            return self(args[0])  # used bare, @YourMutator: the class stays the class
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.init(*args, **kwargs)

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Receives the decorator's arguments; override to keep them."""

    def __call__(self, flow_cls: Any) -> Any:
        from ._spec import FlowSpec

        if not (isinstance(flow_cls, type) and issubclass(flow_cls, FlowSpec)):
            raise FlowDefinitionError(f"@{type(self).__name__} decorates a FlowSpec subclass")
        setattr(flow_cls, _ATTR, [self, *flow_cls.__dict__.get(_ATTR, [])])  # the top one runs first
        return flow_cls

    def pre_mutate(self, mutable_flow: MutableFlow) -> None:
        """Called first (every mutator's pre_mutate before any mutate)."""

    def mutate(self, mutable_flow: MutableFlow) -> None:
        """Change the flow's step decorators."""


def has_mutators(flow_cls: Any) -> bool:
    return bool(getattr(flow_cls, _ATTR, None))


def run_mutators(flow_cls: Any, env: dict[str, Any]) -> None:
    """Reset every step to the decorators written in the code, then run the flow's mutators."""
    for node in flow_cls.graph():
        node.decorators = dict(node.__dict__.setdefault("_static_decorators", dict(node.decorators)))
    mutators = getattr(flow_cls, _ATTR, [])
    if not mutators:
        return
    mf = MutableFlow(flow_cls, env)
    for m in mutators:
        m.pre_mutate(mf)
    for m in mutators:
        m.mutate(mf)
