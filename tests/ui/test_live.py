"""Live output of a running task: published by the worker pool, shown by the UI until the task row exists."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
pytest.importorskip("python_multipart")

FLOW = '''
import os, sys, time
from reelflow import FlowSpec, step


class TalkFlow(FlowSpec):
    @step
    def start(self):
        deadline = time.time() + 150
        n = 0
        while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
            print(f"line {n} <i>of output</i>")
            print(f"warning {n}", file=sys.stderr)
            n += 1
            time.sleep(0.1)
        self.next(self.end)

    @step
    def end(self):
        print("quick")


if __name__ == "__main__":
    TalkFlow()
'''


def test_running_task_output_is_live_in_the_ui(tmp_path, reelflow_home):
    from fastapi.testclient import TestClient

    from reelflow.store import get_store
    from reelflow.ui import create_app

    flow = tmp_path / "talk_flow.py"
    flow.write_text(FLOW)
    gate = tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, str(flow), "run", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "GATE": str(gate)}, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while not (reelflow_home / "metadata.db").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with TestClient(create_app(get_store()), base_url="http://127.0.0.1") as c:
            live: dict = {}
            while "stdout" not in live.get("streams", {}):
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "no live output was published"
                time.sleep(0.2)
                r = c.get("/api/live/TalkFlow/1/start/1")
                live = r.json() if r.status_code == 200 else {}
            assert not live["finished"]
            assert "line 0 <i>of output</i>" in live["streams"]["stdout"]["text"]
            page = c.get("/runs/TalkFlow/1/start/1")
            assert page.status_code == 200 and 'id="live-logs"' in page.text
            assert "line 0 &lt;i&gt;of output&lt;/i&gt;" in page.text
            run_page = c.get("/runs/TalkFlow/1")
            assert 'href="/runs/TalkFlow/1/start/1"' in run_page.text and "Running tasks" in run_page.text
            gate.write_text("go")
            assert proc.wait(timeout=120) == 0
            done = c.get("/api/live/TalkFlow/1/start/1").json()
            assert done["finished"]
            page = c.get("/runs/TalkFlow/1/start/1")
            assert 'id="live-logs"' not in page.text and "line 0 &lt;i&gt;of output" in page.text
            assert "Running tasks" not in c.get("/runs/TalkFlow/1").text
            from reelflow.ui._livelogs import live_tails

            assert {r["step_name"] for r in live_tails(get_store(), "1")} == {"start"}  # the quick step published nothing
    finally:
        gate.write_text("go")
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
