from __future__ import annotations

import os
import tempfile
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


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A throwaway PostgreSQL cluster on a Unix socket (skips when PostgreSQL or psycopg is absent)."""
    import shutil
    import socket as socket_mod
    import subprocess as sp

    pytest.importorskip("psycopg")
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    bindir = Path(initdb).resolve().parent
    base = Path(tempfile.mkdtemp(prefix="reelflow-pg-"))
    base.chmod(0o777)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    with socket_mod.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    sp.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
           check=True, capture_output=True)
    sp.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
            f"-k {base} -c listen_addresses='' -p {port} -F", "start"], check=True, capture_output=True)
    yield f"postgresql+psycopg://postgres@/%s?host={base}&port={port}"
    sp.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, monkeypatch):
    """A fresh database on the throwaway cluster, set as REELFLOW_METADATA_URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://") % "postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server % name
    monkeypatch.setenv("REELFLOW_METADATA_URL", url)
    return url
