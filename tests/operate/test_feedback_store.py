"""Feedback tables follow the team's blob store: with ``REELFLOW_STORE_URL=s3://...`` (moto's S3 server on
127.0.0.1) the served and feedback Parquet parts, and the request-id secret, go to the bucket, training reads
them from there, and the blob garbage collector never takes them for blobs. Skips without moto or s3fs."""

from __future__ import annotations

import json
import socket
import warnings

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("fastapi")

from serving._server import small_model  # noqa: E402

MODEL = "mf"  # two characters, like a blob folder: the garbage collector must still leave its tables alone
URL = f"/v1/models/{MODEL}/recommend"


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

    from reelflow.store import _stores

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "REELFLOW_STORE_OPTIONS": json.dumps({"endpoint_url": s3_endpoint, "key": "test", "secret": "test"})}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"fb{tmp_path.name[-20:].lower().replace('_', '-')}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="test", secret="test", skip_instance_cache=True)
    fs.mkdir(bucket)
    monkeypatch.setenv("REELFLOW_STORE_URL", f"s3://{bucket}/reelflow")
    _stores.clear()
    yield fs, f"{bucket}/reelflow"
    _stores.clear()


def _client():
    from reelflow.serving import ServeConfig, create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(ServeConfig(f"{MODEL}@champion", poll_interval=0)))


def test_feedback_tables_go_to_the_s3_store_and_training_reads_them_there(s3_store, reelflow_home):
    from reelflow import models
    from reelflow.recs.datasets import from_feedback, read_feedback
    from reelflow.serving._feedback import FeedbackLog
    from reelflow.store import get_store

    fs, prefix = s3_store
    models.register(MODEL, small_model(0), alias="champion")
    with _client() as c:
        r = c.post(URL, json={"user_id": 3, "k": 5})
        assert r.status_code == 200, r.text
        rid, item = r.json()["request_id"], r.json()["items"][0]["item_id"]
        assert c.post("/v1/feedback", json={"request_id": rid, "user_id": 3, "item_id": item,
                                            "event": "play"}).status_code == 202
    # shutdown flushed: both tables are parts in the bucket, nothing in the local home
    root = f"{prefix}/feedback/{MODEL}"
    for table in ("served", "feedback"):
        parts = fs.glob(f"{root}/{table}/date=*/hour=*/part-*.parquet")
        assert len(parts) == 1, fs.find(root)
    assert not list(reelflow_home.glob("feedback/**/*.parquet"))
    fb = read_feedback(MODEL)
    assert list(fb["request_id"]) == [rid] and list(fb["event"]) == ["play"]
    assert len(from_feedback(MODEL)) == 1
    # the request-id secret is the team's: another server (another host) accepts this one's ids
    assert fs.exists(f"{root}/.request-id-secret")
    assert FeedbackLog(MODEL).known_request_id(rid)
    # the blob store lists only blobs: the tables and the secret are never garbage to it
    listed = [f.path for f in get_store().blobs.files()]
    assert listed and not [p for p in listed if "/feedback/" in p], listed
