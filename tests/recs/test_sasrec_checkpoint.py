"""SASRec inside a flow step with ``@checkpoint``: its per-epoch checkpoint lives in the store, so
a worker killed after some epochs is continued by ``@retry`` (``resume`` restores the same way:
tests/compat/test_checkpoint.py)."""

import os
import subprocess
import sys

import pytest

FLOW = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from reelflow import FlowSpec, step, current, retry, checkpoint


class SasrecCkptFlow(FlowSpec):

    @step
    def start(self):
        self.next(self.train)

    @retry(times=int(os.environ.get("RETRIES", "1")), minutes_between_retries=0)
    @checkpoint
    @step
    def train(self):
        from test_sasrec import cycle, small

        if current.retry_count == 0 and os.environ.get("KILL"):
            small(max_epochs=2).fit(cycle(), verbose=False)  # saves epoch 1 through current.checkpoint (the last epoch is not saved)
            os.kill(os.getpid(), signal.SIGKILL)
        self.loaded = current.checkpoint.is_loaded
        self.model = small(max_epochs=4).fit(cycle(), verbose=True)
        self.epochs = self.model.history_.epoch.tolist()
        self.n_epochs = self.model.epochs_
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SasrecCkptFlow()
"""


def _run(path, *args, env, check=True):
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=path.parent)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _train_task(home):
    code = ("from reelflow import Flow, namespace; namespace(None); t = Flow('SasrecCkptFlow').latest_run['train'].task;"
            "print(t.data.loaded, t.data.n_epochs, t.data.epochs)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "REELFLOW_HOME": str(home)}, check=True)
    return out.stdout.strip()


def test_killed_sasrec_training_continues_on_retry_and_on_resume(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "sasrec_flow.py"
    path.write_text(FLOW.format(tests=os.path.dirname(__file__)))
    env = {"REELFLOW_HOME": str(tmp_path / "home"), "KILL": "1", "REELFLOW_PROGRESS": "1"}
    proc = _run(path, "run", env=env)
    assert "resuming from the checkpoint of epoch 1" in proc.stdout + proc.stderr
    # the retry trained epochs 2-4 only; epoch 1 came from the checkpoint
    assert _train_task(tmp_path / "home") == "True 4 [1, 2, 3, 4]"
