"""``@step`` and the step decorators: retry, catch, timeout, resources, environment.

A step decorator only records its settings on the function; the runtime reads
them. Decorators may be written with or without arguments (``@retry`` or
``@retry(times=2)``) and above or below ``@step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import FlowDefinitionError

__all__ = [
    "step",
    "StepDecorator",
    "retry",
    "catch",
    "timeout",
    "resources",
    "environment",
    "card",
    "checkpoint",
    "parallel",
    "CaughtException",
    "cache",
    "parse_with_spec",
    "retry_delay",
    "get_decorators",
    "is_step",
]

F = TypeVar("F", bound=Callable[..., Any])
_STEP_ATTR = "_reelflow_step"
_DECOS_ATTR = "_reelflow_decorators"


def step(f: F) -> F:
    """Mark a method of a :class:`~reelflow.FlowSpec` as a step of the flow."""
    if not callable(f):
        raise FlowDefinitionError("@step decorates a method: def name(self): ...")
    setattr(f, _STEP_ATTR, True)
    if not hasattr(f, _DECOS_ATTR):
        setattr(f, _DECOS_ATTR, {})
    return f


def is_step(f: Any) -> bool:
    return bool(getattr(f, _STEP_ATTR, False))


def get_decorators(f: Any) -> dict[str, StepDecorator]:
    return dict(getattr(f, _DECOS_ATTR, {}))


class StepDecorator:
    """A named set of settings attached to a step."""

    name: str = ""
    defaults: dict[str, Any] = {}

    def __init__(self, **attributes: Any) -> None:
        unknown = set(attributes) - set(self.defaults)
        if unknown:
            raise FlowDefinitionError(
                f"@{self.name} has no option {sorted(unknown)[0]!r}; its options are "
                f"{', '.join(sorted(self.defaults))}"
            )
        self.attributes = {**self.defaults, **attributes}
        from ._config import has_deferred

        if not any(has_deferred(v) for v in attributes.values()):  # else checked once the run's configs are known
            self.validate()

    def validate(self) -> None:
        """Check the attributes; raise FlowDefinitionError naming the bad one."""

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.attributes.items())
        return f"@{self.name}({args})"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.attributes.items() if isinstance(v, (int, float, str, bool, dict, type(None)))}


def _nonneg(deco: StepDecorator, *keys: str) -> None:
    for k in keys:
        v = deco.attributes[k]
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise FlowDefinitionError(f"@{deco.name}({k}={v!r}): {k} must be a number >= 0")


def _numeric_strings(deco: StepDecorator, *keys: str) -> None:
    """Metaflow's own defaults are strings ("3"): accept numbers written as text."""
    for k in keys:
        v = deco.attributes[k]
        if isinstance(v, str):
            try:
                deco.attributes[k] = int(v) if v.strip().lstrip("-").isdigit() else float(v)
            except ValueError:
                raise FlowDefinitionError(f"@{deco.name}({k}={v!r}): {k} must be a number >= 0") from None


class _Retry(StepDecorator):
    """Retry a failed task ``times`` times.

    ``minutes_between_retries`` is waited only when given explicitly: Metaflow's local
    runtime retries at once whatever its default says, and so does reelflow's.
    """

    name = "retry"
    defaults = {"times": 3, "minutes_between_retries": 2}

    def __init__(self, **attributes: Any) -> None:
        self.explicit_delay = "minutes_between_retries" in attributes
        super().__init__(**attributes)

    def validate(self) -> None:
        _numeric_strings(self, "times", "minutes_between_retries")
        _nonneg(self, "times", "minutes_between_retries")
        if not float(self.attributes["times"]).is_integer():
            raise FlowDefinitionError(f"@retry(times={self.attributes['times']!r}): times must be a whole number")

    def delay_seconds(self) -> float:
        """Seconds to wait before the next attempt (0 unless minutes_between_retries was given)."""
        return 60.0 * float(self.attributes["minutes_between_retries"]) if self.explicit_delay else 0.0


