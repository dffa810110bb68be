"""Estimates with intervals, recognised in artifacts and drawn as a forest plot (inline SVG).

The content toolkit's results carry intervals in a few shapes, all recognised here:

- A/B tests (:mod:`reelflow.content.experiments`: ``compare``, ``ratio_compare``,
  ``cuped``): a DataFrame with ``difference``, ``ci_lower``, ``ci_upper`` per
  ``metric`` (the reference line is 0: no effect);
- off-policy evaluation (:mod:`reelflow.content.ope`): ``estimate_intervals`` as
  ``{estimator: {"mean", "95.0% CI (lower)", "95.0% CI (upper)"}}`` and the
  interval frame of ``summarize_off_policy_estimates`` (one row per estimator);
- any frame with ``estimate``/``mean``/``value`` and ``lower``/``upper`` columns.

A preview gets ``"intervals"`` (plain numbers and labels); :func:`forest_svg` draws
them with every label escaped.
"""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = ["intervals_of", "forest_svg", "MAX_INTERVALS"]

MAX_INTERVALS = 40

_EST = ("difference", "estimate", "mean", "value", "estimated_policy_value")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _bounds(cols: list[str]) -> tuple[str, str] | None:
    low = {c.lower(): c for c in cols}
    for lo, hi in (("ci_lower", "ci_upper"), ("lower", "upper"), ("lo", "hi")):
        if lo in low and hi in low:
            return low[lo], low[hi]
    los = [c for c in cols if c.lower().endswith("ci (lower)")]
    his = [c for c in cols if c.lower().endswith("ci (upper)")]
    if len(los) == 1 and len(his) == 1:
        return los[0], his[0]
    return None


def _build(rows: list[tuple[str, dict[str, Any]]], cols: list[str], title: str) -> dict[str, Any] | None:
    b = _bounds(cols)
    est = next((c for c in cols if c.lower() in _EST), None)
    if b is None or est is None:
        return None
    out: dict[str, Any] = {"labels": [], "est": [], "lo": [], "hi": [], "estimate": est,
                           "level": b[0].split("%")[0] + "%" if "%" in b[0] else None,
                           "ref": 0.0 if est.lower() == "difference" else None, "title": title}
    for label, r in rows[:MAX_INTERVALS]:
        e, lo, hi = _num(r.get(est)), _num(r.get(b[0])), _num(r.get(b[1]))
        if e is None or lo is None or hi is None:
            continue
        out["labels"].append(label[:80])
        out["est"].append(e)
        out["lo"].append(min(lo, hi))
        out["hi"].append(max(lo, hi))
    return out if out["labels"] else None


def intervals_of(obj: Any) -> dict[str, Any] | None:
    """The estimates and intervals in ``obj`` (a result frame or dict of the content toolkit), or None."""
    mod = type(obj).__module__.split(".")[0]
    if mod == "pandas":
        import pandas as pd

        if not isinstance(obj, pd.DataFrame) or obj.empty or len(obj.columns) > 60:
            return None
        cols = [str(c) for c in obj.columns]
        head = obj.iloc[:MAX_INTERVALS]
        labels = ([str(v) for v in head["metric"]] if "metric" in cols
                  else [str(i) for i in head.index])
        rows = [(lab, dict(zip(cols, vals))) for lab, vals in zip(labels, head.itertuples(index=False, name=None))]
        title = "A/B test: difference, treatment - control" if "ci_lower" in cols and "difference" in cols \
            else "estimates with intervals"
        return _build(rows, cols, title)
    if isinstance(obj, dict) and obj and len(obj) <= MAX_INTERVALS and all(isinstance(v, dict) for v in obj.values()):
        cols = sorted({str(k) for v in obj.values() for k in v})
        rows = [(str(k), {str(a): b for a, b in v.items()}) for k, v in obj.items()]
        return _build(rows, cols, "policy value estimates (off-policy evaluation)")
    return None


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def forest_svg(iv: dict[str, Any]) -> str:
    """A forest plot: one row per label, the estimate as a dot and its interval as a bar."""
    e = html.escape
    labels, est, lo, hi = iv["labels"], iv["est"], iv["lo"], iv["hi"]
    ref = iv.get("ref")
    xs = [*lo, *hi] + ([ref] if ref is not None else [])
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 1.0, x1 + 1.0
    pad = (x1 - x0) * 0.05
    x0, x1 = x0 - pad, x1 + pad
    left, width, row, top = 170, 360, 24, 28
    height = top + row * len(labels) + 30

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * width

    parts = [f'<svg class="rf-forest" xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" '
             f'height="{height}" role="img" aria-label="{e(iv.get("title") or "intervals")}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="16" font-weight="600">{e(iv.get("title") or "")}'
             f'{" (" + e(iv["level"]) + " intervals)" if iv.get("level") else ""}</text>']
    base = top + row * len(labels)
    if ref is not None:
        parts.append(f'<line class="rf-ref" x1="{sx(ref):.1f}" x2="{sx(ref):.1f}" y1="{top - 4}" y2="{base}" '
                     'stroke="#8c959f" stroke-dasharray="4 3"/>')
    for k in range(5):
        v = x0 + (x1 - x0) * k / 4
        parts.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{base}" y2="{base + 4}" stroke="#57606a"/>'
                     f'<text x="{sx(v):.1f}" y="{base + 16}" text-anchor="middle" fill="#57606a">{_fmt(v)}</text>')
    parts.append(f'<line x1="{left}" x2="{left + width}" y1="{base}" y2="{base}" stroke="#57606a"/>')
    for i, lab in enumerate(labels):
        y = top + row * i + row / 2
        excl = ref is not None and (lo[i] > ref or hi[i] < ref)  # the interval excludes "no effect"
        colour = "#cf222e" if excl and est[i] < ref else "#2da44e" if excl else "#0969da"
        parts.append(
            f'<g class="rf-interval" data-label="{e(lab)}"><title>{e(lab)}: {_fmt(est[i])} '
            f'[{_fmt(lo[i])}, {_fmt(hi[i])}]</title>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{e(lab)}</text>'
            f'<line x1="{sx(lo[i]):.1f}" x2="{sx(hi[i]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="2"/><circle cx="{sx(est[i]):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
            f'<text x="{left + width + 6}" y="{y + 4:.1f}" fill="#57606a">{_fmt(est[i])}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
