"""Fixtures of the UI tests: a store filled by real runs, and `reelflow ui` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FLOW = HERE / "ui_flow.py"
HOSTILE = "<script>alert('tag')</script>"


def run_flow(home: Path, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ui_flow.py in a real process against the store in ``home``."""
    env = {**os.environ, "REELFLOW_HOME": str(home), "REELFLOW_PROGRESS": "0"}
    env.pop("REELFLOW_METADATA_URL", None)
    env.pop("REELFLOW_STORE_URL", None)
    proc = subprocess.run([sys.executable, str(FLOW), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=str(HERE))
    if check and proc.returncode != 0:
        raise AssertionError(f"flow run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with UiFlow/1 (succeeded, hostile tag, alpha 0.5) and UiFlow/2 (evaluate failed, alpha 0.8)."""
    home = tmp_path_factory.mktemp("ui") / "home"
    run_flow(home, "run", "--alpha", "0.5", "--tag", HOSTILE, "--tag", "nightly")
    failed = run_flow(home, "run", "--alpha", "0.8", "--fail", "true", check=False)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    return home


@pytest.fixture
def ui_store(ui_home: Path):
    from reelflow.config import load_config
    from reelflow.store import Store

    return Store(load_config(ui_home))


@pytest.fixture
def client(ui_store):
    """An in-process client of the UI app over the module's store."""
    from fastapi.testclient import TestClient

    from reelflow.ui import create_app

    with TestClient(create_app(ui_store), base_url="http://127.0.0.1") as c:
        yield c


class UiServer:
    """`reelflow ui` running as its own process group; ``url`` is its base address."""

    def __init__(self, home: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = log
        full_env = {**os.environ, "REELFLOW_HOME": str(home), **(env or {})}
        full_env.pop("REELFLOW_METADATA_URL", None)
        full_env.pop("REELFLOW_STORE_URL", None)
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "ui", "--port", "0", *args],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)
        self.url = self._wait_ready()

    def _wait_ready(self, deadline_s: float = 120) -> str:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("reelflow ui: http://"):
                    return line.split()[2].rstrip("/")
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"reelflow ui exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"reelflow ui did not start in {deadline_s} s:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=20)
        self._out.close()


@pytest.fixture
def make_ui_server():
    """Start `reelflow ui` over another store: ``make_ui_server(home, log)``; stopped after the test."""
    started: list[UiServer] = []

    def make(home: Path, log: Path, *args: str) -> UiServer:
        server = UiServer(home, log, *args)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def ui_server(ui_home: Path, tmp_path_factory: pytest.TempPathFactory):
    server = UiServer(ui_home, tmp_path_factory.mktemp("uilog") / "ui.log")
    try:
        yield server
    finally:
        server.stop()


NIGHTLY = '''
from reelflow import FlowSpec, Parameter, schedule, step, trigger


@schedule(cron="0 3 * * *", timezone="Europe/Berlin")
@trigger(event={"name": "ratings.arrived", "parameters": {"day": "day"}})
class NightlyFlow(FlowSpec):
    day = Parameter("day", default="today")

    @step
    def start(self):
        import numpy as np
        import pandas as pd

        from reelflow.content.experiments import compare

        self.seen = self.day
        rng = np.random.default_rng(0)  # an A/B result: the run page draws it as a forest plot
        self.ab = pd.concat([compare(rng.normal(1, 1, 400), rng.normal(1.3, 1, 400), metric="plays"),
                             compare(rng.normal(1, 1, 400), rng.normal(1.0, 1, 400), metric="minutes")],
                            ignore_index=True)
        self.next(self.end)

    @step
    def end(self):
        pass
'''

AFTER = '''
from reelflow import FlowSpec, step, trigger_on_finish


@trigger_on_finish(flow="NightlyFlow")
class AfterFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
'''


@pytest.fixture(scope="session")
def ops_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """(One per session: tests that pause a deployment resume it.) A store with two deployments and runs they triggered, through the real scheduler:
    ``nightly`` (2 versions; cron 03:00 Europe/Berlin; event ratings.arrived -> day) fired by an
    event with a hostile payload (NightlyFlow/1), and ``after`` (on NightlyFlow's finish: AfterFlow/2)."""
    pytest.importorskip("croniter")
    root = tmp_path_factory.mktemp("ops")
    home = root / "home"
    for name, src in (("nightly", NIGHTLY), ("after", AFTER)):
        (root / name).mkdir()
        (root / name / "flow.py").write_text(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REELFLOW_HOME", str(home))
        mp.setenv("REELFLOW_PROGRESS", "0")
        mp.delenv("REELFLOW_METADATA_URL", raising=False)
        mp.delenv("REELFLOW_STORE_URL", raising=False)
        import warnings

        from reelflow.operate import Scheduler, deploy, publish

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the event is published after the deploy
            deploy(root / "nightly" / "flow.py", name="nightly")
            deploy(root / "nightly" / "flow.py", name="nightly", params={"day": "monday"})
            deploy(root / "after" / "flow.py", name="after")
        publish("ratings.arrived", {"day": HOSTILE})
        lines: list[str] = []
        Scheduler(poll_interval=0.1, echo=lines.append).run_once()
    from reelflow.config import load_config
    from reelflow.store import Store

    runs = [r["flow_name"] + "/" + r["run_id"] for r in Store(load_config(home)).metadata.runs_page(limit=None)[0]]
    assert sorted(runs) == ["AfterFlow/2", "NightlyFlow/1"], "\n".join(lines)
    return home
