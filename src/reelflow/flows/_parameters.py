"""Flow parameters: ``Parameter``, ``JSONType`` and ``IncludeFile``.

Declared as class attributes of a flow; their values are validated before the
run starts and are read-only artifacts (``self.alpha``) in every step.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError

__all__ = ["Parameter", "JSONType", "IncludeFile", "ParameterContext"]


class _JSONType:
    """Marker type: the parameter's value is parsed from JSON text."""

    name = "JSON"

    def __repr__(self) -> str:
        return "JSONType"


JSONType = _JSONType()

_MISSING = object()
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _log(*args: Any, **kwargs: Any) -> None:
    print(*args, file=sys.stderr)


@dataclass(frozen=True)
class ParameterContext:
    """Passed to a callable default: ``default=lambda ctx: ctx.user_name``.

    Metaflow's fields: ``flow_name``, ``user_name``, ``parameter_name``, ``logger``
    (prints a line), ``ds_type`` (``"local"``) and ``configs`` (the flow's configs, if any).
    """

    flow_name: str
    user_name: str
    parameter_name: str
    logger: Callable[..., None] = _log
    ds_type: str = "local"
    configs: Any = None


class Parameter:
    """A value given at run time: ``alpha = Parameter("alpha", default=0.5, help=...)``.

    Parameters
    ----------
    name : the option name on the command line (``--name``) and in ``Runner.run``.
    default : a value, or a callable taking a :class:`ParameterContext` (or nothing).
    type : ``str``, ``int``, ``float``, ``bool`` or ``JSONType``; inferred from the
        default when omitted.
    help : shown by ``python flow.py run --help``.
    required : when True the run refuses to start without a value.
    separator : for a ``str`` parameter, split a non-empty value on it: the step sees a list
        (``Parameter("tags", default="a,b", separator=",")`` gives ``["a", "b"]``).
    """

    IS_FILE = False

    def __init__(
        self,
        name: str,
        *,
        default: Any = _MISSING,
        type: Any = None,  # noqa: A002 - Metaflow's name
        help: str | None = None,  # noqa: A002
        required: bool | None = False,
        show_default: bool | None = True,
        separator: str | None = None,
    ) -> None:
        self.name = name
        self.default = default
        self.type = type
        self.help = help
        self.required = bool(required)
        self.show_default = show_default is not False
        self.separator = separator

    # The attribute name it is bound to in the class (set by FlowSpec).
    attr_name: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def value_type(self) -> Any:
        if self.type is not None:
            return self.type
        if self.has_default and not callable(self.default) and self.default is not None:
            d = self.default
            if isinstance(d, bool):
                return bool
            if isinstance(d, (int, float, str)):
                return type(d)
            return JSONType
        return str

    def type_name(self) -> str:
        t = self.value_type()
        return "JSON" if t is JSONType else getattr(t, "__name__", str(t))

    def check_definition(self) -> None:
        t = self.value_type()
        if t not in (str, int, float, bool) and t is not JSONType:
            raise ParameterError(
                f"parameter {self.name!r}: type={t!r} is not supported; use str, int, float, bool or JSONType"
            )
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ParameterError(f"parameter name {self.name!r} must be an identifier such as 'alpha'")
        if self.separator is not None and (t is not str or not isinstance(self.separator, str) or not self.separator):
            raise ParameterError(
                f"parameter {self.name!r}: separator={self.separator!r} works only for a str parameter "
                "and must be a non-empty string such as ','"
            )

    def convert(self, value: Any) -> Any:
        """Turn a command-line string (or a Python value from ``Runner``) into the typed value."""
        t = self.value_type()
        try:
            if t is JSONType:
                return json.loads(value) if isinstance(value, (str, bytes)) else value
            if t is bool:
                if isinstance(value, bool):
                    return value
                s = str(value).strip().lower()
                if s in _TRUE:
                    return True
                if s in _FALSE:
                    return False
                raise ValueError("expected true or false")
            if t is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError("expected an integer")
                return int(value)
            if t is float:
                if isinstance(value, bool):
                    raise ValueError("expected a number")
                return float(value)
            return value if isinstance(value, str) else str(value)
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"parameter {self.name!r}: {value!r} is not a valid {self.type_name()} ({exc}); "
                f"pass e.g. --{self.name} {self._example()}"
            ) from None

    def _example(self) -> str:
        return {int: "3", float: "0.5", bool: "true", str: "text"}.get(self.value_type(), "'{\"a\": 1}'")

    def resolve_default(self, ctx: ParameterContext) -> Any:
        if not self.has_default:
            return None
        d = self.default
        if callable(d):
            try:
                nargs = len(inspect.signature(d).parameters)
            except (TypeError, ValueError):
                nargs = 1
            d = d(ctx) if nargs else d()
        return d if d is None else self.convert(d)

    def load(self, raw: Any, ctx: ParameterContext) -> Any:
        """The value a run gets: converted ``raw``, or the default, or an error when required."""
        if raw is None:
            if self.required and not self.has_default:
                raise ParameterError(
                    f"parameter {self.name!r} is required; pass --{self.name} VALUE"
                    + (f" ({self.help})" if self.help else "")
                )
            value = self.resolve_default(ctx)
        else:
            value = self.convert(raw)
        if self.separator and isinstance(value, str) and value:
            return value.split(self.separator)  # as Metaflow: an empty value stays ""
        return value

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, type={self.type_name()})"


