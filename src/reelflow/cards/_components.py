"""Card components: what ``current.card.append(...)`` takes.

Each component turns itself into plain JSON data (:meth:`CardComponent.to_dict`);
the HTML is drawn later, escaped, by :mod:`reelflow.cards._render`. A card is
therefore safe to store, to diff and to render offline.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ReelflowError
from ._preview import _cell, preview, to_png

__all__ = ["CardComponent", "Markdown", "Table", "Image", "VegaChart", "ProgressBar", "Artifact"]

MAX_TABLE_ROWS = 1000


class CardComponent:
    """Base class of card components."""

    type: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The component as JSON-safe data (``{"type": ..., ...}``). Subclasses define it; a
        Metaflow-style custom component that defines ``render()`` instead is shown through it
        (a dict with a ``type``, or text as Markdown)."""
        render = getattr(self, "render", None)
        if callable(render):
            out = render()
            if isinstance(out, str):
                return {"type": "markdown", "text": out}
            if isinstance(out, dict) and isinstance(out.get("type"), str):
                return json.loads(json.dumps(out, default=str))
        raise ReelflowError(
            f"card component {type(self).__name__} cannot be shown: define to_dict() returning "
            '{"type": "markdown", "text": ...} (or another component\'s dict), or render() returning text'
        )


class Markdown(CardComponent):
    """A block of Markdown text (headings, emphasis, code, lists, links; raw HTML is shown as text).

    Examples
    --------
    >>> Markdown("# Results\\nThe *champion* is **EASE**.").to_dict()["type"]
    'markdown'
    """

    type = "markdown"

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ReelflowError(f"Markdown takes a string, not {type(text).__name__}")
        self.text = text

    def update(self, text: str) -> None:
        """Replace the text (call ``current.card.refresh()`` to show it while the task runs)."""
        self.text = text

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text}


class Table(CardComponent):
    """A table from a pandas DataFrame or from rows (lists, or dicts keyed by column).

    Parameters
    ----------
    data : DataFrame or sequence of rows
        At most 1,000 rows are kept; the card says how many there were.
    headers : sequence of str, optional
        Column names for list rows (dict rows and DataFrames bring their own).
    """

    type = "table"

    def __init__(self, data: Any = None, headers: Sequence[str] | None = None) -> None:
        self.data: Any = [] if data is None else data
        self.headers = list(headers) if headers is not None else None
        if type(self.data).__module__.split(".")[0] != "pandas" and (
                not isinstance(self.data, Sequence) or isinstance(self.data, (str, bytes))):
            raise ReelflowError(
                f"Table takes a DataFrame or a list of rows, not {type(self.data).__name__}; e.g. "
                "Table([[1, 'a'], [2, 'b']], headers=['id', 'name'])"
            )

    def to_dict(self) -> dict[str, Any]:
        data = self.data
        if type(data).__module__.split(".")[0] == "pandas":
            import pandas as pd

            df = data.to_frame() if isinstance(data, pd.Series) else data
            head = df.iloc[:MAX_TABLE_ROWS]
            rows = [[_cell(v) for v in r] for r in head.itertuples(index=False, name=None)]
            return {"type": self.type, "columns": [str(c) for c in head.columns], "rows": rows,
                    "total_rows": int(df.shape[0])}
        rows_in = list(data)
        cols: list[Any]
        if rows_in and isinstance(rows_in[0], Mapping):
            cols = list(self.headers or dict.fromkeys(k for r in rows_in if isinstance(r, Mapping) for k in r))
            rows = [[_cell(r.get(c)) if isinstance(r, Mapping) else _cell(r) for c in cols]
                    for r in rows_in[:MAX_TABLE_ROWS]]
        else:
            rows = [[_cell(v) for v in (r if isinstance(r, (list, tuple)) else [r])] for r in rows_in[:MAX_TABLE_ROWS]]
            width = max((len(r) for r in rows), default=0)
            cols = list(self.headers or [str(i) for i in range(width)])
        return {"type": self.type, "columns": [str(c) for c in cols], "rows": rows, "total_rows": len(rows_in)}


class Image(CardComponent):
    """A picture: a PIL image, a numpy array (H x W, H x W x 3 or x 4), PNG bytes or a matplotlib figure."""

    type = "image"

    def __init__(self, src: Any, label: str | None = None) -> None:
        try:
            self._png = to_png(src)
        except (TypeError, ValueError) as exc:
            raise ReelflowError(f"Image: {exc}") from None
        self.label = label

    @classmethod
    def from_matplotlib(cls, figure: Any, label: str | None = None) -> Image:
        """The same as ``Image(figure)`` (Metaflow's spelling)."""
        return cls(figure, label=label)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "png": base64.b64encode(self._png).decode(), "label": self.label}


class VegaChart(CardComponent):
    """A chart from a Vega-Lite (or Vega) spec as a dict, or an Altair chart.

    Examples
    --------
    >>> spec = {"mark": "line", "data": {"values": [{"x": 0, "y": 1}, {"x": 1, "y": 3}]},
    ...         "encoding": {"x": {"field": "x", "type": "quantitative"},
    ...                      "y": {"field": "y", "type": "quantitative"}}}
    >>> VegaChart(spec).to_dict()["spec"]["mark"]
    'line'
    """

    type = "vega"

    def __init__(self, spec: Any) -> None:
        if hasattr(spec, "to_dict") and not isinstance(spec, Mapping):  # an Altair chart
            spec = spec.to_dict()
        if not isinstance(spec, Mapping):
            raise ReelflowError(f"VegaChart takes a Vega-Lite spec (a dict) or an Altair chart, not {type(spec).__name__}")
        try:
            self.spec = json.loads(json.dumps(spec))
        except (TypeError, ValueError) as exc:
            raise ReelflowError(f"VegaChart: the spec is not JSON data ({exc})") from None

    def update(self, spec: Any) -> None:
        """Replace the spec (then ``current.card.refresh()``)."""
        self.spec = VegaChart(spec).spec

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "spec": self.spec}


class ProgressBar(CardComponent):
    """A progress bar: ``bar = ProgressBar(max=100, label="epochs")``, then ``bar.update(n)``."""

    type = "progress"

    def __init__(self, max: float = 100, label: str | None = None, value: float = 0) -> None:  # noqa: A002
        if not isinstance(max, (int, float)) or max <= 0:
            raise ReelflowError(f"ProgressBar(max={max!r}): max must be a number > 0")
        self.max = float(max)
        self.label = label
        self.value = float(value)

    def update(self, value: float) -> None:
        """Set the current value (then ``current.card.refresh()``)."""
        self.value = float(value)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "max": self.max, "value": min(max(self.value, 0.0), self.max), "label": self.label}


class Artifact(CardComponent):
    """Any value shown as its preview: tables for DataFrames, shape and dtype for arrays,
    pictures for images, type and ``repr`` for the rest."""

    type = "artifact"

    def __init__(self, value: Any, name: str | None = None) -> None:
        self.value = value
        self.name = name

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "preview": preview(self.value, name=self.name)}

