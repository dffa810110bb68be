"""Server-side SVG: the flow graph (layered DAG), the task timeline and metric line charts.

Drawn in Python so pages need no chart library and stay fast; every label is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dag_svg", "gantt_svg", "line_chart_svg", "PALETTE", "STATUS_COLOURS"]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
STATUS_COLOURS = {"succeeded": "#2da44e", "failed": "#cf222e", "running": "#0969da", "pending": "#8c959f",
                  "not-run": "#d0d7de", "abandoned": "#bf8700"}


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _layers(graph: Mapping[str, Any]) -> dict[str, int]:
    """Longest-path layer of each step from ``start`` (steps unreachable from it go last)."""
    layer: dict[str, int] = {}
    order = list(graph)
    changed, rounds = True, 0
    if "start" in graph:
        layer["start"] = 0
    while changed and rounds <= len(order) + 1:
        changed, rounds = False, rounds + 1
        for name in order:
            if name not in layer:
                continue
            for nxt in graph[name].get("next", []):
                if nxt in graph and layer.get(nxt, -1) < layer[name] + 1:
                    layer[nxt] = layer[name] + 1
                    changed = True
    top = max(layer.values(), default=-1)
    for name in order:
        layer.setdefault(name, top + 1)
    return layer


def dag_svg(graph: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]], link: str = "#step-") -> str:
    """The flow graph as SVG, left to right; each node shows the step's status, task count and duration.

    ``steps`` maps a step name to ``{"status", "tasks", "duration"}``; a node links to
    ``link + name``.
    """
    if not graph:
        return '<p class="muted">This run recorded no graph.</p>'
    layer = _layers(graph)
    cols: dict[int, list[str]] = {}
    for name in graph:
        cols.setdefault(layer[name], []).append(name)
    w, h, gx, gy = 170, 58, 60, 22
    height = max(len(v) for v in cols.values()) * (h + gy) + gy
    width = (max(cols) + 1) * (w + gx) + gx
    pos: dict[str, tuple[float, float]] = {}
    for c, names in cols.items():
        off = (height - len(names) * (h + gy) + gy) / 2
        for i, name in enumerate(names):
            pos[name] = (gx + c * (w + gx), off + i * (h + gy))
    parts = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="flow graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8c959f"/></marker></defs>']
    for name, node in graph.items():
        x0, y0 = pos[name]
        for nxt in node.get("next", []):
            if nxt not in pos:
                continue
            x1, y1 = pos[nxt]
            sx, sy, ex, ey = x0 + w, y0 + h / 2, x1, y1 + h / 2
            mid = (sx + ex) / 2
            parts.append(f'<path class="dag-edge" d="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} '
                         f'{ex - 2:.0f},{ey:.0f}" fill="none" stroke="#8c959f" stroke-width="1.5" '
                         'marker-end="url(#arrow)"/>')
    for name, node in graph.items():
        x, y = pos[name]
        info = steps.get(name, {})
        status = str(info.get("status", "not-run"))
        colour = STATUS_COLOURS.get(status, "#d0d7de")
        n = info.get("tasks", 0)
        dur = info.get("duration")
        sub = f"{status} · {n} task{'s' if n != 1 else ''}" + (f" · {dur:.2f}s" if isinstance(dur, (int, float)) else "")
        kind = node.get("type", "")
        label = name if len(name) <= 22 else name[:21] + "…"
        parts.append(
            f'<a href="{_e(link + name)}"><g class="dag-node status-{_e(status)}" data-step="{_e(name)}" '
            f'data-status="{_e(status)}"><title>{_e(name)} ({_e(kind)}): {_e(sub)}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{w}" height="{h}" rx="8" fill="#fff" stroke="{colour}" '
            f'stroke-width="{3 if status == "failed" else 2}"/>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="8" height="{h}" rx="3" fill="{colour}"/>'
            f'<text x="{x + 16:.0f}" y="{y + 23:.0f}" font-size="14" font-weight="600" fill="#1b1f24">{_e(label)}</text>'
            f'<text x="{x + 16:.0f}" y="{y + 43:.0f}" font-size="11" fill="#57606a">{_e(sub)}</text></g></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def gantt_svg(attempts: Sequence[Mapping[str, Any]], t0: float, link: str = "") -> str:
    """A timeline of task attempts: one row per task, one bar per attempt, coloured by status.

    Each item has ``label``, ``task``, ``start``, ``end``, ``status``, ``attempt`` and ``href``.
    """
    if not attempts:
        return '<p class="muted">No task has finished yet.</p>'
    rows: dict[str, int] = {}
    for a in sorted(attempts, key=lambda a: a["start"]):
        rows.setdefault(str(a["task"]), len(rows))
    t_end = max(a["end"] for a in attempts)
    span = max(t_end - t0, 1e-3)
    row_h = 18 if len(rows) <= 60 else 8
    left, width = 190, 760
    height = len(rows) * row_h + 30
    parts = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
             f'role="img" aria-label="task timeline">']
    for i in range(6):
        x = left + width * i / 5
        parts.append(f'<line x1="{x:.0f}" y1="0" x2="{x:.0f}" y2="{height - 20}" stroke="#eaeef2"/>'
                     f'<text x="{x:.0f}" y="{height - 6}" font-size="10" fill="#57606a" text-anchor="middle">'
                     f'{span * i / 5:.2f}s</text>')
    for a in attempts:
        r = rows[str(a["task"])]
        y = r * row_h + 2
        x = left + width * max(a["start"] - t0, 0) / span
        bw = max(width * (a["end"] - a["start"]) / span, 2)
        colour = STATUS_COLOURS.get(str(a["status"]), "#8c959f")
        tip = f'{a["label"]} attempt {a["attempt"]}: {a["status"]}, {a["end"] - a["start"]:.3f}s'
        parts.append(f'<a href="{_e(a.get("href", link))}"><rect class="gantt-bar status-{_e(a["status"])}" '
                     f'x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{row_h - 4}" rx="2" fill="{colour}" '
                     f'opacity="{1 if a.get("latest", True) else 0.55}"><title>{_e(tip)}</title></rect></a>')
        if row_h >= 14:
            parts.append(f'<text x="{left - 6}" y="{y + row_h - 6}" font-size="11" text-anchor="end" '
                         f'fill="#1b1f24">{_e(a["label"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out: list[float] = []
    v = start
    while v <= hi + 1e-12 * abs(hi) and len(out) < 20:
        out.append(round(v, 12))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart_svg(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str = "",
                   x_label: str = "step", max_points: int = 5000) -> str:
    """A line chart of ``(label, [(x, y), ...])`` series with a dot per point (``circle.pt``).

    NaN values are left out; a series longer than ``max_points`` is thinned evenly for drawing.
    """
    pts_all = [(x, y) for _, pts in series for x, y in pts if math.isfinite(y) and math.isfinite(x)]
    w, h, ml, mr, mt, mb = 640, 300, 64, 16, 30, 40
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 22 * len(series)}" '
             f'role="img" aria-label="{_e(title)}">',
             f'<text x="{ml}" y="18" font-size="13" font-weight="600" fill="#1b1f24">{_e(title)}</text>']
    if not pts_all:
        parts.append(f'<text x="{ml}" y="{h / 2}" fill="#57606a">no finite values</text></svg>')
        return "".join(parts)
    x0, x1 = min(p[0] for p in pts_all), max(p[0] for p in pts_all)
    y0, y1 = min(p[1] for p in pts_all), max(p[1] for p in pts_all)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * (w - ml - mr)

    def sy(y: float) -> float:
        return mt + (1 - (y - y0) / (y1 - y0)) * (h - mt - mb)

    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{ml}" x2="{w - mr}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eaeef2"/>'
                     f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end" fill="#57606a">'
                     f'{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{h - mb + 16}" font-size="10" text-anchor="middle" '
                     f'fill="#57606a">{_fmt(t)}</text>')
    parts.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 6}" font-size="11" text-anchor="middle" '
                 f'fill="#57606a">{_e(x_label)}</text>')
    parts.append(f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#d0d7de"/>')
    for i, (label, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if len(good) > max_points:
            stride = len(good) / max_points
            good = [good[int(k * stride)] for k in range(max_points)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        parts.append(f'<g class="series" data-label="{_e(label)}" data-points="{len(good)}">'
                     f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in good:
            parts.append(f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                         f'<title>{_e(label)}: {_e(_fmt(x))}, {_e(_fmt(y))}</title></circle>')
        parts.append("</g>")
        ly = h + 14 + 22 * i
        parts.append(f'<rect x="{ml}" y="{ly - 9}" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{ml + 20}" y="{ly - 4}" font-size="11" fill="#1b1f24">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
