"""Is a ``running`` run still running? Its process, recorded at ``create_run``, answers.

A run row records the creating process's host, pid and a *process token* (the boot
id, the pid namespace and the process's start time in clock ticks, from ``/proc``),
and the runtime
refreshes ``heartbeat_at`` every few seconds. A reader decides:

- same machine (host name, boot id and pid namespace: containers that share a host
  name cannot see each other's processes), process checkable: the run is alive
  while a process with that pid *and that start time* exists (a reused pid has
  another start time);
- otherwise (another host, or no ``/proc``): alive while the heartbeat is fresher
  than the stale threshold (``REELFLOW_HEARTBEAT_TIMEOUT``, default 60 s).

A dead ``running`` run is shown as ``abandoned`` with the reason; nothing is written
back, so readers stay read-only.
"""

from __future__ import annotations

import os
import socket
import time
from functools import lru_cache
from typing import Any

__all__ = ["process_token", "host_name", "abandoned_reason"]


@lru_cache(maxsize=1)
def _machine() -> str:
    """``<boot id>.<pid namespace>``: processes with the same one can see each other's pids."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        ns = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        ns = ""
    return f"{boot}.{ns}"


@lru_cache(maxsize=1)
def host_name() -> str:
    return socket.gethostname()


def process_token(pid: int) -> str | None:
    """``"<boot id>.<pid namespace>:<start ticks>"`` of process ``pid``, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        start_ticks = stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None
    return f"{_machine()}:{start_ticks}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def abandoned_reason(row: dict[str, Any], stale_after: float, now: float | None = None) -> str | None:
    """Why the ``running`` run ``row`` is dead, or None while it may still be running."""
    if row.get("status") != "running":
        return None
    pid, host, token = row.get("pid"), row.get("host"), row.get("proc_token")
    same_machine = bool(pid) and host == host_name() and (token is None or token.rsplit(":", 1)[0] == _machine())
    if same_machine:
        if token is not None and os.path.isdir("/proc/self"):
            now_token = process_token(int(pid))  # type: ignore[arg-type]
            if now_token == token:
                return None
            reused = " (the pid now belongs to another process)" if now_token is not None else ""
            return f"its process {pid} on {host} is gone{reused}"
        return None if _pid_alive(int(pid)) else f"its process {pid} on {host} is gone"  # type: ignore[arg-type]
    beat = row.get("heartbeat_at") or row.get("created_at")
    if beat is None:
        return None
    age = (time.time() if now is None else now) - float(beat)
    if age > stale_after:
        return f"no heartbeat from process {pid} on {host} for {age:.0f}s (threshold {stale_after:.0f}s)"
    return None
