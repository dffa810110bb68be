"""``Config`` and ``config_expr``: configuration fixed when a run starts (Metaflow 2.13+'s names).

A config is declared like a parameter, ``cfg = Config("cfg", default="cfg.json")``, and
given with ``python flow.py --config cfg other.json run`` (a file) or
``--config-value cfg '{"a": 1}'`` (the text itself). Unlike a parameter it is known
before anything else of the run, so decorators and parameter defaults may use it::

    class TrainFlow(FlowSpec):
        cfg = Config("cfg", default="cfg.json")
        alpha = Parameter("alpha", default=config_expr("cfg.alpha"))

        @retry(times=config_expr("cfg.retries"))
        @resources(cpu=cfg.resources.cpu)        # attribute access on the class attribute is deferred too
        @step
        def start(self):
            print(self.cfg.model.factors, self.cfg["model"]["factors"])

Inside steps ``self.cfg`` is a read-only :class:`ConfigValue` (attribute and item access;
assigning to it or into it raises), stored with the run as an artifact (a plain ``dict``
for the client); ``resume`` reuses the origin run's configs. The text is JSON unless the
config names a ``parser`` (a callable or ``"package.module.function"``) that turns the text
into a mapping; ``plain=True`` keeps the parser's result as it is.

How values are chosen: ``--config`` / ``--config-value`` (not both for one config), else
the ``default`` file (relative to the working directory, else to the flow file's folder;
a missing default file means no value), else ``default_value``; ``required=True`` without
a value is an error.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import FlowDefinitionError, ParameterError, ReelflowError

__all__ = ["Config", "ConfigValue", "config_expr", "config_values", "apply_configs", "is_deferred",
           "ConfigReadOnlyError", "CONFIG_ENV", "deployed_config_values"]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_APPLIED = "_reelflow_configs_applied"
CONFIG_ENV = "REELFLOW_CONFIG_VALUES"  # JSON of the configs fixed at deploy time (set by the scheduler)


class ConfigReadOnlyError(ReelflowError, AttributeError):
    """A step assigned to a config (``self.cfg = ...``)."""


class ConfigValue(dict):  # type: ignore[type-arg]
    """A read-only nested mapping with attribute access: ``cfg.model.factors == cfg["model"]["factors"]``.

    A ``dict`` too (``isinstance(cfg, dict)``, ``json.dumps(cfg)`` work); every change raises ``TypeError``.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        built = {k: _wrap(v) for k, v in data.items()}
        object.__setattr__(self, "_data", built)
        dict.__init__(self, built)

    def to_dict(self) -> dict[str, Any]:
        """A plain (mutable) copy."""
        return {k: _unwrap(v) for k, v in self._data.items()}

    def __getattr__(self, key: str) -> Any:
        if key == "_data":
            raise AttributeError(key)
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}; its keys are {', '.join(map(str, self._data))}") from None

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def __eq__(self, other: Any) -> bool:
        return dict(self._data) == (dict(other) if isinstance(other, Mapping) else other)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._data)

    def __dir__(self) -> list[str]:
        return [k for k in self._data if isinstance(k, str)]

    def __reduce__(self) -> Any:
        return (ConfigValue, (self.to_dict(),))

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("ConfigValue is immutable; copy it with .to_dict() to change it")

    __setattr__ = __setitem__ = __delattr__ = __delitem__ = _immutable
    clear = update = setdefault = pop = popitem = copy = _immutable  # type: ignore[assignment]


