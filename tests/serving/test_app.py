"""The serving app in-process (no server, no poller thread): limits, readiness, GC."""

import gc
import warnings

import pytest
from serving._server import small_model

from reelflow import models
from reelflow.serving import ModelHolder, ServeConfig, create_app

URL = "/v1/models/recs/recommend"


@pytest.fixture
def registered():
    models.register("recs", small_model(0), alias="champion")


def TestClient(app):
    with warnings.catch_warnings():  # starlette would rather have httpx2; httpx is what the suite has
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient as _TestClient
    return _TestClient(app)


def client(**config):
    return TestClient(create_app(ServeConfig("recs@champion", poll_interval=0, **config)))


def test_work_per_request_is_limited_with_a_422_naming_the_limit(registered):
    c = client(max_work=50)
    assert c.post(URL, json={"user_ids": [1, 2, 3, 4, 5], "k": 10}).status_code == 200
    r = c.post(URL, json={"user_ids": [1, 2, 3, 4, 5, 6], "k": 10})
    assert r.status_code == 422
    assert "6 users x k=10 = 60 recommendations" in r.json()["detail"] and "at most 50 (users x k)" in r.text


def test_a_full_scoring_queue_answers_503_with_retry_after(registered):
    r = client(max_pending=0, inline_cells=0).post(URL, json={"user_id": 1})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.text
    c = client(max_pending=0)
    assert c.post(URL, json={"user_id": 1}).status_code == 200  # tiny: answered on the loop, no queue
    assert c.post(URL, json={"user_ids": list(range(300))}).status_code == 503  # 300 x 200 items: a thread's work


def test_body_limit_applies_before_parsing(registered):
    c = client(max_body_bytes=100)
    assert c.post(URL, json={"user_id": 1}).status_code == 200
    r = c.post(URL, json={"user_ids": list(range(50))})
    assert r.status_code == 413 and "100 bytes limit" in r.text


def test_an_alias_that_disappears_or_fails_makes_readiness_degraded(registered):
    holder = ModelHolder("recs@champion", poll_interval=0)
    c = TestClient(create_app(ServeConfig("recs@champion", poll_interval=0), holder))
    assert c.get("/readyz").json()["status"] == "ready"
    models.delete_alias("recs", "champion")
    assert holder.refresh() is False
    ready = c.get("/readyz")
    assert ready.status_code == 200  # still serving version 1: not taken out of rotation
    assert ready.json()["status"] == "degraded" and "no longer points" in ready.json()["error"]
    assert c.post(URL, json={"user_id": 1}).json()["version"] == 1
    models.register("recs", {"not": "a model"})
    models.set_alias("recs", "champion", 2)
    holder.refresh()
    ready = c.get("/readyz").json()
    assert ready["failed_version"] == 2 and "not a recommender" in ready["error"] and holder.load_failures == 1
    models.set_alias("recs", "champion", 1)
    holder.refresh()
    assert c.get("/readyz").json() == {"status": "ready", "model": "recs", "alias": "champion", "version": 1}


def test_an_app_built_in_process_leaves_the_callers_gc_alone(registered):
    before = gc.get_freeze_count()
    c = client()
    assert c.post(URL, json={"user_id": 1}).status_code == 200
    assert gc.get_freeze_count() == before
