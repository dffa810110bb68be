"""Feedback: served requests and POST /v1/feedback logged as Parquet partitions, read back for training."""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("fastapi")

from serving._server import ServerProcess, small_model  # noqa: E402

from reelflow import models  # noqa: E402

URL = "/v1/models/recs/recommend"


def _client(**config):
    from reelflow.serving import ServeConfig, create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(ServeConfig("recs@champion", poll_interval=0, **config)))


@pytest.fixture
def registered():
    models.register("recs", small_model(0), alias="champion")


def _parts(home, table):
    return sorted((home / "feedback" / "recs" / table).glob("date=*/hour=*/part-*.parquet"))


def test_served_and_feedback_are_logged_and_read_back_as_interactions(registered, reelflow_home):
    import pyarrow.parquet as pq

    from reelflow.recs.datasets import from_feedback, read_feedback

    with _client() as c:
        r = c.post(URL, json={"user_id": 3, "k": 5})
        assert r.status_code == 200
        rid = r.json()["request_id"]
        assert r.headers["x-request-id"] == rid and len(r.json()["items"]) == 5
        item = r.json()["items"][0]["item_id"]
        b = c.post(URL, json={"user_ids": [1, 2], "k": 3}).json()
        assert c.post("/v1/feedback", json={"request_id": rid, "user_id": 3, "item_id": item, "event": "play",
                                            "value": 1.0}).status_code == 202
        assert c.post("/v1/feedback", json={"request_id": b["request_id"], "user_id": 2, "item_id": 7,
                                            "event": "click"}).status_code == 202
        bad = c.post("/v1/feedback", json={"request_id": "0" * 28, "user_id": 3, "item_id": 1, "event": "play"})
        assert bad.status_code == 422 and "was not issued by this server" in bad.text
        assert c.post("/v1/feedback", json={"request_id": rid, "user_id": 3}).status_code == 422
    # leaving the client ran the shutdown: everything is flushed
    served = pq.read_table(_parts(reelflow_home, "served")).to_pandas()
    assert len(served) == 3 and set(served["user_id"]) == {"1", "2", "3"}
    row = served[served["request_id"] == rid].iloc[0]
    assert len(row["items"]) == 5 and row["items"][0] == str(item) and row["version"] == 1
    fb = read_feedback("recs")
    assert list(fb["event"]) == ["play", "click"] and fb["request_id"].iloc[0] == rid
    data = from_feedback("recs", weights={"play": 1.0, "click": 0.5})
    assert len(data) == 2 and data.n_users == 2
    assert len(from_feedback("recs", events=["play"])) == 1
    assert read_feedback("recs", until=time.time() - 3600).empty


def test_logging_off_leaves_responses_as_before(registered, reelflow_home):
    with _client(feedback=False) as c:
        r = c.post(URL, json={"user_id": 3, "k": 5})
        assert "request_id" not in r.json() and "x-request-id" not in r.headers
        assert c.post("/v1/feedback", json={}).status_code == 404
    assert not (reelflow_home / "feedback").exists()


def test_partition_rollover_publishes_partition_closed(registered, reelflow_home, monkeypatch):
    from reelflow import events
    from reelflow.serving import _feedback

    log = _feedback.FeedbackLog("recs")
    log.feedback(log.new_request_id(), 1, 2, "play", 1.0)
    log.flush()
    assert events.list_events("feedback.partition_closed") == []
    hour_later = time.time() + 3600
    monkeypatch.setattr(_feedback.time, "time", lambda: hour_later)
    log.flush()
    ev = events.list_events("feedback.partition_closed")
    assert len(ev) == 1 and ev[0]["payload"]["model"] == "recs" and ev[0]["payload"]["partition"].startswith("date=")


def test_kill_9_loses_at_most_the_last_flush_interval(registered, reelflow_home, tmp_path):
    import httpx
    import pyarrow.parquet as pq

    srv = ServerProcess("recs@champion", home=reelflow_home, log_dir=tmp_path)
    try:
        ids = []
        with httpx.Client(base_url=srv.url, timeout=30) as h:
            for u in range(20):
                r = h.post(URL, json={"user_id": u % 50, "k": 3})
                assert r.status_code == 200, r.text
                ids.append(r.json()["request_id"])
                assert h.post("/v1/feedback", json={"request_id": ids[-1], "user_id": u % 50, "item_id": 1,
                                                    "event": "play"}).status_code == 202
        time.sleep(3.0)  # more than the 1 s flush interval: all of it must be on disk now
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(30)
    finally:
        srv.stop()
    served = pq.read_table(_parts(reelflow_home, "served")).to_pandas()
    feedback = pq.read_table(_parts(reelflow_home, "feedback")).to_pandas()
    assert sorted(served["request_id"]) == sorted(ids) and sorted(feedback["request_id"]) == sorted(ids)
    assert not list((reelflow_home / "feedback").rglob(".tmp-*"))


