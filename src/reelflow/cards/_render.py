"""Cards and previews as HTML: one self-contained page per card (works offline).

Every string that came from a user (Markdown source, table cells, labels, artifact
reprs, chart specs) is escaped; chart specs travel as JSON inside a
``<script type="application/json">`` block with ``<`` escaped, so no value can
close the block.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ._markdown import markdown_to_html

__all__ = ["render_card_html", "render_components", "render_preview", "VENDOR_DIR", "CARD_CSS"]

VENDOR_DIR = Path(__file__).resolve().parent.parent / "ui" / "static" / "vendor"
_VEGA_FILES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")

CARD_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.2rem;color:#1b1f24;background:#fff}
h1.card-title{font-size:1.25rem;margin:0 0 .2rem}
.card-meta{color:#57606a;font-size:.85rem;margin-bottom:1rem}
.rf-component{margin:0 0 1.1rem}
table.rf-table{border-collapse:collapse;font-size:.85rem}
table.rf-table th,table.rf-table td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
table.rf-table th{background:#f6f8fa}
.rf-note{color:#57606a;font-size:.8rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;max-height:24rem;white-space:pre-wrap;word-break:break-word}
.rf-progress{display:flex;align-items:center;gap:.6rem}
.rf-progress progress{width:18rem;height:1rem}
figure{margin:0}figure img{max-width:100%;image-rendering:auto;border:1px solid #d0d7de}
.rf-artifact h3{font-size:.95rem;margin:.2rem 0}
.rf-type{color:#57606a;font-family:ui-monospace,monospace;font-size:.8rem}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _cell(v: Any) -> str:
    return _e(f"{v:.6g}" if isinstance(v, float) else v)


def _table(columns: list[Any], rows: list[list[Any]], index: list[Any] | None = None) -> str:
    head = ("<th></th>" if index is not None else "") + "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        lead = f"<th>{_e(index[i])}</th>" if index is not None and i < len(index) else ""
        body.append("<tr>" + lead + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>")
    return f'<table class="rf-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_preview(p: dict[str, Any]) -> str:
    """HTML for a :func:`~reelflow.cards._preview.preview` dict (every value escaped); estimates
    with intervals come first as a forest plot."""
    body = _render_kind(p)
    if p.get("intervals"):
        from ._intervals import forest_svg

        body = f'<div class="rf-chart-forest">{forest_svg(p["intervals"])}</div>' + body
    return body


def _render_kind(p: dict[str, Any]) -> str:
    kind = p.get("kind")
    more = '<div class="rf-note">(shortened)</div>' if p.get("truncated") else ""
    if kind == "scalar":
        return f'<pre class="rf-value">{_e(p.get("value"))}</pre>'
    if kind in ("text", "list", "other"):
        unit = "characters" if kind == "text" and not p.get("binary") else "bytes" if kind == "text" else "items"
        extra = f'<div class="rf-note">{_e(p["length"])} {unit}</div>' if "length" in p and kind != "other" else ""
        return f'<pre class="rf-value">{_e(p.get("value"))}</pre>{more}{extra}'
    if kind == "dict":
        rows = [list(kv) for kv in p.get("items", [])]
        note = f'<div class="rf-note">{_e(p.get("length"))} keys</div>'
        return _table(["key", "value"], rows) + note
    if kind == "table":
        shape = p.get("shape", [0, 0])
        note = f'<div class="rf-note">shape {_e(shape[0])} x {_e(shape[1])}; first {len(p.get("rows", []))} rows</div>'
        return _table(p.get("columns", []), p.get("rows", []), p.get("index")) + note
    if kind == "array":
        vals = f'<pre class="rf-value">{_e(p["values"])}</pre>' if "values" in p else ""
        return f'<div class="rf-note">shape {_e(tuple(p.get("shape", [])))}, dtype {_e(p.get("dtype"))}</div>{vals}'
    if kind == "image":
        return f'<figure><img alt="image" src="data:image/png;base64,{_e(p.get("png"))}"></figure>'
    return f'<pre class="rf-value">{_e(p.get("value"))}</pre>'


def _component(c: dict[str, Any], n: int) -> str:
    t = c.get("type")
    if t == "markdown":
        body = markdown_to_html(str(c.get("text", "")))
    elif t == "table":
        body = _table(c.get("columns", []), c.get("rows", []))
        total, shown = c.get("total_rows", 0), len(c.get("rows", []))
        if total and total > shown:
            body += f'<div class="rf-note">first {shown} of {_e(total)} rows</div>'
    elif t == "image":
        label = f"<figcaption>{_e(c['label'])}</figcaption>" if c.get("label") else ""
        body = f'<figure><img alt="{_e(c.get("label") or "image")}" src="data:image/png;base64,{_e(c.get("png"))}">{label}</figure>'
    elif t == "vega":
        spec = json.dumps(c.get("spec", {})).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        body = (f'<div class="rf-chart" id="rf-vega-{n}"></div>'
                f'<script type="application/json" id="rf-vega-{n}-spec">{spec}</script>')
    elif t == "progress":
        value, top = float(c.get("value", 0)), float(c.get("max", 1)) or 1.0
        body = (f'<div class="rf-progress"><span>{_e(c.get("label") or "")}</span>'
                f'<progress value="{value:g}" max="{top:g}"></progress><span>{value:g} / {top:g} '
                f'({100 * value / top:.0f}%)</span></div>')
    elif t == "artifact":
        p = c.get("preview", {})
        title = f'<h3>{_e(p.get("name"))} <span class="rf-type">{_e(p.get("type"))}</span></h3>' if p.get("name") \
            else f'<div class="rf-type">{_e(p.get("type"))}</div>'
        body = f'<div class="rf-artifact">{title}{render_preview(p)}</div>'
    else:
        body = f'<div class="rf-note">unknown component {_e(t)}</div>'
    return f'<div class="rf-component rf-c-{_e(t)}">{body}</div>'


def render_components(doc: dict[str, Any]) -> str:
    """The body HTML of a card document (no page around it)."""
    return "\n".join(_component(c, i) for i, c in enumerate(doc.get("components", [])))


def _vega_scripts() -> str:
    parts = []
    for name in _VEGA_FILES:
        js = (VENDOR_DIR / name).read_text(encoding="utf-8")
        parts.append("<script>" + js.replace("</script", "<\\/script") + "</script>")
    parts.append("""<script>
