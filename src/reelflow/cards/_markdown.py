"""A small, safe Markdown renderer: text is escaped first, then a few constructs become tags.

Supported: ``#`` headings, paragraphs, ``-``/``*``/``1.`` lists, fenced and inline
code, ``**bold**``, ``*italic*``, ``[links](http://...)`` (http, https and relative
only). Raw HTML in the source is shown as text.
"""

from __future__ import annotations

import html
import re

__all__ = ["markdown_to_html"]

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_CODE = re.compile(r"`([^`]+)`")
_SAFE_URL = re.compile(r"^(https?://|/|\.|#)[^\"'<>]*$")


def _inline(text: str) -> str:
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    out = html.escape(text, quote=True)
    out = _CODE.sub(keep_code, out)

    def link(m: re.Match[str]) -> str:
        url = html.unescape(m.group(2))
        if not _SAFE_URL.match(url):
            return m.group(0)
        return f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer">{m.group(1)}</a>'

    out = _LINK.sub(link, out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], out)


def markdown_to_html(text: str) -> str:
    """``text`` (Markdown) as HTML in which every character of the source is escaped."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []
    lst: str | None = None
    i = 0

    def flush() -> None:
        nonlocal lst
        if para:
            out.append("<p>" + " ".join(_inline(p) for p in para) + "</p>")
            para.clear()
        if lst:
            out.append(f"</{lst}>")
            lst = None

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(body)) + "</code></pre>")
        elif not stripped:
            flush()
        elif m := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif m := re.match(r"^([-*+]|\d+[.)])\s+(.*)$", stripped):
            if para:
                out.append("<p>" + " ".join(_inline(p) for p in para) + "</p>")
                para.clear()
            kind = "ol" if m.group(1)[0].isdigit() else "ul"
            if lst != kind:
                if lst:
                    out.append(f"</{lst}>")
                out.append(f"<{kind}>")
                lst = kind
            out.append(f"<li>{_inline(m.group(2))}</li>")
        else:
            if lst:
                out.append(f"</{lst}>")
                lst = None
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)