class IncludeFile(Parameter):
    """A local file whose contents are snapshotted into the store when the run starts.

    The step sees the contents (``str`` when ``is_text``, else ``bytes``), not the
    path, so the run stays reproducible after the file changes.
    """

    IS_FILE = True

    def __init__(
        self,
        name: str,
        *,
        default: Any = _MISSING,
        help: str | None = None,  # noqa: A002
        required: bool | None = False,
        is_text: bool | None = True,
        encoding: str | None = "utf-8",
        parser: str | Callable[[Any], Any] | None = None,
        show_default: bool | None = True,
    ) -> None:
        super().__init__(name, default=default, type=str, help=help, required=required, show_default=show_default)
        self.is_text = is_text is not False  # None means Metaflow's default: text
        self.encoding = encoding or "utf-8"
        self.parser = parser

    def check_definition(self) -> None:
        super().check_definition()
        p = self.parser
        if p is not None and not callable(p) and not (isinstance(p, str) and "." in p.strip(".")):
            raise ParameterError(
                f"IncludeFile {self.name!r}: parser={p!r} must be a callable or a dotted name such as 'json.loads'"
            )

    def convert(self, value: Any) -> Any:
        content = self._read(value)
        if self.parser is None:
            return content
        try:
            return _parser(self.parser)(content)
        except ParameterError:
            raise
        except Exception as exc:
            raise ParameterError(
                f"IncludeFile {self.name!r}: the parser {getattr(self.parser, '__name__', self.parser)!r} failed on "
                f"{str(value)!r}: {type(exc).__name__}: {exc}; fix the file or the parser"
            ) from None

    def _read(self, value: Any) -> Any:
        path = Path(str(value)).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ParameterError(f"parameter {self.name!r}: file {str(path)!r} does not exist; pass an existing path") from None
        except OSError as exc:
            raise ParameterError(f"parameter {self.name!r}: cannot read {str(path)!r}: {exc}") from None
        if not self.is_text:
            return data
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError:
            raise ParameterError(
                f"parameter {self.name!r}: {str(path)!r} is not {self.encoding} text; "
                "declare IncludeFile(..., is_text=False) to read bytes"
            ) from None


def _parser(spec: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A parser given as a callable or as a dotted name (``"json.loads"``, ``"mypkg.mod.parse"``)."""
    if callable(spec):
        return spec
    path, _, func = spec.rsplit(".", 1)[0], ".", spec.rsplit(".", 1)[-1]
    try:
        found = getattr(importlib.import_module(path), func, None)
    except ImportError as exc:
        raise ParameterError(f"parser {spec!r}: cannot import {path!r} ({exc}); name an importable function") from None
    if not callable(found):
        raise ParameterError(f"parser {spec!r}: {path!r} has no function {func!r}")
    return found  # type: ignore[no-any-return]
