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
        # Flushed within an interval or so (1 s; the watchdog's 5 s on a saturated machine): wait with a
        # wide margin for all of it to reach disk, then kill -9 mid-interval.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = _parts(reelflow_home, "served"), _parts(reelflow_home, "feedback")
            if all(parts) and all(sum(pq.read_metadata(p).num_rows for p in ps) == len(ids) for ps in parts):
                break
            time.sleep(0.2)
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


def test_request_ids_come_from_a_refilled_pool_are_unique_and_verify(tmp_path):
    """Ids are made ahead in bulk (the request path pops one); a burst past the pool still gets ids,
    the next refill grows the pool to twice what was taken, a fork does not reuse the parent's ids,
    and ids tagged by an earlier server (HMAC-SHA256) are still accepted."""
    import hashlib
    import hmac

    from reelflow.serving import _feedback

    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False)
    assert len(log._ids) == _feedback._POOL_MIN
    burst = [log.new_request_id() for _ in range(3 * _feedback._POOL_MIN)]  # empties the pool, then inline
    assert len(set(burst)) == len(burst) and all(log.known_request_id(r) for r in burst)
    log._size_ids()  # once per flush interval: the target follows what requests took
    assert log._ids_target == 2 * 3 * _feedback._POOL_MIN
    log._refill_ids(_feedback._SLICE)  # the flusher adds a slice at a time
    assert len(log._ids) == _feedback._SLICE
    log._refill_ids()
    assert len(log._ids) == 2 * 3 * _feedback._POOL_MIN
    tampered = burst[0][:-1] + ("0" if burst[0][-1] != "0" else "1")
    assert not log.known_request_id(tampered) and not log.known_request_id(burst[0] + "0")
    assert not log.known_request_id(None) and not log.known_request_id(12)
    rnd = "0123456789abcdef"
    older = rnd + hmac.new(log._key, rnd.encode(), hashlib.sha256).hexdigest()[:_feedback._TAG]
    assert log.known_request_id(older)
    # a second log over the same folder (another worker, a restart) knows this one's ids
    assert _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False).known_request_id(burst[-1])

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pool starts empty, so it cannot hand out an id the parent will
        os._exit(0 if len(log._ids) == 0 else 1)
    os.close(write)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and len(log._ids) > 0


def _rows(log, n, start=0):
    for i in range(start, start + n):
        log.served_items(log.new_request_id(), str(i), np.array([i, i + 1]), np.array([0.5, 0.25]), "recs", 1)


def test_the_background_thread_flushes_at_idle_priority_and_the_watchdog_when_it_starves(tmp_path, monkeypatch):
    """Rows go out every flush interval from a SCHED_IDLE thread (Linux); when that thread gets no CPU
    the watchdog, at the server's priority, flushes instead; stop writes the rest."""
    import pyarrow.parquet as pq

    from reelflow.serving import _feedback

    def wait_for(rows: int) -> None:
        deadline = time.monotonic() + 60
        while log.rows_written < rows and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.rows_written == rows

    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False, flush_interval=0.2)
    log.start()
    try:
        _rows(log, 1500)
        wait_for(1500)
        worker = log._thread
        assert worker is not None and worker.native_id is not None
        stat = f"/proc/self/task/{worker.native_id}/stat"
        if os.path.exists(stat) and hasattr(os, "SCHED_IDLE"):
            policy = int(open(stat).read().rpartition(")")[2].split()[38])
            assert policy in (os.SCHED_IDLE, os.SCHED_OTHER)  # OTHER where a sandbox refuses the policy
    finally:
        log.stop()

    import threading

    gate = threading.Event()
    monkeypatch.setattr(_feedback, "_idle_priority", gate.wait)  # the idle-priority thread never gets to run
    log = _feedback.FeedbackLog("recs", root=tmp_path / "b", publish_events=False, flush_interval=0.1)
    log.start()
    try:
        _rows(log, 10)
        wait_for(10)  # the watchdog flushed
    finally:
        gate.set()
        log.stop()
    t = pq.read_table(sorted(tmp_path.glob("served/*/*/part-*.parquet")))
    assert sorted(int(u) for u in t.column("user_id").to_pylist()) == list(range(1500))
    assert t.column("items").to_pylist()[t.column("user_id").to_pylist().index("999")] == ["999", "1000"]
    assert list(tmp_path.glob("served/*/*/.tmp-*")) == []


def test_a_failed_write_keeps_its_rows_for_the_next_flush(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from reelflow.serving import _feedback

    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False)
    real_write = pq.write_table

    def disk_full(table, where, **kw):
        open(where, "wb").write(b"PAR1 half a file")  # what a full disk leaves behind
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    _rows(log, 400)
    log.feedback(log.new_request_id(), 1, 2, "play", 1.0)
    with pytest.raises(OSError, match="No space left"):
        log.flush()
    assert list(tmp_path.glob("*/*/*/*part-*")) == [] and log.rows_written == 0  # no half part left
    monkeypatch.setattr(pq, "write_table", real_write)  # the disk has room again
    _rows(log, 100, start=400)
    assert log.flush() == 501
    served = pq.read_table(sorted(tmp_path.glob("served/*/*/part-*.parquet")))
    assert sorted(int(u) for u in served.column("user_id").to_pylist()) == list(range(500))
    assert pq.read_table(sorted(tmp_path.glob("feedback/*/*/part-*.parquet"))).num_rows == 1


def test_start_removes_parts_a_killed_server_left_half_written(tmp_path):
    from reelflow.serving import _feedback

    folder = tmp_path / "served" / "date=2026-01-01" / "hour=00"
    folder.mkdir(parents=True)
    old, fresh = folder / ".tmp-part-1-2-3.parquet", folder / ".tmp-part-4-5-6.parquet"
    old.write_bytes(b"PAR1")
    fresh.write_bytes(b"PAR1")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    log = _feedback.FeedbackLog("recs", root=tmp_path, publish_events=False)
    log.start()
    try:
        assert not old.exists() and fresh.exists()
    finally:
        log.stop()