@pytest.mark.parametrize("uid, iid", [(3, 5), ("u3", "m5")])
def test_arrow_and_python_parsers_of_served_rows_agree(uid, iid):
    import json

    from reelflow.serving._feedback import _served_arrow, _served_python

    body = json.dumps({"model": "recs", "version": 2, "user_id": uid, "fallback": None,
                       "items": [{"item_id": iid, "score": 0.5, "title": "T"}, {"item_id": iid, "score": None}]})
    empty = json.dumps({"model": "recs", "version": 2, "user_id": uid, "fallback": "popularity", "items": []})
    rows = [("r1", body.encode(), 1.0), ("r2", empty.encode(), 2.0)]
    fast, slow = _served_arrow(rows), _served_python(rows)
    assert fast.equals(slow)
    assert fast.column("items").to_pylist() == [[str(iid), str(iid)], []]


def test_a_flush_that_spans_two_hours_writes_each_row_to_its_hour(tmp_path, monkeypatch):
    import json

    import pyarrow.parquet as pq

    from reelflow.serving import _feedback

    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False)
    single = json.dumps({"model": "recs", "version": 1, "user_id": 7, "fallback": None,
                         "items": [{"item_id": 3, "score": 0.5}]}).encode()
    batch = json.dumps({"model": "recs", "version": 1, "results": [
        {"user_id": 8, "fallback": None, "items": [{"item_id": 4, "score": 0.25}]},
        {"user_id": 9, "fallback": "popularity", "items": []}]}).encode()
    end_of_hour = 1_767_225_599.5  # 2025-12-31 23:59:59.5 UTC
    for at, rid, body, is_batch in [(end_of_hour, "a", single, False), (end_of_hour + 1, "b", single, False),
                                    (end_of_hour, "c", batch, True), (end_of_hour + 1, "d", batch, True)]:
        monkeypatch.setattr(_feedback.time, "time", lambda at=at: at)
        log.served(rid, body, batch=is_batch)
    assert log.flush(final=True) == 6
    parts = {p.parent.parent.name + "/" + p.parent.name: pq.read_table(p).to_pylist()
             for p in (tmp_path / "served").glob("date=*/hour=*/part-*.parquet")}
    assert sorted(parts) == ["date=2025-12-31/hour=23", "date=2026-01-01/hour=00"]
    before, after = parts["date=2025-12-31/hour=23"], parts["date=2026-01-01/hour=00"]
    assert sorted((r["request_id"], r["user_id"]) for r in before) == [("a", "7"), ("c", "8"), ("c", "9")]
    assert sorted((r["request_id"], r["user_id"]) for r in after) == [("b", "7"), ("d", "8"), ("d", "9")]
    assert [r["items"] for r in before if r["request_id"] == "a"] == [["3"]]


@pytest.mark.parametrize("ids, scores", [
    (np.array([5, 3, 9]), np.array([0.5, np.nan, -np.inf], dtype=np.float32)),
    (np.array(["m5", "m3"], dtype=object), np.array([0.25, 0.125])),
    (np.array([], dtype=np.int64), np.array([], dtype=np.float32)),
])
def test_rows_recorded_from_arrays_equal_rows_parsed_from_the_response(tmp_path, ids, scores):
    """served_items (the single-user fast path) writes what the body path writes for the same answer."""
    import json

    from reelflow.serving import _feedback
    from reelflow.serving._app import _items

    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False)
    body = json.dumps({"model": "recs", "version": 3, "user_id": 42, "fallback": None,
                       "items": _items({}, ids, scores)}).encode()
    log.served_items("r1", "42", ids, scores, "recs", 3)
    from_arrays = _feedback._served_from_arrays(list(log._served_items))
    from_body = _feedback._served_python([("r1", body, log._served_items[0][-1])])
    assert from_arrays.equals(from_body), (from_arrays.to_pylist(), from_body.to_pylist())
