"""Run Metaflow-style flow files with reelflow and, where Metaflow is installed, with Metaflow.

Flows and client scripts in this suite are written for Metaflow (``from metaflow import ...``).
For the ``reelflow`` engine the harness changes the import and nothing else, which is the
promise the parity issue makes. Metaflow is found on ``sys.path`` or in the folder named by
``REELFLOW_COMPAT_METAFLOW`` (e.g. ``pip install --target /tmp/mf metaflow``); without it the
``metaflow`` cases skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ENGINES = ("reelflow", "metaflow")
_FROM = re.compile(r"^(\s*)from metaflow(\.[\w.]+)? import", re.M)
_IMPORT = re.compile(r"^(\s*)import metaflow\b(?! as)", re.M)


def metaflow_path() -> str | None:
    """The folder to put on PYTHONPATH for Metaflow, "" when it is importable as is, None when absent."""
    target = os.environ.get("REELFLOW_COMPAT_METAFLOW")
    if target:
        return target if (Path(target) / "metaflow").is_dir() else None
    return "" if importlib.util.find_spec("metaflow") is not None else None


def to_reelflow(source: str) -> str:
    """Change a Metaflow source's imports to reelflow's (the only change a user makes)."""
    source = _FROM.sub(lambda m: f"{m.group(1)}from reelflow{m.group(2) or ''} import", source)
    return _IMPORT.sub(lambda m: f"{m.group(1)}import reelflow as metaflow", source)


@dataclass
class Engine:
    """One engine (``reelflow`` or ``metaflow``) with its own empty store under ``root``."""

    name: str
    root: Path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["USER"] = env.get("USER") or "tester"
        env["USERNAME"] = env["USER"]
        if self.name == "reelflow":
            env["REELFLOW_HOME"] = str(self.root / "home")
            env["REELFLOW_PROGRESS"] = "0"
        else:
            path = metaflow_path() or ""
            if path:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH", "")) if p)
            env["METAFLOW_DEFAULT_DATASTORE"] = "local"
            env["METAFLOW_DEFAULT_METADATA"] = "local"
            env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = str(self.root)
            env["METAFLOW_HOME"] = str(self.root / "mfhome")
        env.update(extra or {})
        return env

    def source(self, source: str) -> str:
        source = textwrap.dedent(source)
        return to_reelflow(source) if self.name == "reelflow" else source

    def write(self, name: str, source: str) -> Path:
        """Write a Metaflow-style file (imports changed for reelflow) under ``root``; return its path."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.source(source))
        return path

    def run(self, path: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """``python FILE ARGS`` in a real process, from the file's folder."""
        proc = subprocess.run(
            [sys.executable, str(path), *args], capture_output=True, text=True,
            timeout=timeout, env=self.env(env), cwd=path.parent,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.name}: python {path.name} {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def client(self, source: str, *, env: dict[str, str] | None = None, timeout: float = 300):
        """Run a client script that calls ``emit(value)``; return the emitted values (JSON) in order."""
        body = (
            "import json as _json, sys as _sys\n"
            "def emit(value):\n"
            "    print('@@' + _json.dumps(value, default=str), flush=True)\n"
            + textwrap.dedent(source)
        )
        path = self.write(f"client_{abs(hash(source))}.py", body)
        proc = self.run(path, env=env, timeout=timeout)
        return [json.loads(line[2:]) for line in proc.stdout.splitlines() if line.startswith("@@")]


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path) -> Engine:
    """Each test runs once per engine; the Metaflow case skips where Metaflow is not installed."""
    if request.param == "metaflow" and metaflow_path() is None:
        pytest.skip("Metaflow is not installed (set REELFLOW_COMPAT_METAFLOW to a pip --target folder)")
    root = tmp_path / request.param
    root.mkdir()
    return Engine(request.param, root)
