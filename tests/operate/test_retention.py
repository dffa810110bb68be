"""gc retention: runs past --keep-last / --older-than go; model sources, kept, running runs and snapshots stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from operate.opshelpers import cli, ok

FLOW = """
from reelflow import FlowSpec, Parameter, models, step

class KeepFlow(FlowSpec):
    register = Parameter("register", default=False)
    nap = Parameter("nap", default=0.0)

    @step
    def start(self):
        import time
        self.payload = "x" * 5000 + str(time.time())  # a blob of its own per run
        time.sleep(self.nap)
        if self.register:
            models.register("keepmodel", {"w": self.payload}, metrics={"ndcg@10": 0.1})
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def _ids() -> list[int]:
    from reelflow import Flow

    return sorted(int(r.id) for r in Flow("KeepFlow"))


def test_keep_last_deletes_old_runs_but_protects_models_kept_and_snapshots(flow_dir):
    from reelflow import Run
    from reelflow.operate import get_deployment
    from reelflow.store import get_store

    path = flow_dir("keep.py", FLOW)
    ok("run", str(path), "--register", "true")  # 1: a model's source
    ok("run", str(path), "--tag", "keep")  # 2: kept by tag
    ok("run", str(path))  # 3: goes
    ok("run", str(path))  # 4: the newest, kept by --keep-last 1
    ok("deploy", str(path))
    doomed = Run("KeepFlow/3").data.payload
    dry = ok("gc", "--keep-last", "1", "--dry-run", "--grace", "0")
    assert "would delete run KeepFlow/3" in dry and _ids() == [1, 2, 3, 4]
    out = ok("gc", "--keep-last", "1", "--grace", "0")
    assert "deleted run KeepFlow/3" in out and "deleted the metadata of 1 run(s)" in out
    assert "source of a registered model" in out and "tagged 'keep'" in out
    assert _ids() == [1, 2, 4]
    store = get_store()
    from reelflow.store._serialize import encode

    assert not store.blobs.exists(encode(doomed).key)  # its blob went with it
    from reelflow import models

    assert models.load("keepmodel")["w"] == Run("KeepFlow/1").data.payload
    code = get_deployment("KeepFlow").code
    assert b"class KeepFlow" in bytes(store.load(code["keep.py"]))  # the snapshot survived (hash-checked)


def test_older_than_parses_units_and_bad_age_exits_2(flow_dir):
    path = flow_dir("keep.py", FLOW)
    ok("run", str(path))
    assert "deleted the metadata of 0 run(s)" in ok("gc", "--older-than", "30d")
    assert _ids() == [1]
    res = cli("gc", "--older-than", "soon")
    assert res.returncode == 2 and "--older-than 'soon'" in res.stderr
    time.sleep(1.2)
    assert "deleted the metadata of 1 run(s)" in ok("gc", "--older-than", "1s")


def test_gc_while_a_run_is_in_flight_keeps_it_and_its_blobs(flow_dir):
    from reelflow import Run

    path = flow_dir("keep.py", FLOW)
    ok("run", str(path))
    proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "run", str(path), "--nap", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
                            cwd=path.parent)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and len(_ids()) < 2:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        out = ok("gc", "--keep-last", "0", "--older-than", "0s", "--grace", "0")
        assert "running" in out  # the in-flight run matched the policy and was protected
        out_run, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out_run
    assert _ids() == [2]
    assert Run("KeepFlow/2").successful and Run("KeepFlow/2").data.payload.startswith("xxxx")
