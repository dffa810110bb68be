"""Setup mistakes: each one is a single line naming the store and the fix, never a traceback,
and commands that only read never create a store."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelflow import Flow, Run
from reelflow.errors import NotFoundError, StoreError
from reelflow.store import get_store

FLOW = """
from reelflow import FlowSpec, step

class Setup(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def reelflow(*args: str, cwd: Path, env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def one_line_error(res: subprocess.CompletedProcess[str], *patterns: str) -> str:
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for p in patterns:
        assert p in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "setup_flow.py"
    path.write_text(FLOW)
    return path


@pytest.mark.parametrize("name", ["a?b", "pct%41", "hash#x", "with space", "q?mode=ro&x=1"])
def test_home_with_url_characters_keeps_its_database_inside(tmp_path, monkeypatch, name):
    homes = [tmp_path / "homes" / f"{name}1", tmp_path / "homes" / f"{name}2"]
    for home in homes:
        monkeypatch.setenv("REELFLOW_HOME", str(home))
        md = get_store().metadata
        assert md.create_run("F", user="u") == "1"  # a second home does not share the first one's database
        assert (home / "metadata.db").is_file()
        assert get_store().describe().startswith(f"metadata: sqlite:///{home / 'metadata.db'}; blobs: ")
    assert sorted(p.name for p in (tmp_path / "homes").iterdir()) == sorted(h.name for h in homes)


def test_read_only_commands_create_nothing_and_name_the_store(tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {"REELFLOW_HOME": None, "REELFLOW_METADATA_URL": None, "REELFLOW_STORE_URL": None}
    where = str(cwd / ".reelflow")
    for args in (["runs", "list"], ["runs", "show", "Setup/1"], ["models", "list"], ["models", "show", "m"],
                 ["serve", "nosuchmodel@champion"], ["gc", "--dry-run"]):
        one_line_error(reelflow(*args, cwd=cwd, env=env), "no reelflow store at", where, "run a flow first")
    assert list(cwd.iterdir()) == []


def test_client_reads_create_nothing(reelflow_home):
    for read in (lambda: Flow("Nope"), lambda: Run("Nope/1")):
        with pytest.raises(NotFoundError, match="no reelflow store at .*REELFLOW_HOME"):
            read()
    assert not reelflow_home.exists()


def test_model_missing_from_an_existing_store_is_named_with_the_store(tmp_path, flow_file, reelflow_home):
    get_store().metadata.create_run("F", user="u")  # the store exists, without models
    res = reelflow("serve", "nosuchmodel@champion", cwd=tmp_path, env={})
    one_line_error(res, "no model named 'nosuchmodel'", str(reelflow_home / "metadata.db"))


@pytest.mark.parametrize("url, patterns", [
    ("mysqlx://alice:s3cret@db.example/reelflow", ["unknown database 'mysqlx'", "alice:***@"]),
    ("not a url", ["REELFLOW_METADATA_URL='not a url' is not a database URL"]),
])
def test_bad_metadata_url_is_one_line_with_the_password_masked(tmp_path, flow_file, url, patterns):
    res = reelflow("run", str(flow_file), cwd=tmp_path, env={"REELFLOW_METADATA_URL": url})
    line = one_line_error(res, *patterns)
    assert "s3cret" not in line


def test_read_only_populated_store_fails_in_one_line(tmp_path, flow_file, reelflow_home):
    ok = reelflow("run", str(flow_file), cwd=tmp_path, env={})
    assert ok.returncode == 0, ok.stderr
    stored = [ln for ln in ok.stdout.splitlines() if "stored in" in ln]
    assert stored and f"metadata: sqlite:///{reelflow_home / 'metadata.db'}; blobs: {reelflow_home / 'blobs'}" in stored[0]
    ro = f"sqlite:///file:{reelflow_home / 'metadata.db'}?mode=ro&uri=true"
    res = reelflow("run", str(flow_file), cwd=tmp_path, env={"REELFLOW_METADATA_URL": ro})
    one_line_error(res, "attempt to write a readonly database", "writable")
    listed = reelflow("runs", "list", cwd=tmp_path, env={"REELFLOW_METADATA_URL": ro})
    assert listed.returncode == 0 and "Setup/1" in listed.stdout  # reading a read-only store works


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_store_folder_without_write_permission_fails_in_one_line(tmp_path, flow_file, reelflow_home):
    assert reelflow("run", str(flow_file), cwd=tmp_path, env={}).returncode == 0
    for p in [reelflow_home, *reelflow_home.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        one_line_error(reelflow("run", str(flow_file), cwd=tmp_path, env={}), "error: ")
    finally:
        for p in [reelflow_home, *reelflow_home.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_s3_without_credentials_fails_in_one_line(tmp_path, flow_file):
    pytest.importorskip("s3fs")
    env = {"REELFLOW_STORE_URL": "s3://no-such-bucket/prefix",
           "REELFLOW_STORE_OPTIONS": '{"endpoint_url": "http://127.0.0.1:9"}',  # loopback; never reached
           "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    res = reelflow("run", str(flow_file), cwd=tmp_path, env=env)
    one_line_error(res, "s3://no-such-bucket/prefix", "credentials")


@pytest.mark.parametrize("run_id", ["12345678901234567890123", "abc", "-1", "0"])
def test_impossible_run_ids_are_not_found(run_id, reelflow_home):
    md = get_store().metadata
    md.create_run("F", user="u")
    with pytest.raises(NotFoundError, match="does not exist in the store at .*positive integers"):
        md.get_run_flow(run_id)
    with pytest.raises(NotFoundError, match="does not exist"):
        md.get_run("F", run_id)
    res = reelflow("runs", "show", f"F/{run_id}", cwd=reelflow_home, env={})
    one_line_error(res, "does not exist in the store at")


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free disk space"), (errno.EROFS, "read-only"),
                                       (errno.EACCES, "writable")])
def test_blob_write_failures_name_the_path_and_the_fix(monkeypatch, reelflow_home, code, fix):
    from reelflow.store import _blobs

    def fail(*_a: object, **_k: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_blobs.os, "replace", fail)
    with pytest.raises(StoreError, match=f"cannot write to the blob store at {reelflow_home / 'blobs'}: "
                                         f"{os.strerror(code)}; .*{fix}"):
        get_store().save({"params": list(range(10))})
    assert not [p for p in (reelflow_home / "blobs").rglob(".tmp-*")]  # the partial write is gone

