"""More of Metaflow's card components, drawn as Markdown: code, value boxes, JSON/YAML viewers, errors.

Each keeps Metaflow's constructor and turns into a ``markdown`` component, so the renderer,
the UI and stored cards need nothing new.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..errors import ReelflowError
from ._components import CardComponent

__all__ = ["PythonCode", "ValueBox", "JSONViewer", "YAMLViewer", "Error"]


def _fence(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.replace('```', '` ` `')}\n```"


class _AsMarkdown(CardComponent, ABC):
    type = "markdown"

    @abstractmethod
    def text(self) -> str:
        """The component as Markdown."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "markdown", "text": self.text()}


class PythonCode(_AsMarkdown):
    """Python source shown as code: ``PythonCode(code_string="x = 1")`` or ``PythonCode(my_function)``."""

    def __init__(self, code_func: Callable[..., Any] | None = None, code_string: str | None = None) -> None:
        if (code_func is None) == (code_string is None):
            raise ReelflowError("PythonCode takes code_func= (a function) or code_string= (its source), one of them")
        if code_func is not None:
            try:
                code_string = textwrap.dedent(inspect.getsource(code_func))
            except (OSError, TypeError) as exc:
                raise ReelflowError(f"PythonCode: cannot read the source of {code_func!r} ({exc})") from None
        self.code = str(code_string)

    def text(self) -> str:
        return _fence(self.code.rstrip("\n"), "python")


class ValueBox(_AsMarkdown):
    """A headline number: ``ValueBox(title="NDCG@10", value=0.41, subtitle="champion")``."""

    def __init__(self, title: str | None = None, value: str | int | float = "", subtitle: str | None = None,
                 theme: str | None = None, change_indicator: str | None = None) -> None:
        self.title, self.value, self.subtitle = title, value, subtitle
        self.theme, self.change_indicator = theme, change_indicator

    def update(self, value: str | int | float | None = None, subtitle: str | None = None) -> None:
        """Change the value or subtitle (then ``current.card.refresh()``)."""
        if value is not None:
            self.value = value
        if subtitle is not None:
            self.subtitle = subtitle

    def text(self) -> str:
        parts = [f"**{self.title}**"] if self.title else []
        parts.append(f"## {self.value}{' ' + self.change_indicator if self.change_indicator else ''}")
        if self.subtitle:
            parts.append(f"*{self.subtitle}*")
        return "\n\n".join(parts)


class JSONViewer(_AsMarkdown):
    """Data shown as indented JSON (values that are not JSON are shown by ``str``)."""

    def __init__(self, data: Any, collapsible: bool = True, max_height: str | None = None,
                 show_copy_button: bool = True, title: str | None = None) -> None:
        self.data, self.title = data, title

    def body(self) -> str:
        return json.dumps(self.data, indent=2, default=str, sort_keys=False)

    def text(self) -> str:
        return (f"**{self.title}**\n\n" if self.title else "") + _fence(self.body(), "json")


class YAMLViewer(JSONViewer):
    """Data shown as YAML (as JSON where PyYAML is not installed)."""

    def body(self) -> str:
        try:
            import yaml
        except ImportError:
            return super().body()
        return str(yaml.safe_dump(json.loads(super().body()), sort_keys=False)).rstrip("\n")


class Error(_AsMarkdown):
    """An exception shown with its traceback: ``Error(exc, title="Loading failed")``."""

    def __init__(self, exception: BaseException, title: str | None = None) -> None:
        self.exception, self.title = exception, title

    def text(self) -> str:
        exc = self.exception
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return f"**{self.title or 'Error'}**\n\n" + _fence(tb.rstrip("\n"))
