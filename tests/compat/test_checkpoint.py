"""``@checkpoint`` (Metaflow's checkpoint extension's surface; not in Metaflow itself, so reelflow only):
a training loop saves every epoch, is killed midway, and continues from its last checkpoint on
``@retry`` and on ``resume``."""

import pytest

from compat._compat import Engine

FLOW = """
import os, signal
from metaflow import FlowSpec, step, current, retry, checkpoint


class TrainCkptFlow(FlowSpec):

    @step
    def start(self):
        self.next(self.train)

    @retry(times=int(os.environ.get("CK_RETRIES", "1")), minutes_between_retries=0)
    @checkpoint(load_policy=os.environ.get("CK_POLICY", "fresh"))
    @step
    def train(self):
        d = current.checkpoint.directory
        first = 0
        if current.checkpoint.is_loaded:
            with open(os.path.join(d, "model", "state.txt")) as f:
                first = int(f.read()) + 1
        self.loaded = current.checkpoint.is_loaded
        self.first_epoch = first
        self.loaded_from = current.checkpoint.info and current.checkpoint.info["pathspec"]
        ref = current.checkpoint.info
        for epoch in range(first, 6):
            mode = os.environ.get("CK_FAIL", "")
            if epoch == 3 and (mode == "always" or (mode and current.retry_count == 0)):
                if mode == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("failed at epoch 3")
            os.makedirs(os.path.join(d, "model"), exist_ok=True)
            with open(os.path.join(d, "model", "state.txt"), "w") as f:
                f.write(str(epoch))
            ref = current.checkpoint.save(metadata={"epoch": epoch})
        self.last_ref = ref
        self.saved = [c["metadata"]["epoch"] for c in current.checkpoint.list()]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TrainCkptFlow()
"""

READ = """
from metaflow import Flow, namespace
namespace(None)
t = Flow("TrainCkptFlow").latest_run["train"].task
emit([t.data.loaded, t.data.first_epoch, t.data.loaded_from, t.data.last_ref["metadata"], t.data.saved[:2]])
"""


@pytest.fixture
def reelflow(tmp_path):
    return Engine("reelflow", tmp_path)


@pytest.mark.parametrize("fail", ["sigkill", "raise"])
def test_retry_continues_from_the_last_checkpoint(reelflow, fail):
    path = reelflow.write("train_flow.py", FLOW)
    reelflow.run(path, "run", env={"CK_FAIL": fail})
    loaded, first, loaded_from, meta, saved = reelflow.client(READ)[0]
    # epochs 0..2 were saved by attempt 0; attempt 1 restored epoch 2's folder and went on from 3
    assert [loaded, first, meta] == [True, 3, {"epoch": 5}]
    assert loaded_from == "TrainCkptFlow/1/train/2"
    assert saved == [5, 4]  # newest first, attempt 0's and attempt 1's saves of this task


def test_resume_starts_from_the_failed_attempts_checkpoint(reelflow):
    path = reelflow.write("train_flow.py", FLOW)
    failed = reelflow.run(path, "run", env={"CK_FAIL": "always", "CK_RETRIES": "0"}, check=False)
    assert failed.returncode != 0
    reelflow.run(path, "resume")
    loaded, first, loaded_from, meta, _ = reelflow.client(READ)[0]
    assert [loaded, first, loaded_from, meta] == [True, 3, "TrainCkptFlow/1/train/2", {"epoch": 5}]
    # a resume of the resumed run still finds the first run's checkpoint (the origin chain)
    reelflow.run(path, "resume", "train")
    loaded, first, loaded_from, _, _ = reelflow.client(READ)[0]
    assert [loaded, first, loaded_from] == [True, 6, "TrainCkptFlow/2/train/2"]


def test_load_policies(reelflow, monkeypatch):
    path = reelflow.write("train_flow.py", FLOW)
    reelflow.run(path, "run", env={"CK_FAIL": "raise", "CK_POLICY": "none"})
    assert reelflow.client(READ)[0][:3] == [False, 0, None]  # the retry started over
    reelflow.run(path, "run")  # fresh: a new run does not see the last run's checkpoints
    assert reelflow.client(READ)[0][:2] == [False, 0]
    reelflow.run(path, "run", env={"CK_POLICY": "eager"})  # eager: continues the newest one
    assert reelflow.client(READ)[0][:3] == [True, 6, "TrainCkptFlow/2/train/2"]
    # checkpoints are blobs of the store that `reelflow gc` keeps
    from reelflow.config import load_config
    from reelflow.runtime._checkpoint import checkpoint_rows
    from reelflow.store import Store

    monkeypatch.setenv("REELFLOW_HOME", str(reelflow.root / "home"))
    store = Store(load_config())
    rows = checkpoint_rows(store, "TrainCkptFlow", "2")
    keys, _ = store.metadata.referenced_blob_keys()
    assert len(rows) == 6 and all(r["key"] in keys for r in rows)
    from reelflow.store._retention import delete_runs  # deleting a run deletes its checkpoints

    assert delete_runs(store, ["TrainCkptFlow/2"]) == 1 and checkpoint_rows(store, "TrainCkptFlow", "2") == []
    store.metadata.close()


def test_checkpoint_outside_a_decorated_step_is_a_clear_error(reelflow):
    from reelflow import current
    from reelflow.errors import ReelflowError

    with pytest.raises(ReelflowError, match="decorated with @checkpoint"):
        current.checkpoint.save()
    path = reelflow.write("bad_flow.py", FLOW.replace('os.environ.get("CK_POLICY", "fresh")', '"sometimes"'))
    proc = reelflow.run(path, "run", check=False)
    assert proc.returncode != 0 and "load_policy is 'fresh'" in proc.stderr
