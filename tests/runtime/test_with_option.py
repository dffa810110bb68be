"""``--with`` attaches a decorator to every step, and the task honours it like the step's own:
``--with catch`` (the fallback attempt), ``--with environment``."""

from __future__ import annotations

import os
import subprocess
import sys

FLOW = """
import os
from reelflow import FlowSpec, Parameter, step


class WithFlow(FlowSpec):
    fail = Parameter("fail", default=False, type=bool)

    @step
    def start(self):
        self.seen = os.environ.get("WITH_VAR")
        if self.fail:
            raise ValueError("boom")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    WithFlow()
"""


def test_with_catch_and_environment_reach_the_task(tmp_path):
    from reelflow import Flow

    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    env = {**os.environ, "REELFLOW_PROGRESS": "0"}
    env.pop("WITH_VAR", None)
    r = subprocess.run([sys.executable, str(path), "run", "--fail", "true", "--with", "catch:var=err",
                        "--with", 'environment:vars={"WITH_VAR": "set"}'],
                       capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    run = Flow("WithFlow").latest_run
    assert run.successful
    assert "boom" in str(run["start"].task.data.err)
    r = subprocess.run([sys.executable, str(path), "run", "--with", 'environment:vars={"WITH_VAR": "set"}'],
                       capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert Flow("WithFlow").latest_run["start"].task.data.seen == "set"