def _wrap(v: Any) -> Any:
    if isinstance(v, Mapping) and not isinstance(v, ConfigValue):
        return ConfigValue(v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _unwrap(v: Any) -> Any:
    if isinstance(v, ConfigValue):
        return v.to_dict()
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    return v


class _Deferred:
    """An expression over the flow's configs, evaluated when the run's configs are known."""

    _reelflow_deferred = True

    def __init__(self, expr: str, scope: dict[str, Any] | None = None, access: tuple[Any, ...] = ()) -> None:
        self._expr = expr
        self._scope = scope
        self._access = access

    def __getattr__(self, name: str) -> _Deferred:
        if name.startswith("__") or not _ID.match(self._expr):
            raise AttributeError(name)
        return _Deferred(self._expr, self._scope, (*self._access, name))

    def __getitem__(self, key: Any) -> _Deferred:
        if not _ID.match(self._expr):
            raise KeyError(key)
        return _Deferred(self._expr, self._scope, (*self._access, ("item", key)))

    def text(self) -> str:
        out = self._expr
        for a in self._access:
            out += f"[{a[1]!r}]" if isinstance(a, tuple) else f".{a}"
        return out

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        try:
            value = eval(self._expr, dict(self._scope or {}), dict(values))  # noqa: S307 - the flow author's code
            for a in self._access:
                value = value[a[1]] if isinstance(a, tuple) else getattr(value, a)
            return value
        except Exception as exc:
            raise FlowDefinitionError(
                f"config expression {self.text()!r} failed: {type(exc).__name__}: {exc}; the flow's configs are "
                f"{', '.join(values) or 'none'} (use a Config's name, e.g. config_expr('cfg.a.b'))"
            ) from None

    def __repr__(self) -> str:
        return f"config_expr({self.text()!r})"


def is_deferred(v: Any) -> bool:
    return isinstance(v, _Deferred)


def config_expr(expr: str) -> Any:
    """An expression over the flow's configs for decorator arguments and parameter defaults:
    ``@retry(times=config_expr("cfg.retries"))``; names are Config names, the defining module's
    globals are visible."""
    if not isinstance(expr, str) or not expr.strip():
        raise FlowDefinitionError(f"config_expr({expr!r}): give an expression such as 'cfg.a.b'")
    frame = inspect.currentframe()
    scope = frame.f_back.f_globals if frame is not None and frame.f_back is not None else {}
    return _Deferred(expr.strip(), scope)


_NO_DEFAULT = object()


class Config:
    """A configuration of the flow, fixed when the run starts (see the module docstring).

    Parameters
    ----------
    name : the name on the command line (``--config NAME FILE``) and in ``config_expr``.
    default : a file path (or a callable of a ParameterContext returning one) read when no value is given.
    default_value : the value itself (a dict, or text for the parser / JSON) when no file is given.
    help : shown by ``python flow.py --help``.
    required : refuse to run without a value.
    parser : a callable (or ``"package.module.function"``) turning the text into a mapping.
    plain : keep the parsed value as it is instead of a read-only ConfigValue.
    """

    def __init__(self, name: str, default: Any = None, default_value: Any = None, *, help: str | None = None,  # noqa: A002
                 required: bool | None = None, parser: str | Callable[[str], Any] | None = None,
                 plain: bool = False) -> None:
        if default is not None and default_value is not None:
            raise FlowDefinitionError(f"Config {name!r}: give default (a file) or default_value, not both")
        if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
            raise FlowDefinitionError(f"Config name {name!r} must be an identifier such as 'cfg'")
        self.name = name
        self.default = default
        self.default_value = default_value
        self.help = help
        self.required = bool(required)
        self.parser = parser
        self.plain = plain
        self.attr_name = ""

    # In the class body, ``cfg.a.b`` and ``cfg["a"]`` are deferred expressions (for decorators).
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(_Deferred(self.name), name)

    def __getitem__(self, key: Any) -> Any:
        return _Deferred(self.name)[key]

    def __repr__(self) -> str:
        return f"Config({self.name!r})"

    # -- loading -------------------------------------------------------------------------
    def _parse(self, text: str, source: str) -> Any:
        parser = self.parser
        if parser is not None:
            if isinstance(parser, str):
                mod, _, fn = parser.rpartition(".")
                try:
                    parser = getattr(importlib.import_module(mod), fn)
                except (ImportError, AttributeError, ValueError):
                    raise ParameterError(f"config {self.name!r}: parser {self.parser!r} cannot be imported; "
                                         "give a callable or 'package.module.function'") from None
            try:
                value = parser(text)  # type: ignore[operator]
            except Exception as exc:
                raise ParameterError(f"config {self.name!r}: the parser failed on {source}: "
                                     f"{type(exc).__name__}: {exc}") from None
            if not self.plain and not isinstance(value, Mapping):
                raise ParameterError(f"config {self.name!r}: the parser returned {type(value).__name__}, not a "
                                     "mapping; return a dict (or declare plain=True)")
            return value
        if self.plain:
            return text
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ParameterError(f"config {self.name!r}: {source} is not valid JSON ({exc}); give a JSON object, "
                                 "or declare parser= for another format") from None
        if not isinstance(value, Mapping):
            raise ParameterError(f"config {self.name!r}: {source} is JSON {type(value).__name__}, not an object; "
                                 'a config is an object such as {"a": 1}')
        return value

    def _read(self, path: str, base: Path | None, *, default: bool) -> str | None:
        p = Path(path).expanduser()
        candidates = [p] if p.is_absolute() or base is None else [p, base / p]
        for c in candidates:
            if c.is_file():
                try:
                    return c.read_text()
                except OSError as exc:
                    raise ParameterError(f"config {self.name!r}: cannot read {str(c)!r}: {exc}") from None
        if default:
            return None
        raise ParameterError(f"config {self.name!r}: file {path!r} does not exist; pass an existing file to "
                             f"--config {self.name} FILE")

    def load(self, *, file: str | None, text: str | None, ctx: Any, base: Path | None) -> Any:
        if file is not None and text is not None:
            raise ParameterError(f"config {self.name!r}: give --config or --config-value, not both")
        if file is not None:
            return self._parse(self._read(file, base, default=False) or "", f"file {file!r}")
        if text is not None:
            return self._parse(text, "--config-value")
        value: Any = None
        if self.default is not None:
            path = self.default(ctx) if callable(self.default) else self.default
            found = self._read(str(path), base, default=True)
            if found is not None:
                value = self._parse(found, f"default file {str(path)!r}")
        elif self.default_value is not None:
            d = self.default_value(ctx) if callable(self.default_value) else self.default_value
            value = self._parse(d, "default_value") if isinstance(d, str) else d
        if value is None and self.required:
            raise ParameterError(f"config {self.name!r} is required; pass --config {self.name} FILE or "
                                 f"--config-value {self.name} JSON")
        return value


def config_values(flow_cls: Any, files: Mapping[str, str] | None = None, texts: Mapping[str, str] | None = None,
                  *, user: str = "") -> dict[str, Any]:
    """The run's config values by attribute name, from ``--config`` files, ``--config-value`` texts and defaults."""
    from ._parameters import ParameterContext

    configs = flow_cls._flow_configs()
    by_name = {c.name: attr for attr, c in configs.items()}
    for given in (files or {}, texts or {}):
        for n in given:
            if n not in by_name:
                raise ParameterError(f"flow {flow_cls.__name__} has no config {n!r}; its configs are "
                                     f"{', '.join(sorted(by_name)) or 'none'}")
    module = sys.modules.get(flow_cls.__module__)
    file = getattr(module, "__file__", None)
    base = Path(file).parent if file else None
    out = {}
    for attr, c in configs.items():
        ctx = ParameterContext(flow_cls.__name__, user, c.name)
        out[attr] = c.load(file=(files or {}).get(c.name), text=(texts or {}).get(c.name), ctx=ctx, base=base)
    return out


def deployed_config_values(flow_cls: Any) -> dict[str, Any] | None:
    """The configs a deployment fixed when it was deployed (None outside a deployed run)."""
    import os

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        return None
    values = json.loads(raw)
    declared = flow_cls._flow_configs()
    return {attr: values.get(attr) for attr in declared}


def _resolve(v: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(v, _Deferred):
        return v.evaluate(env)
    if isinstance(v, dict):
        return {k: _resolve(x, env) for k, x in v.items()}
    if isinstance(v, list):
        return [_resolve(x, env) for x in v]
    return v


def has_deferred(v: Any) -> bool:
    if isinstance(v, _Deferred):
        return True
    if isinstance(v, dict):
        return any(has_deferred(x) for x in v.values())
    if isinstance(v, list):
        return any(has_deferred(x) for x in v)
    return False


def apply_configs(flow_cls: Any, values: Mapping[str, Any]) -> None:
    """Fix ``flow_cls``'s config-dependent settings for a run with config ``values`` (by attribute).

    Runs the flow's ``FlowMutator``s, then evaluates every ``config_expr`` / ``cfg.x`` in step
    decorator arguments and parameter defaults (then checks the decorators as if written
    with those values). Cheap when the class already has these values.
    """
    if flow_cls.__dict__.get(_APPLIED) == values:
        return
    configs = flow_cls._flow_configs()
    env = {c.name: (v if v is None or c.plain else ConfigValue(v)) for attr, c in configs.items()
           for v in [values.get(attr)]}
    from ._mutators import run_mutators

    run_mutators(flow_cls, env)  # FlowMutators see the configs and change the step decorators
    for node in flow_cls.graph():
        for deco in node.decorators.values():
            raw = deco.__dict__.setdefault("_raw_attributes", dict(deco.attributes))
            if any(has_deferred(v) for v in raw.values()):
                deco.attributes = {k: _resolve(v, env) for k, v in raw.items()}
                try:
                    deco.validate()
                except FlowDefinitionError as exc:
                    raise FlowDefinitionError(f"step {node.name!r}: {exc} (from the flow's configs)") from None
    for p in flow_cls.parameters().values():
        raw_default = p.__dict__.setdefault("_raw_default", p.default)
        if has_deferred(raw_default):
            p.default = _resolve(raw_default, env)
    setattr(flow_cls, _APPLIED, dict(values))


class ConfigSlot:
    """Class attribute that exposes a config's value (read-only) inside steps."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self.config
        state = instance.__dict__.get("_state")
        if state is None:
            raise AttributeError(f"config {self.config.name!r} has a value only inside a running step")
        value = state.scope.load(self.config.attr_name)
        return value if value is None or self.config.plain else ConfigValue(value)

    def __set__(self, instance: Any, value: Any) -> None:
        raise ConfigReadOnlyError(f"config {self.config.name!r} is read-only: configs are fixed when the run starts; "
                                  "store a changed value under another name")
