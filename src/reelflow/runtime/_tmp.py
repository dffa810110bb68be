"""Private temporary directories of runs, under ``REELFLOW_HOME/tmp``.

The scheduler and its workers exchange pickles (task specs, results) through
files. On a team's shared home another user could plant such a file under a
predictable name and run code in our scheduler, so each run gets its own
directory, created with a random name and mode 0700 (``tempfile.mkdtemp``), and
the scheduler checks that it owns the directory and that nobody else can write
to it before it trusts anything inside. The directory goes when the run ends,
however it ends; directories (and loose files of older versions) left by runs
whose process is gone are removed when the next run of the same user starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

from ..errors import StoreError

__all__ = ["make_run_dir", "check_private", "remove_run_dir", "clean_stale"]

_PREFIX = "run-"
_LOOSE = (".result", ".spec", ".tmp")
_LOOSE_AGE = 3600.0


def _host() -> str:
    return socket.gethostname().replace("-", "_")


def make_run_dir(base: Path) -> Path:
    """A new private directory for one run: ``run-HOST-PID-RANDOM``, mode 0700."""
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{_host()}-{os.getpid()}-", dir=base))
    except OSError as exc:
        raise StoreError(
            f"cannot create the run's temporary directory in {base}: {exc.strerror or exc}; "
            "make REELFLOW_HOME writable or point it elsewhere"
        ) from None
    check_private(path)
    return path


def check_private(path: Path) -> None:
    """Raise StoreError unless ``path`` is a real directory of ours that only we can enter."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StoreError(
            f"the run's temporary directory {path} is not a private directory of user {os.getuid()} "
            f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)}); refusing to read task results from it"
        )


def remove_run_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def clean_stale(base: Path) -> int:
    """Remove what dead runs of this user on this host left in ``base``; how many entries went."""
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    me, host, now = os.getuid(), _host(), time.time()
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_uid != me:
            continue
        if e.name.startswith(_PREFIX) and stat.S_ISDIR(st.st_mode):
            bits = e.name[len(_PREFIX):].split("-")
            if len(bits) >= 3 and bits[0] == host and bits[1].isdigit() and not _alive(int(bits[1])):
                shutil.rmtree(e.path, ignore_errors=True)
                removed += 1
        elif e.name.endswith(_LOOSE) and stat.S_ISREG(st.st_mode):
            # RUN-TASK-ATTEMPT-PID.result of older versions: the pid says nothing about
            # other hosts sharing the home, so an old enough file goes too.
            pid = e.name.rsplit(".", 1)[0].rsplit("-", 1)[-1]
            age = now - st.st_mtime
            if not (age > _LOOSE_AGE or (pid.isdigit() and age > 60 and not _alive(int(pid)))):
                continue
            try:
                os.unlink(e.path)
                removed += 1
            except OSError:
                pass
    return removed
