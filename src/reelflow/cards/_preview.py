"""A JSON-safe, size-limited description of any value, for cards and the UI.

Nothing here renders HTML: a preview is plain data (strings are kept as strings
and escaped by whoever draws them), so hostile artifact content stays text.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib
from typing import Any

__all__ = ["preview", "to_png", "MAX_TEXT", "MAX_ROWS", "MAX_ARRAY_VALUES"]

MAX_TEXT = 2000  # characters of a string or repr shown
MAX_ROWS = 20  # rows of a table
MAX_COLS = 30
MAX_ARRAY_VALUES = 100  # an array this small is shown as values
MAX_DICT_ITEMS = 50


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _short(text: str, limit: int = MAX_TEXT) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _repr(v: Any, limit: int) -> str:
    """A shortened repr that never builds the repr of a whole large container."""
    try:
        if isinstance(v, (list, tuple)) and len(v) > 50:
            head = repr(type(v)(v[:50]))
            return _short(f"{head[:-1]}, ... ({len(v)} items){head[-1]}", limit)[0]
        if isinstance(v, (dict, set, frozenset)) and len(v) > 50:
            return f"<{type(v).__name__} of {len(v)} items>"
        return _short(repr(v), limit)[0]
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        return f"<repr failed: {type(exc).__name__}>"


def _cell(v: Any) -> Any:
    """A table cell as JSON: numbers and bools stay numbers, the rest becomes short text."""
    if v is None or isinstance(v, (bool, int, str)):
        return v if not isinstance(v, str) else _short(v, 200)[0]
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _cell(v.item())
    except ImportError:  # pragma: no cover - numpy is in every toolkit extra
        pass
    return _short(str(v), 200)[0]


def _frame(df: Any) -> dict[str, Any]:
    head = df.iloc[:MAX_ROWS, :MAX_COLS]
    return {
        "kind": "table",
        "shape": list(df.shape),
        "columns": [str(c) for c in head.columns],
        "index": [_cell(i) for i in head.index],
        "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False, name=None)],
    }


def _is_image_array(a: Any) -> bool:
    return a.ndim == 3 and a.shape[2] in (3, 4) and a.shape[0] >= 8 and a.shape[1] >= 8 and a.dtype.kind in "uf"


def preview(obj: Any, *, name: str | None = None) -> dict[str, Any]:
    """Describe ``obj`` for display: ``{"kind": ..., "type": ...}`` plus what that kind shows.

    Kinds: ``scalar`` (numbers, bools, None), ``text`` (strings and bytes), ``dict``,
    ``list``, ``table`` (DataFrames: first rows and the shape), ``array`` (numpy: shape,
    dtype and, when small, the values), ``image`` (PIL images, RGB(A) arrays, matplotlib
    figures: a PNG) and ``other`` (the type and a shortened ``repr``). Tables and dicts of
    estimates with intervals (A/B tests, off-policy evaluation) also get ``intervals``
    (see :mod:`reelflow.cards._intervals`), drawn as a forest plot.
    """
    out = _preview(obj)
    out.setdefault("type", _type_name(obj))
    if out["kind"] in ("table", "dict"):  # results with intervals (A/B tests, OPE) are drawn as a forest plot
        from ._intervals import intervals_of

        try:
            iv = intervals_of(obj)
        except Exception:  # noqa: BLE001 - a preview never fails on a value it cannot read
            iv = None
        if iv is not None:
            out["intervals"] = iv
    if name is not None:
        out["name"] = name
    return out


def _preview(obj: Any) -> dict[str, Any]:
    if obj is None or isinstance(obj, (bool, int, float)):
        return {"kind": "scalar", "value": _cell(obj)}
    if isinstance(obj, str):
        text, cut = _short(obj)
        return {"kind": "text", "value": text, "truncated": cut, "length": len(obj)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj[:MAX_TEXT])
        return {"kind": "text", "value": raw.decode("utf-8", "replace"), "truncated": len(obj) > MAX_TEXT,
                "length": len(obj), "binary": True}
    mod = type(obj).__module__.split(".")[0]
    if mod == "pandas":
        import pandas as pd

        if isinstance(obj, pd.Series):
            obj = obj.to_frame()
        if isinstance(obj, pd.DataFrame):
            return _frame(obj)
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            if _is_image_array(obj):
                return {"kind": "image", "png": base64.b64encode(to_png(obj)).decode(), "shape": list(obj.shape),
                        "dtype": str(obj.dtype)}
            d: dict[str, Any] = {"kind": "array", "shape": list(obj.shape), "dtype": str(obj.dtype)}
            if obj.size <= MAX_ARRAY_VALUES and obj.dtype.kind in "biufcUS?":
                d["values"] = _short(repr(obj.tolist()))[0]
            return d
        if isinstance(obj, np.generic):
            return {"kind": "scalar", "value": _cell(obj)}
    if mod == "PIL" or mod == "matplotlib":
        try:
            return {"kind": "image", "png": base64.b64encode(to_png(obj)).decode()}
        except (TypeError, ValueError):
            pass
    if isinstance(obj, dict):
        items = list(obj.items())[:MAX_DICT_ITEMS]
        return {"kind": "dict", "length": len(obj),
                "items": [[_repr(k, 200), _repr(v, 500)] for k, v in items]}
    if isinstance(obj, (list, tuple, set, frozenset)):
        text = _repr(obj if not isinstance(obj, (set, frozenset)) else sorted(obj, key=repr)[:51], MAX_TEXT)
        return {"kind": "list", "length": len(obj), "value": text, "truncated": len(obj) > 50 or len(text) >= MAX_TEXT}
    text = _repr(obj, MAX_TEXT)
    return {"kind": "other", "value": text, "truncated": len(text) >= MAX_TEXT}


# -- PNG -----------------------------------------------------------------------------
def to_png(obj: Any) -> bytes:
    """PNG bytes of a PIL image, a matplotlib figure, PNG bytes or a numpy array
    (H x W grey, H x W x 3 RGB or H x W x 4 RGBA; floats are read as 0..1)."""
    if isinstance(obj, (bytes, bytearray)):
        if bytes(obj[:8]) != b"\x89PNG\r\n\x1a\n":
            raise ValueError("image bytes must be a PNG file (they do not start with the PNG signature)")
        return bytes(obj)
    if hasattr(obj, "savefig"):  # a matplotlib figure
        buf = io.BytesIO()
        obj.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    if type(obj).__module__.split(".")[0] == "PIL":
        buf = io.BytesIO()
        obj.save(buf, format="PNG")
        return buf.getvalue()
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return _array_png(obj)
    raise TypeError(
        f"cannot draw a {_type_name(obj)} as an image; pass a PIL image, a numpy array, PNG bytes "
        "or a matplotlib figure"
    )


def _array_png(a: Any) -> bytes:
    import numpy as np

    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a) * 255.0, 0, 255)
    a = a.astype(np.uint8)
    if a.ndim == 2:
        colour = 0
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        colour = 2 if a.shape[2] == 3 else 6
    else:
        raise ValueError(f"an image array is H x W, H x W x 3 or H x W x 4; this one has shape {a.shape}")
    h, w = a.shape[:2]
    rows = a.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