document.querySelectorAll('.rf-chart').forEach(function (el) {
  var spec = JSON.parse(document.getElementById(el.id + '-spec').textContent);
  vegaEmbed('#' + el.id, spec, {actions: false, renderer: 'svg'}).catch(function (err) {
    el.textContent = 'chart error: ' + err;
  });
});
</script>""")
    return "\n".join(parts)


def render_card_html(doc: dict[str, Any]) -> str:
    """One self-contained HTML page for the card ``doc``: styles inline, chart libraries inline
    (only when the card has a chart), pictures as data URLs; it opens offline."""
    import datetime as _dt

    when = doc.get("created_at")
    stamp = _dt.datetime.fromtimestamp(when, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if when else ""
    has_chart = any(c.get("type") == "vega" for c in doc.get("components", []))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(doc.get('title'))}</title><style>{CARD_CSS}</style></head><body>"
        f'<h1 class="card-title">{_e(doc.get("title"))}</h1>'
        f'<div class="card-meta">card {_e(doc.get("id"))} · {_e(doc.get("pathspec"))} · attempt '
        f'{_e(doc.get("attempt"))} · {_e(stamp)}</div>'
        f'<main class="rf-card">{render_components(doc)}</main>'
        + (_vega_scripts() if has_chart else "")
        + "</body></html>\n"
    )
