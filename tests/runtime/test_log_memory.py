"""A task's output is streamed to the store: the runner's memory does not grow with it."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from reelflow import Flow

LOUD = """
import sys
class Loud(FlowSpec):
    @step
    def start(self):
        for block in range(BLOCKS):
            sys.stdout.write("".join(f"{block:05d}{i:05d} " + "x" * 88 + "\\n" for i in range(10_000)))
        sys.stdout.flush()
        self.next(self.end)
    @step
    def end(self):
        pass
"""

DRIVER = """
import re, sys
from reelflow.cli import load_flow_file
from reelflow.runtime import LocalRuntime
from reelflow.store import get_store

def hwm_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

cls = load_flow_file(sys.argv[1])
get_store().metadata.list_flows()  # the database engine is loaded before the baseline
base = hwm_kib()
LocalRuntime(cls, quiet=True, max_workers=1).run()
print(base, hwm_kib())
"""


def _expected(blocks: int) -> str:
    return "".join(f"{b:05d}{i:05d} " + "x" * 88 + "\n" for b in range(blocks) for i in range(10_000))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
def test_runner_memory_stays_bounded_and_the_log_reads_back_exactly(write_flow, tmp_path):
    blocks = 105  # 105 x 10,000 lines x 100 bytes: 105 MB of output
    path = write_flow(LOUD.replace("BLOCKS", str(blocks)))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    p = subprocess.run([sys.executable, str(driver), str(path)], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    base, peak = map(int, p.stdout.split()[-2:])
    growth_mib = (peak - base) / 1024
    print(f"runner peak memory grew by {growth_mib:.0f} MiB for {blocks} MB of task output")
    assert growth_mib < 64, f"the runner's peak memory grew by {growth_mib:.0f} MiB while a task printed 105 MB"
    t = Flow("Loud").latest_run["start"].task
    text = t.stdout
    assert len(text) == blocks * 1_000_000
    assert hashlib.sha256(text.encode()).digest() == hashlib.sha256(_expected(blocks).encode()).digest()
    assert t.stderr == ""


def test_a_chunked_log_reads_back_through_the_client_and_logs(load_flow, monkeypatch, capsys):
    from reelflow.runtime import LocalRuntime, _logs
    from reelflow.runtime._logcli import print_logs
    from reelflow.store import get_store

    monkeypatch.setattr(_logs, "CHUNK", 64)
    cls = load_flow("""
        class Chunky(FlowSpec):
            @step
            def start(self):
                for i in range(50):
                    print(f"line {i}")
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    run_id = LocalRuntime(cls, quiet=True, inprocess=True).run()
    t = Flow("Chunky")[run_id]["start"].task
    manifest = get_store().load(t._row["stdout_key"])
    assert isinstance(manifest, dict) and len(manifest["chunks"]) > 5
    expected = [f"line {i}" for i in range(50)]
    assert t.stdout.splitlines() == expected
    capsys.readouterr()
    print_logs(f"Chunky/{run_id}/start", "stdout")
    assert capsys.readouterr().out.splitlines() == [f"[Chunky/{run_id}/start/1] {line}" for line in expected]
