"""``FlowSpec``: the base class of every flow.

Steps are methods decorated with ``@step``; ``self.next(...)`` draws the graph;
anything assigned to ``self`` becomes a versioned artifact. Reading an artifact
that an earlier step set loads it lazily from the store; an artifact a step
never touches is carried forward by reference without being loaded.
"""

from __future__ import annotations

import os
import reprlib
from collections import namedtuple
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MergeArtifactsError, ParameterDefinitionError, ParameterError, TransitionError
from ._artifacts import ArtifactScope, Inputs, foreach_value
from ._config import Config, ConfigSlot
from ._graph import RESERVED, FlowGraph
from ._parameters import Parameter

if TYPE_CHECKING:
    from ..store import ArtifactRef

__all__ = ["FlowSpec", "TaskState", "ForeachFrame"]


# One level of ``self._foreach_stack``, with Metaflow's fields (``index`` shadows tuple.index, as there).
ForeachFrame = namedtuple("ForeachFrame", ["step", "var", "num_splits", "index", "value"])


@dataclass
class TaskState:
    """What the runtime hands a flow instance for one task (never set by users)."""

    scope: ArtifactScope
    step_name: str
    params: frozenset[str]
    foreach_frames: list[dict[str, Any]] = field(default_factory=list)
    inputs: Inputs | None = None
    transition: dict[str, Any] | None = None
    loaded: dict[str, int] = field(default_factory=dict)  # name -> id() of the loaded object


def _param_descriptor_get(p: Parameter, instance: Any) -> Any:
    state: TaskState | None = instance.__dict__.get("_state")
    if state is None:
        raise AttributeError(f"parameter {p.name!r} has a value only inside a running step")
    return state.scope.load(p.attr_name)


class _ParamSlot:
    """Class attribute that exposes a parameter's value (read-only) inside steps."""

    def __init__(self, param: Parameter) -> None:
        self.param = param

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self.param
        return _param_descriptor_get(self.param, instance)

    def __set__(self, instance: Any, value: Any) -> None:
        raise ParameterError(
            f"parameter {self.param.name!r} is read-only inside steps; store a changed value under another name"
        )


