from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def reelflow_home(tmp_path, monkeypatch):
    """Every test gets its own empty store and the default namespace."""
    home = tmp_path / "home"
    monkeypatch.setenv("REELFLOW_HOME", str(home))
    monkeypatch.delenv("REELFLOW_METADATA_URL", raising=False)
    monkeypatch.delenv("REELFLOW_STORE_URL", raising=False)
    from reelflow.client import _core

    monkeypatch.setattr(_core, "_namespace", _core._DEFAULT)
    yield home


@pytest.fixture
def write_flow(tmp_path):
    """Write flow source to a file; return its path."""

    def write(src: str, name: str = "flow.py") -> Path:
        path = tmp_path / name
        body = "from reelflow import *\n" + textwrap.dedent(src)
        path.write_text(body)
        return path

    return write


@pytest.fixture
def load_flow(write_flow):
    """Write flow source and import its FlowSpec class."""
    from reelflow.cli import load_flow_file

    counter = iter(range(10_000))

    def load(src: str):
        return load_flow_file(str(write_flow(src, f"flow_{next(counter)}_{os.getpid()}.py")))

    return load