def retry_delay(deco: StepDecorator) -> float:
    """Seconds a @retry waits before the next attempt."""
    return deco.delay_seconds() if isinstance(deco, _Retry) else 0.0


class _Catch(StepDecorator):
    name = "catch"
    defaults = {"var": None, "print_exception": True}

    def validate(self) -> None:
        var = self.attributes["var"]
        if var is not None and (not isinstance(var, str) or not var.isidentifier()):
            raise FlowDefinitionError(f"@catch(var={var!r}): var must be a valid attribute name")


class CaughtException(Exception):
    """What ``@catch(var=...)`` stores when a step failed (Metaflow's ``MetaflowExceptionWrapper``).

    ``type`` is the exception's full class name (``"builtins.ValueError"``), ``exception``
    its message, ``stacktrace`` the formatted traceback; ``str()`` gives the traceback.
    """

    type: str = ""
    exception: str = ""
    stacktrace: str | None = None

    def __init__(self, exc: BaseException | None = None, *, stacktrace: str | None = None) -> None:
        super().__init__()
        if exc is not None:
            self.exception = str(exc)
            self.type = f"{type(exc).__module__}.{type(exc).__name__}"
            self.stacktrace = stacktrace

    @classmethod
    def from_text(cls, type_name: str, message: str, stacktrace: str | None) -> CaughtException:
        """Build one from recorded text (for a task whose process died before it could catch)."""
        out = cls()
        out.type, out.exception, out.stacktrace = type_name, message, stacktrace
        return out

    # Exception's own pickling ignores __dict__ set outside args: keep the attributes.
    def __reduce__(self) -> Any:
        return CaughtException, (), self.__dict__

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        self.__dict__.update(state or {})

    def __str__(self) -> str:
        return self.stacktrace or f"[no stacktrace]\n{self.type}: {self.exception}"

    def __repr__(self) -> str:
        return f"CaughtException({self.type}: {self.exception})"


class _Timeout(StepDecorator):
    name = "timeout"
    defaults = {"seconds": 0, "minutes": 0, "hours": 0}

    def validate(self) -> None:
        _nonneg(self, "seconds", "minutes", "hours")


class _Resources(StepDecorator):
    name = "resources"
    # memory in MB; custom: named resources of a cluster's nodes, e.g. {"special": 1} (Ray)
    defaults: dict[str, Any] = {"cpu": 1, "memory": 4096, "gpu": 0, "disk": None, "custom": None}

    def validate(self) -> None:
        _nonneg(self, "cpu", "memory", "gpu")
        custom = self.attributes["custom"]
        if custom is not None and (not isinstance(custom, dict) or not all(
                isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for k, v in custom.items())):
            raise FlowDefinitionError(f"@resources(custom={custom!r}): custom maps resource names to amounts "
                                      "(numbers >= 0), e.g. custom={'special': 1}")


class _Environment(StepDecorator):
    name = "environment"
    defaults: dict[str, Any] = {"vars": {}}

    def validate(self) -> None:
        v = self.attributes["vars"]
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise FlowDefinitionError("@environment(vars=...) takes a dict of environment variable names to values")
        self.attributes["vars"] = {k: str(x) for k, x in v.items()}


class _Card(StepDecorator):
    name = "card"
    defaults: dict[str, Any] = {"type": "default", "id": None, "title": None}

    def validate(self) -> None:
        if self.attributes["type"] not in ("default", "blank"):
            raise FlowDefinitionError(
                f"@card(type={self.attributes['type']!r}): type is 'default' (the step's artifacts, then what "
                "current.card.append adds) or 'blank' (only what current.card.append adds)"
            )
        cid = self.attributes["id"]
        if cid is not None and (not isinstance(cid, str) or not cid or len(cid) > 200):
            raise FlowDefinitionError(f"@card(id={cid!r}): id must be a non-empty string of at most 200 characters")