class FlowSpec:
    """Base class of a flow. Subclass it, add ``@step`` methods ``start`` … ``end``.

    Constructing the flow in its own script (``if __name__ == "__main__": MyFlow()``)
    runs the command line (``python flow.py run``); constructing it anywhere else
    has no side effects.

    Examples
    --------
    >>> from reelflow import FlowSpec, step
    >>> class HelloFlow(FlowSpec):
    ...     @step
    ...     def start(self):
    ...         self.greeting = "hello"
    ...         self.next(self.end)
    ...     @step
    ...     def end(self):
    ...         print(self.greeting)
    """

    _graph_cache: FlowGraph | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._graph_cache = None
        for attr, value in list(vars(cls).items()):
            if isinstance(value, Parameter):
                value.attr_name = attr
                setattr(cls, attr, _ParamSlot(value))
            elif isinstance(value, Config):
                value.attr_name = attr
                setattr(cls, attr, ConfigSlot(value))

    def __init__(self, use_cli: bool = True) -> None:
        if use_cli and _is_script_entry(type(self)):
            from ..runtime._cli import run_cli

            run_cli(type(self))

    # -- class-level introspection ----------------------------------------------
    @classmethod
    def graph(cls) -> FlowGraph:
        """The checked graph of this flow (raises FlowDefinitionError when malformed)."""
        g = cls.__dict__.get("_graph_cache")
        if g is None:
            g = FlowGraph(cls)
            cls._check_parameters(g)
            cls._graph_cache = g
        return g

    @classmethod
    def parameters(cls) -> dict[str, Parameter]:
        """The flow's parameters by attribute name."""
        out: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, _ParamSlot):
                    out[attr] = value.param
        return out

    @classmethod
    def _flow_configs(cls) -> dict[str, Config]:
        """The flow's configs (``Config``) by attribute name."""
        out: dict[str, Config] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, ConfigSlot):
                    out[attr] = value.config
        return out

    @classmethod
    def _check_parameters(cls, graph: FlowGraph) -> None:
        from ..runtime._options import reserved_parameter_names

        cli_names = reserved_parameter_names()
        seen: dict[str, str] = {}
        for attr, p in cls.parameters().items():
            p.check_definition()
            for n in {attr, p.name, p.name.replace("-", "_")}:
                if n in graph:
                    raise ParameterError(f"parameter {p.name!r} has the same name as step {n!r}; rename one of them")
                if n in RESERVED:
                    raise ParameterDefinitionError(
                        f"parameter {p.name!r} uses a reserved name (a FlowSpec attribute); choose another name"
                    )
                if n in cli_names:
                    raise ParameterDefinitionError(
                        f"parameter {p.name!r} uses a reserved name: the flow command line has an option "
                        f"{n!r}; reserved names are {', '.join(sorted(cli_names))}; rename the parameter"
                    )
            if p.name in seen:
                raise ParameterError(f"parameters {seen[p.name]!r} and {attr!r} share the name {p.name!r}")
            seen[p.name] = attr

    @property
    def name(self) -> str:
        """The flow's name (its class name)."""
        return type(self).__name__

    @property
    def script_name(self) -> str:
        return os.path.basename(sys.modules[type(self).__module__].__file__ or "")

    # -- artifacts -------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: i.e. for artifacts of earlier steps.
        if name.startswith("__") or name == "_state":
            raise AttributeError(name)
        state: TaskState | None = self.__dict__.get("_state")
        if state is None or name not in state.scope:
            where = f" in step {state.step_name!r}" if state else ""
            raise AttributeError(f"flow {type(self).__name__} has no attribute or artifact {name!r}{where}")
        value = state.scope.load(name)
        self.__dict__[name] = value
        state.loaded[name] = id(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in RESERVED and not name.startswith("_"):
            raise AttributeError(f"self.{name} is reserved by reelflow; store your value under another name")
        super().__setattr__(name, value)

    # -- foreach ----------------------------------------------------------------
    def _state_or_raise(self, what: str) -> TaskState:
        state = self.__dict__.get("_state")
        if state is None:
            raise AttributeError(f"{what} is only available inside a running step")
        return state

    @property
    def index(self) -> int | None:
        """Index of this task in the innermost foreach (None outside a foreach)."""
        frames = self._state_or_raise("self.index").foreach_frames
        return frames[-1]["index"] if frames else None

    @property
    def input(self) -> Any:
        """The item of the innermost foreach that this task works on."""
        state = self._state_or_raise("self.input")
        if not state.foreach_frames:
            return None
        return self._frame_value(state.foreach_frames[-1])

    def _frame_value(self, frame: dict[str, Any]) -> Any:
        state = self._state_or_raise("foreach values")
        return foreach_value(state.scope.store, frame)

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` for each enclosing foreach, outermost first."""
        state = self._state_or_raise("self.foreach_stack()")
        return [(f["index"], f["num_splits"], self._frame_value(f)) for f in state.foreach_frames]

    @property
    def _foreach_stack(self) -> list[Any]:
        """Metaflow's frames: ``(step, var, num_splits, index, value)`` per enclosing foreach, outermost
        first; ``step`` is the step the foreach goes to, ``value`` the item as short text."""
        state = self._state_or_raise("self._foreach_stack")
        graph = type(self).graph()
        out = []
        for f in state.foreach_frames:
            value = self._frame_value(f)
            text = value if isinstance(value, (str, int, float, bool)) else reprlib.repr(value)
            out.append(ForeachFrame(graph[f["step"]].out_funcs[0], f["param"], f["num_splits"], f["index"],
                                    str(text)[:30]))
        return out

    # -- transitions -------------------------------------------------------------
    def next(self, *steps: Any, foreach: str | None = None, condition: str | None = None,
             num_parallel: int | None = None, **_: Any) -> None:
        """Go on to the next step(s); see the module docstring of ``reelflow.flows``."""
        state = self._state_or_raise("self.next()")
        if state.transition is not None:
            raise TransitionError(f"step {state.step_name!r} called self.next() twice; call it once, at the end")
        node = type(self).graph()[state.step_name]
        if condition is not None:
            if len(steps) != 1 or not isinstance(steps[0], dict):
                raise TransitionError(f"step {state.step_name!r}: condition= needs one dict of branches")
            value = getattr(self, condition)
            key = str(value)
            if key not in node.switch_cases:
                raise TransitionError(
                    f"step {state.step_name!r}: condition {condition!r} is {value!r}, which matches no branch; "
                    f"expected one of {', '.join(repr(k) for k in node.switch_cases)}"
                )
            state.transition = {"branch": node.switch_cases[key]}
            return
        names = [getattr(s, "__name__", None) for s in steps]
        if names != node.out_funcs:
            raise TransitionError(
                f"step {state.step_name!r} called self.next({', '.join(map(str, names))}) but its source says "
                f"{', '.join(node.out_funcs)}"
            )
        if num_parallel is not None:
            if isinstance(num_parallel, bool) or not isinstance(num_parallel, int) or num_parallel < 1:
                raise TransitionError(f"step {state.step_name!r}: num_parallel={num_parallel!r} must be a positive "
                                      "integer, the number of tasks in the gang")
            state.transition = {"num_splits": num_parallel, "parallel": True}
            return
        if foreach is not None:
            items = getattr(self, foreach)
            # Any iterable, as Metaflow: a string iterates its characters; one that cannot be
            # indexed (a set, a generator) is stored as the list of its items.
            if not (hasattr(items, "__len__") and hasattr(items, "__getitem__")) or isinstance(items, dict):
                if isinstance(items, Iterable) and not isinstance(items, dict):
                    items = list(items)
                    setattr(self, foreach, items)
                else:
                    raise TransitionError(
                        f"step {state.step_name!r}: foreach={foreach!r} needs a list-like artifact, but "
                        f"self.{foreach} is {type(items).__name__}"
                    )
            state.transition = {"foreach": foreach, "num_splits": len(items)}
            return
        state.transition = {}

    # -- joins -------------------------------------------------------------------
    def merge_artifacts(
        self, inputs: Inputs, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> None:
        """Carry artifacts of a join's inputs forward (by reference, unloaded).

        An artifact is merged when every input that has it has the same value, or
        when this join step already assigned it. Conflicting values raise
        :class:`MergeArtifactsError` naming them; resolve them by assigning
        ``self.<name>`` before calling ``merge_artifacts`` or by excluding them.
        """
        state = self._state_or_raise("merge_artifacts()")
        if state.inputs is None:
            raise MergeArtifactsError(f"step {state.step_name!r}: merge_artifacts() works only in a join step")
        if include and exclude:
            raise MergeArtifactsError("merge_artifacts(): give include= or exclude=, not both")
        include_set = set(include or ())
        exclude_set = set(exclude or ())
        candidates: dict[str, set[str]] = {}
        for view in inputs:
            for name, ref in view.__dict__["_scope"].refs.items():
                if name in state.params or name.startswith("_"):
                    continue
                candidates.setdefault(name, set()).add(ref.key)
        missing = include_set - set(candidates)
        if missing:
            raise MergeArtifactsError(
                f"step {state.step_name!r}: merge_artifacts(include=...) names {sorted(missing)} which no input has"
            )
        conflicts = []
        merged: dict[str, ArtifactRef] = {}  # applied only when nothing conflicts
        for name, keys in sorted(candidates.items()):
            if (include_set and name not in include_set) or name in exclude_set or name in self.__dict__:
                continue
            if len(keys) > 1:
                conflicts.append(name)
                continue
            for view in inputs:
                ref = view.__dict__["_scope"].refs.get(name)
                if ref is not None:
                    merged[name] = ref
                    break
        if conflicts:
            raise MergeArtifactsError(
                f"step {state.step_name!r}: artifacts {', '.join(conflicts)} differ between the inputs; assign "
                "them in the join (self.x = ...) before merge_artifacts(), or pass exclude=[...]"
            )
        state.scope.refs.update(merged)


def _is_script_entry(cls: type) -> bool:
    """True when ``cls`` was defined in the script Python is executing."""
    mod = sys.modules.get(cls.__module__)
    if cls.__module__ != "__main__" or mod is None or not getattr(mod, "__file__", None):
        return False
    argv0 = sys.argv[0] if sys.argv else ""
    try:
        return os.path.samefile(argv0, mod.__file__)  # type: ignore[arg-type]
    except OSError:
        return False

