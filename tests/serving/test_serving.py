"""`reelflow serve` as a real process on 127.0.0.1: API, validation, auth, hot-swap, fuzzing."""

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelflow import models
from reelflow.recs import EASE, Interactions, MostPopular


def small_model(seed=0, cls=EASE):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user_id": rng.integers(0, 50, 1500), "item_id": rng.integers(0, 40, 1500)})
    meta = pd.DataFrame({"title": [f"Title {i}" for i in range(40)]}, index=pd.Index(range(40), name="item_id"))
    data = Interactions.from_frame(df, item_meta=meta)
    return cls(l2=10.0).fit(data) if cls is EASE else cls().fit(data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, spec, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelflow.cli", "serve", spec, "--port", str(self.port), "--poll-interval", "0.2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        self.started = time.perf_counter()
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1, headers=self._auth(extra)).status_code in (200, 401):
                    self.ready_after = time.perf_counter() - self.started
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("server did not become ready")

    @staticmethod
    def _auth(extra):
        return {"Authorization": f"Bearer {extra[extra.index('--token') + 1]}"} if "--token" in extra else {}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def server():
    models.register("recs", small_model(0), alias="champion")
    s = Server("recs@champion")
    yield s
    s.stop()


def rec(s, body, client=None):
    return (client or httpx).post(f"{s.url}/v1/models/recs/recommend", json=body, timeout=10)


def test_recommend_single_batch_and_fallback(server):
    r = rec(server, {"user_id": 3, "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "recs" and body["version"] == 1 and len(body["items"]) == 5
    assert {"item_id", "score", "title"} <= set(body["items"][0])
    assert body["items"][0]["title"].startswith("Title ")
    r = rec(server, {"user_ids": [3, "3", "stranger"], "k": 2, "exclude_seen": False}).json()
    assert [x["user_id"] for x in r["results"]] == [3, "3", "stranger"]
    assert r["results"][0]["items"] == r["results"][1]["items"]  # "3" finds user 3
    pop = models.load("recs/1").item_popularity_
    assert r["results"][2]["items"][0]["item_id"] == int(np.argmax(pop))  # popularity fallback


def test_service_endpoints(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["version"] == 1
    info = httpx.get(f"{server.url}/v1/models").json()["models"][0]
    assert info["name"] == "recs" and info["alias"] == "champion" and info["loaded_at"] > 0
    rec(server, {"user_id": 1})
    rec(server, {"user_id": 1, "k": 0})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'reelflow_requests_total{method="POST",route="/v1/models/{name}/recommend",status="200"}' in text
    assert 'status="422"' in text and "reelflow_request_seconds_bucket" in text
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/models/{name}/recommend" in schema["paths"]
    assert server.ready_after < 15


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"user_id": 1, "k": 0}, 422, "greater than or equal to 1"),
        ({"user_id": 1, "k": 5000}, 422, "less than or equal to 1000"),
        ({"user_id": 1, "k": 500}, 422, "exceeds the catalogue (40 items)"),
        ({"k": 3}, 422, "exactly one of user_id"),
        ({"user_id": 1, "user_ids": [1]}, 422, "exactly one of user_id"),
        ({"user_ids": list(range(1001))}, 422, "at most 1000"),
        ({"user_id": 1, "extra": True}, 422, "extra"),
        ({"user_id": [1, 2]}, 422, "user_id"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(server, body, status, needle):
    r = rec(server, body)
    assert r.status_code == status and needle in r.text


def test_unknown_model_and_garbage(server):
    assert httpx.post(f"{server.url}/v1/models/other/recommend", json={"user_id": 1}).status_code == 404
    r = httpx.post(f"{server.url}/v1/models/recs/recommend", content=b"\x80\x04K\x01.",
                   headers={"content-type": "application/octet-stream"})
    assert r.status_code == 422  # never unpickled
    assert httpx.get(f"{server.url}/v1/models/recs/recommend").status_code == 405


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"user_id": json_values, "user_ids": json_values, "k": json_values,
                                        "exclude_seen": json_values}),
)


def test_fuzzed_requests_never_cause_5xx(server):
    client = httpx.Client(timeout=10)
    statuses = []

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def check(body):
        r = client.post(f"{server.url}/v1/models/recs/recommend", json=body)
        statuses.append(r.status_code)
        assert r.status_code < 500, (body, r.text)

    check()
    assert len(statuses) >= 1000 and any(s == 200 for s in statuses) and any(s == 422 for s in statuses)


def test_alias_swap_under_load_fails_no_request(server):
    models.register("recs", small_model(1, MostPopular))
    stop = threading.Event()
    seen, failures = [], []

    def load():
        with httpx.Client(timeout=10) as c:
            for i in range(3000):  # bounded
                if stop.is_set():
                    return
                try:
                    r = rec(server, {"user_id": i % 60, "k": 5}, c)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        seen.append(r.json()["version"])
                except httpx.TransportError as exc:
                    failures.append(str(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    models.set_alias("recs", "champion", 2)
    deadline = time.time() + 15
    while time.time() < deadline and (not seen or seen[-1] != 2):
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert 1 in seen and seen[-1] == 2
    assert httpx.get(f"{server.url}/v1/models").json()["models"][0]["version"] == 2


def test_corrupt_new_version_keeps_the_old_one_serving(server, reelflow_home):
    v2 = models.register("recs", small_model(2))
    blob = reelflow_home / "blobs" / v2.key[:2] / v2.key
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    models.set_alias("recs", "champion", 2)
    time.sleep(1.0)
    info = httpx.get(f"{server.url}/v1/models").json()["models"][0]
    assert info["version"] == 1 and "version 2 failed to load" in info["last_error"]
    assert rec(server, {"user_id": 1}).json()["version"] == 1


def serve_cmd(*args):
    return subprocess.run([sys.executable, "-m", "reelflow.cli", "serve", *args], capture_output=True, text=True,
                          timeout=60)


def test_startup_errors_exit_non_zero():
    p = serve_cmd("nothing@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "no alias 'champion'" in p.stderr and "Traceback" not in p.stderr
    models.register("recs", small_model(0))
    p = serve_cmd("recs@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "set one with" in p.stderr
    p = serve_cmd("recs/1", "--host", "0.0.0.0", "--port", str(free_port()))
    assert p.returncode == 2 and "--token" in p.stderr
    models.register("notarec", {"a": 1}, alias="champion")
    p = serve_cmd("notarec@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "not a recommender" in p.stderr


def test_token_is_required_when_set():
    models.register("recs", small_model(0), alias="champion")
    s = Server("recs@champion", "--token", "s3cret")
    try:
        assert rec(s, {"user_id": 1}).status_code == 401
        r = httpx.post(f"{s.url}/v1/models/recs/recommend", json={"user_id": 1},
                       headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert httpx.get(f"{s.url}/healthz", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        s.stop()


def test_several_workers_serve_the_same_model():
    models.register("recs", small_model(0), alias="champion")
    s = Server("recs@champion", "--workers", "2")
    try:
        with httpx.Client(timeout=10) as c:
            versions = {rec(s, {"user_id": i, "k": 3}, c).json()["version"] for i in range(40)}
        assert versions == {1}
    finally:
        s.stop()
