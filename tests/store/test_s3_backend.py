"""Blobs on S3: the same flows against an S3 API served on 127.0.0.1 (moto's server).

Skips when moto or s3fs is not installed.
"""

import socket

import pytest

from helpers import run_py

from reelflow import Flow, models
from reelflow.errors import CorruptArtifactError
from reelflow.store import _stores

FLOW = """
import numpy as np
from reelflow import FlowSpec, step

class S3Flow(FlowSpec):
    @step
    def start(self):
        self.arr = np.arange(200_000, dtype=np.float64)
        self.xs = [1, 2, 3]
        self.next(self.each, foreach="xs")

    @step
    def each(self):
        self.part = float(self.arr[: self.input * 10].sum())
        self.next(self.join)

    @step
    def join(self, inputs):
        self.parts = [i.part for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    S3Flow()
"""


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_store(s3_endpoint, monkeypatch, tmp_path):
    import s3fs

    import json

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "REELFLOW_STORE_OPTIONS": json.dumps({"endpoint_url": s3_endpoint, "key": "test", "secret": "test"})}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"b{tmp_path.name[-20:].lower().replace('_', '-')}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="test", secret="test", skip_instance_cache=True)
    fs.mkdir(bucket)
    url = f"s3://{bucket}/reelflow"
    monkeypatch.setenv("REELFLOW_STORE_URL", url)
    _stores.clear()
    yield fs, f"{bucket}/reelflow"
    _stores.clear()


def test_flows_client_and_registry_on_s3(s3_store, write_flow):
    fs, prefix = s3_store
    path = write_flow(FLOW)
    p = run_py(path, "run", "--quiet")
    assert p.returncode == 0, p.stderr
    run = Flow("S3Flow").latest_run
    assert run["join"].task.data.parts == [45.0, 190.0, 435.0]
    assert run["start"].task.data.arr.shape == (200_000,)
    art = run["start"].task["arr"]
    assert fs.exists(f"{prefix}/{art.sha[:2]}/{art.sha}")  # the blob lives on S3
    assert models.load(models.register("s3-model", art).spec).sum() == art.data.sum()
    # a damaged object is detected on read
    key = f"{prefix}/{art.sha[:2]}/{art.sha}"
    data = bytearray(fs.cat_file(key))
    data[-1] ^= 0xFF
    fs.pipe_file(key, bytes(data))
    _stores.clear()
    with pytest.raises(CorruptArtifactError, match="artifact 'arr'"):
        Flow("S3Flow").latest_run["start"].task.data.arr
