"""Task logs for the UI, read chunk by chunk: a window of bytes, or the lines matching a search.

A log is never loaded whole (a 200 MB log is a series of chunk blobs); memory stays
at one chunk plus the window or the matches asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..runtime._logs import iter_log

__all__ = ["log_window", "log_search", "log_stream", "WINDOW", "MAX_MATCHES"]

WINDOW = 256 << 10  # bytes shown per page of a log
MAX_MATCHES = 1000


def log_window(store: Any, key: str, offset: int = 0, limit: int = WINDOW, what: str = "log") -> tuple[str, int, bool]:
    """``limit`` bytes of the log from byte ``offset``: (text, next offset, more after it)."""
    offset, limit = max(0, offset), max(1, limit)
    pos = 0
    out = bytearray()
    more = False
    for chunk in iter_log(store, key, what):
        end = pos + len(chunk)
        if end > offset and len(out) < limit:
            start = max(offset - pos, 0)
            out += chunk[start:start + limit - len(out)]
        if end > offset + len(out) and len(out) >= limit:
            more = True
            break
        pos = end
    # never cut a UTF-8 character in two: stop at the last newline when there is more to read
    if more:
        cut = out.rfind(b"\n")
        if cut > 0:
            del out[cut + 1:]
    return out.decode("utf-8", "replace"), offset + len(out), more


def log_search(store: Any, key: str, query: str, what: str = "log",
               max_matches: int = MAX_MATCHES) -> tuple[list[tuple[int, str]], bool]:
    """Lines containing ``query`` (case-insensitive) as (line number, text), and whether the list was cut."""
    needle = query.lower()
    found: list[tuple[int, str]] = []
    carry = b""
    line_no = 0
    for chunk in iter_log(store, key, what):
        data = carry + chunk
        lines = data.split(b"\n")
        carry = lines.pop()
        for raw in lines:
            line_no += 1
            text = raw.decode("utf-8", "replace")
            if needle in text.lower():
                found.append((line_no, text[:2000]))
                if len(found) >= max_matches:
                    return found, True
        if len(carry) > (1 << 20):  # one enormous line: search it in pieces
            line_no += 1
            text = carry.decode("utf-8", "replace")
            if needle in text.lower():
                found.append((line_no, text[:2000]))
            carry = b""
    if carry:
        line_no += 1
        text = carry.decode("utf-8", "replace")
        if needle in text.lower():
            found.append((line_no, text[:2000]))
    return found, False


def log_stream(store: Any, key: str, what: str = "log") -> Iterator[bytes]:
    """The whole log, chunk by chunk (for a download)."""
    yield from iter_log(store, key, what)
