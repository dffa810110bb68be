"""Helpers for the continuous-operation tests: the reelflow CLI in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``reelflow ARGS`` in a child process (the test's REELFLOW_HOME / REELFLOW_METADATA_URL)."""
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), cwd=cwd)


def ok(*args: str, timeout: float = 180) -> str:
    res = cli(*args, timeout=timeout)
    assert res.returncode == 0, f"reelflow {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr
