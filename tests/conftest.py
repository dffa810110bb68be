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


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live (non-zombie) descendant of ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie is already dead
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[pid] = cmd.strip()
        todo.extend(children.get(pid, []))
    return out


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """Fail a test that leaves a process running, and end that process (CI must not leak servers)."""
    import signal
    import time

    if not Path("/proc/self/stat").exists():
        yield
        return
    before = set(_descendants(os.getpid()))
    yield
    deadline = time.monotonic() + 20  # generous: a loaded machine is slow to reap
    leaked = {p: c for p, c in _descendants(os.getpid()).items() if p not in before}
    while leaked and time.monotonic() < deadline:
        time.sleep(0.2)
        leaked = {p: c for p, c in _descendants(os.getpid()).items() if p not in before}
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leaked:
        pytest.fail("the test left processes running (now killed): "
                    + "; ".join(f"{p}: {c[:120]}" for p, c in leaked.items()), pytrace=False)
