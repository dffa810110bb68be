"""The README's code blocks run as written, in order, after its two commands.

Rules the README follows so this test can read it:

- ```bash blocks run with ``bash -euo pipefail``; ```python blocks run with this
  interpreter, except a block whose first line is ``# file: NAME``, which is
  written to ``NAME`` instead (a flow file that a later command runs).
- A block right after ``<!-- readme-test: skip -->`` is not run (the two
  commands themselves, which CI runs as its own steps). ```text / ```console
  blocks are output, never run.
- Everything runs in one scratch folder with a copy of ``examples/``, with the
  default store (``./.reelflow``), after ``reelflow demo`` (the first command's
  last part).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"(<!-- readme-test: (?P<mark>[a-z]+) -->\s*\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)


def readme_blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(lang, body, mark) of every fenced block, in order."""
    return [(m["lang"], m["body"], m["mark"]) for m in _FENCE.finditer(text)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    # own session: whatever the block starts in the background dies with it
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, f"README {what} failed (exit {proc.returncode}):\n{out[-6000:]}"
    assert "Traceback" not in out, f"README {what} printed a traceback:\n{out[-6000:]}"


def test_readme_blocks_are_well_formed():
    blocks = readme_blocks((REPO / "README.md").read_text())
    langs = {lang for lang, _, _ in blocks}
    assert langs <= {"bash", "python", "text", "console"}, langs
    assert sum(1 for lang, _, mark in blocks if lang in ("bash", "python") and mark != "skip") >= 5


def test_readme_runs_as_written(tmp_path, monkeypatch):
    work = tmp_path / "readme"
    work.mkdir()
    subprocess.run(["cp", "-r", str(REPO / "examples"), str(work / "examples")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["REELFLOW_PROGRESS"] = "0"
    port = str(_free_port())
    _run([sys.executable, "-m", "reelflow.cli", "demo", "--quiet"], work, env, "first command (reelflow demo)")
    for i, (lang, body, mark) in enumerate(readme_blocks((REPO / "README.md").read_text())):
        if mark == "skip" or lang not in ("bash", "python"):
            continue
        body = body.replace("8000", port)  # a free port on a busy CI machine
        first = body.splitlines()[0] if body.strip() else ""
        if lang == "python" and first.startswith("# file: "):
            (work / first.removeprefix("# file: ").strip()).write_text(body)
            continue
        script = work / f"block_{i}.{'sh' if lang == 'bash' else 'py'}"
        script.write_text(body)
        cmd = ["bash", "-euo", "pipefail", str(script)] if lang == "bash" else [sys.executable, str(script)]
        _run(cmd, work, env, f"block {i} ({lang}):\n{body}")
