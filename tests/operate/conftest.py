"""Helpers for the continuous-operation tests: the CLI in real processes and flow files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def flow_dir(tmp_path):
    """A fresh folder for one deployment's flow files; ``write(name, src)`` writes one."""
    d = tmp_path / "flows"
    d.mkdir()

    def write(name: str, src: str) -> Path:
        p = d / name
        p.write_text(textwrap.dedent(src))
        return p

    return write


@pytest.fixture
def firings():
    """``firings(NAME)``: the deployment's firings as dicts, oldest first."""

    def get(name: str) -> list[dict]:
        from reelflow.operate import deployment_history

        return deployment_history(name, limit=1000)["firings"]

    return get