class _Checkpoint(StepDecorator):
    name = "checkpoint"
    defaults: dict[str, Any] = {"load_policy": "fresh", "temp_dir_root": None}

    def validate(self) -> None:
        policy = self.attributes["load_policy"]
        if policy not in ("fresh", "eager", "none"):
            raise FlowDefinitionError(
                f"@checkpoint(load_policy={policy!r}): load_policy is 'fresh' (this task's earlier attempts and "
                "the run it resumes), 'eager' (also earlier runs of the flow) or 'none'"
            )
        root = self.attributes["temp_dir_root"]
        if root is not None and not isinstance(root, str):
            raise FlowDefinitionError(f"@checkpoint(temp_dir_root={root!r}): temp_dir_root is a folder path (a string)")


class _Parallel(StepDecorator):
    """A gang step: ``self.next(self.step, num_parallel=N)`` starts N tasks of it together
    (``current.parallel`` tells each its ``node_index``, ``num_nodes`` and ``main_ip``)."""

    name = "parallel"
    defaults: dict[str, Any] = {}


class _Cache(StepDecorator):
    name = "cache"
    defaults: dict[str, Any] = {"enabled": True}

    def validate(self) -> None:
        if not isinstance(self.attributes["enabled"], bool):
            raise FlowDefinitionError(
                f"@cache(enabled={self.attributes['enabled']!r}): enabled is True (reuse an earlier task whose code "
                "and inputs match) or False (the step has side effects: always run it, also under --cache)"
            )


DECORATORS: dict[str, type[StepDecorator]] = {
    c.name: c for c in (_Retry, _Catch, _Timeout, _Resources, _Environment, _Card, _Checkpoint, _Cache)
}


def _make(cls: type[StepDecorator]) -> Callable[..., Any]:
    def decorator(f: Any = None, **attributes: Any) -> Any:
        def attach(func: Any) -> Any:
            if not callable(func):
                raise FlowDefinitionError(f"@{cls.name} decorates a step method")
            decos = dict(getattr(func, _DECOS_ATTR, {}))
            if cls.name in decos:
                raise FlowDefinitionError(f"@{cls.name} is applied twice to step {func.__name__!r}")
            decos[cls.name] = cls(**attributes)
            setattr(func, _DECOS_ATTR, decos)
            return func

        if f is not None:
            if attributes or not callable(f):
                raise FlowDefinitionError(f"@{cls.name} takes keyword arguments only, e.g. @{cls.name}(...)")
            return attach(f)
        return attach

    decorator.__name__ = cls.name
    decorator.__doc__ = f"Step decorator @{cls.name}; options: {', '.join(cls.defaults)}."
    return decorator


retry = _make(_Retry)
catch = _make(_Catch)
timeout = _make(_Timeout)
resources = _make(_Resources)
environment = _make(_Environment)
card = _make(_Card)  # reelflow.cards: a report per task, shown in the UI
checkpoint = _make(_Checkpoint)  # current.checkpoint: progress kept across retries and resume
parallel = _make(_Parallel)  # not in DECORATORS: --with parallel makes no sense for every step
cache = _make(_Cache)  # step caching across runs (runtime/_cache.py)


def _parse_value(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_with_spec(spec: str) -> StepDecorator:
    """Parse a ``--with`` value such as ``retry`` or ``retry:times=2,minutes_between_retries=0``."""
    name, _, rest = spec.partition(":")
    cls = DECORATORS.get(name.strip())
    if cls is None:
        raise FlowDefinitionError(
            f"--with {spec!r}: unknown decorator {name!r}; choose one of {', '.join(sorted(DECORATORS))}"
        )
    attrs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq:
            raise FlowDefinitionError(f"--with {spec!r}: write options as key=value, e.g. {name}:times=2")
        attrs[k.strip()] = _parse_value(v.strip())
    return cls(**attrs)
