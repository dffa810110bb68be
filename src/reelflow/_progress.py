"""Progress on long work: a bar in a terminal or notebook, plain lines in logs, or silence.

One helper for every long loop (model fits, evaluation, tuning, off-policy loops)::

    with progress(total=15, desc="ALS fit", unit="iteration", verbose=verbose) as bar:
        for _ in range(15):
            ...
            bar.update()

Where the output goes depends on where it is read:

* **terminal** (stderr is a TTY) or **Jupyter**: a tqdm bar;
* **anything else** (task logs, CI, a pipe): a plain line at most every
  ``interval`` seconds (default 5, env ``REELFLOW_PROGRESS_INTERVAL``) and at each
  further 10 % of the work, never a carriage return or an escape sequence, so
  stored logs stay readable; work that ends before the first interval prints nothing;
* **disabled**: silent. ``verbose=False`` on ``fit`` / ``evaluate`` / ``tune``
  disables it for that call; env ``REELFLOW_PROGRESS=0`` disables it by default
  (an explicit ``verbose=True`` still shows it).

Nested work inherits the setting of the call around it (:func:`progress_scope`):
``tune(..., verbose=False)`` silences the fits and evaluations it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TextIO

__all__ = ["progress", "progress_scope", "progress_enabled", "note", "Progress"]

_SCOPE: ContextVar[bool | None] = ContextVar("reelflow_progress", default=None)
_OFF = {"0", "false", "no", "off"}


def progress_enabled(verbose: bool | None = None) -> bool:
    """Whether progress is shown: ``verbose`` if given, else the enclosing scope, else the env."""
    if verbose is not None:
        return bool(verbose)
    scoped = _SCOPE.get()
    if scoped is not None:
        return scoped
    return os.environ.get("REELFLOW_PROGRESS", "1").strip().lower() not in _OFF


@contextlib.contextmanager
def progress_scope(verbose: bool | None) -> Iterator[None]:
    """Run the body with progress on or off (``None``: leave the current setting)."""
    if verbose is None:
        yield
        return
    token = _SCOPE.set(bool(verbose))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - IPython without a running shell
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("REELFLOW_PROGRESS_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


def note(message: str, *, verbose: bool | None = None, file: TextIO | None = None) -> None:
    """One plain line about long work ahead (e.g. its cost), when progress is enabled."""
    if not progress_enabled(verbose):
        return
    stream = file if file is not None else sys.stderr
    print(f"[reelflow] {message}", file=stream, flush=True)


class Progress:
    """A progress display for ``total`` units of work; use :func:`progress` to make one."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        verbose: bool | None = None,
        file: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.postfix = ""
        self._file = file if file is not None else sys.stderr
        self._interval = _interval() if interval is None else interval
        self._start = self._last = time.monotonic()
        self._last_fraction = 0.0
        self._printed = False
        self._bar: Any = None
        self.mode = "off"
        if not progress_enabled(verbose):
            return
        if _in_notebook() or _is_tty(self._file):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm missing: plain lines still work
                self.mode = "lines"
            else:
                self.mode = "bar"
                self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self._file, dynamic_ncols=True)
        else:
            self.mode = "lines"

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Record ``n`` more units done; ``postfix`` (e.g. ``best=0.31``) is shown beside the count."""
        self.n += n
        if postfix:
            self.postfix = ", ".join(f"{k}={_short(v)}" for k, v in postfix.items())
        if self.mode == "bar":
            if postfix:
                self._bar.set_postfix_str(self.postfix, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._start < self._interval or (self.total and self.n >= self.total):
                return  # short work stays quiet; the last line comes from close()
            fraction = self.n / self.total if self.total else 0.0
            if now - self._last >= self._interval or fraction - self._last_fraction >= 0.1:
                self._emit(now)

    def _emit(self, now: float, final: bool = False, failed: bool = False) -> None:
        elapsed = now - self._start
        if self.total:
            pct = 100.0 * self.n / self.total
            text = f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s ({pct:.0f}%), {_fmt_seconds(elapsed)}"
            if not final and 0 < self.n < self.total:
                text += f", about {_fmt_seconds(elapsed * (self.total - self.n) / self.n)} left"
        else:
            text = f"{self.desc}: {self.n:,} {self.unit}s, {_fmt_seconds(elapsed)}"
        if final:
            text += ", stopped by an error" if failed else ", done"
        if self.postfix:
            text += f" ({self.postfix})"
        print(f"[reelflow] {text}", file=self._file, flush=True)
        self._printed = True
        self._last = now
        self._last_fraction = self.n / self.total if self.total else 0.0

    def close(self, *, failed: bool = False) -> None:
        """End the display (in log mode, a last line for work that took an interval or more)."""
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines":
            now = time.monotonic()
            if self._printed or now - self._start >= self._interval:
                self._emit(now, final=True, failed=failed)
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc_type is not None)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def progress(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    verbose: bool | None = None,
    file: TextIO | None = None,
    interval: float | None = None,
) -> Progress:
    """A :class:`Progress` for ``total`` units of ``unit`` (see the module docstring)."""
    return Progress(total, desc, unit=unit, verbose=verbose, file=file, interval=interval)
