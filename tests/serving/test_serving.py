"""`reelflow serve` as a real process on 127.0.0.1: API, validation, auth, hot-swap, limits.

Read-only tests share one server per module (``shared``, ``secured``); tests that
move aliases get their own (``server``). Every server runs in its own process
group and is ended by its fixture whatever the outcome.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from serving._server import ServerProcess, free_port, register_in, small_model

from reelflow import models
from reelflow.recs import MostPopular

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve-shared")
    model = small_model(0)
    register_in(home, "recs", model)
    return home, model


@pytest.fixture(scope="module")
def shared(shared_home, tmp_path_factory):
    """A read-only server: tests must not move its aliases."""
    home, model = shared_home
    s = ServerProcess("recs@champion", "--poll-interval", "0", home=home, log_dir=tmp_path_factory.mktemp("logs"))
    s.model = model
    yield s
    s.stop()


@pytest.fixture(scope="module")
def secured(shared_home, tmp_path_factory):
    """Token (from the environment) and the access log on."""
    home, _ = shared_home
    s = ServerProcess("recs@champion", "--poll-interval", "0", "--access-log", home=home, token=TOKEN,
                      env={"REELFLOW_SERVE_TOKEN": TOKEN}, log_dir=tmp_path_factory.mktemp("logs"))
    yield s
    s.stop()


@pytest.fixture
def server(reelflow_home, tmp_path):
    """A server of the test's own store, polling its alias every 0.2 s."""
    models.register("recs", small_model(0), alias="champion")
    s = ServerProcess("recs@champion", "--poll-interval", "0.2", home=reelflow_home, log_dir=tmp_path)
    yield s
    s.stop()


# -- the API ------------------------------------------------------------------------------


def test_recommend_single_batch_and_fallback(shared):
    r = shared.post({"user_id": 3, "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "recs" and body["version"] == 1 and len(body["items"]) == 5
    assert body["fallback"] is None  # a known user: personalised
    assert {"item_id", "score", "title"} <= set(body["items"][0])
    assert body["items"][0]["title"].startswith("Title ")
    r = shared.post({"user_ids": [3, "3", 10**6], "k": 2, "exclude_seen": False}).json()
    assert [x["user_id"] for x in r["results"]] == [3, "3", 10**6]
    assert r["results"][0]["items"] == r["results"][1]["items"]  # "3" finds user 3
    assert [x["fallback"] for x in r["results"]] == [None, None, "popularity"]
    pop = shared.model.item_popularity_
    assert r["results"][2]["items"][0]["item_id"] == int(np.argmax(pop))  # popularity fallback
    single = shared.post({"user_id": 10**6}).json()
    assert single["fallback"] == "popularity"


@pytest.mark.parametrize("bad_id", ["²", "³", "١٢٣", "9" * 4301, "stranger", " 3", "+3", "3\n", "",
                                    2**63, -(2**63) - 1, "9" * 20])
def test_user_ids_that_cannot_be_this_models_are_422(shared, bad_id):
    """Integer ids: ASCII digits only, within int64; never a 500, never silently another user."""
    for body in ({"user_id": bad_id}, {"user_ids": [1, bad_id]}):
        r = shared.post(body)
        assert r.status_code == 422, (bad_id, r.text)
        assert "user_id" in r.text
    r = shared.post({"user_ids": [1, "١٢٣"]})
    assert "user_ids[1]" in r.json()["detail"] and "ASCII digits" in r.json()["detail"]


@pytest.mark.parametrize("bad_id", [1.0, 1.5, True, None, [1], {"a": 1}, "x" * 300])
def test_wrongly_typed_user_ids_are_422(shared, bad_id):
    r = shared.post({"user_ids": [bad_id]} if bad_id is not None else {"user_ids": [None]})
    assert r.status_code == 422 and "user_ids" in r.text


def test_service_endpoints(shared):
    assert httpx.get(f"{shared.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{shared.url}/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == 1
    info = httpx.get(f"{shared.url}/v1/models").json()["models"][0]
    assert info["name"] == "recs" and info["alias"] == "champion" and info["loaded_at"] > 0
    assert info["status"] == "ready" and info["pid"] > 0
    shared.post({"user_id": 1})
    shared.post({"user_id": 1, "k": 0})
    text = httpx.get(f"{shared.url}/metrics").text
    assert 'reelflow_requests_total{method="POST",route="/v1/models/{name}/recommend",status="200"}' in text
    assert 'status="422"' in text and "reelflow_request_seconds_bucket" in text
    assert 'reelflow_model_degraded{model="recs"} 0.0' in text
    schema = httpx.get(f"{shared.url}/openapi.json").json()
    assert "/v1/models/{name}/recommend" in schema["paths"]


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"user_id": 1, "k": 0}, 422, "greater than or equal to 1"),
        ({"user_id": 1, "k": 5000}, 422, "less than or equal to 1000"),
        ({"user_id": 1, "k": 500}, 422, "exceeds the catalogue (200 items)"),
        ({"user_id": 1, "k": 5.0}, 422, "valid integer"),
        ({"k": 3}, 422, "exactly one of user_id"),
        ({"user_id": 1, "user_ids": [1]}, 422, "exactly one of user_id"),
        ({"user_ids": list(range(1001))}, 422, "at most 1000"),
        ({"user_ids": list(range(1000)), "k": 101}, 422, "at most 100000 (users x k)"),
        ({"user_id": 1, "extra": True}, 422, "extra"),
        ({"user_id": [1, 2]}, 422, "user_id"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(shared, body, status, needle):
    r = shared.post(body)
    assert r.status_code == status and needle in r.text


def test_the_largest_allowed_request_is_answered(shared):
    r = shared.post({"user_ids": list(range(1000)), "k": 100})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 1000 and all(len(x["items"]) == 100 for x in results[:50])


def test_unknown_model_and_garbage(shared):
    assert httpx.post(f"{shared.url}/v1/models/other/recommend", json={"user_id": 1}).status_code == 404
    r = httpx.post(f"{shared.url}/v1/models/recs/recommend", content=b"\x80\x04K\x01.",
                   headers={"content-type": "application/octet-stream"})
    assert r.status_code == 422  # never unpickled
    assert httpx.get(f"{shared.url}/v1/models/recs/recommend").status_code == 405


# -- body size ------------------------------------------------------------------------------


def _raw_request(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request by hand (headers as given) and return what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking the rest: what we test
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + 10:
            part = sock.recv(65536)
            if not part:
                break
            data += part
        return data


def test_a_body_over_the_limit_is_413_before_it_is_read(shared):
    # Content-Length announces 50 MB; only a little is sent: the answer must not wait for the rest.
    head = (b"POST /v1/models/recs/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    answer = _raw_request(shared.url, head, [b'{"user_ids": [' + b"1," * 1000])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"1 MiB limit" in answer
    # A chunked body (no Content-Length) is counted as it arrives.
    head = (b"POST /v1/models/recs/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"1," * 32768
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 40  # 2.6 MB in all
    answer = _raw_request(shared.url, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # And through a normal client, with the id never echoed back.
    r = httpx.post(f"{shared.url}/v1/models/recs/recommend", content=b'{"user_id": "' + b"7" * (2 << 20) + b'"}',
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and len(r.content) < 1000
    assert shared.post({"user_id": 1}).status_code == 200  # still serving


def test_fuzzed_requests_never_cause_5xx(shared):
    """Seeded: the same bodies every run; valid ones must be 200, invalid ones 4xx, none 5xx."""
    from serving._fuzz import fuzz_bodies

    statuses: dict[int, int] = {}
    with httpx.Client(timeout=60) as client:
        for raw, valid in fuzz_bodies(seed=20240601, n=600):
            r = client.post(f"{shared.url}/v1/models/recs/recommend", content=raw,
                            headers={"content-type": "application/json"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (raw[:200], r.text[:300])
            if valid:
                assert r.status_code == 200, (raw[:200], r.text[:300])
            else:
                assert 400 <= r.status_code < 500, (raw[:200], r.text[:300])
    assert statuses.get(200, 0) >= 100 and statuses.get(422, 0) >= 100 and statuses.get(413, 0) >= 1, statuses
    print(f"fuzzed {sum(statuses.values())} requests: {dict(sorted(statuses.items()))}")


# -- tokens ---------------------------------------------------------------------------------


def test_token_is_required_on_everything_but_healthz(secured):
    url = f"{secured.url}/v1/models/recs/recommend"
    assert httpx.post(url, json={"user_id": 1}).status_code == 401
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        r = httpx.post(url, json={"user_id": 1}, headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200, scheme
    for wrong in (f"Bearer {TOKEN}x", "Bearer", f"Basic {TOKEN}", TOKEN, ""):
        r = httpx.post(url, json={"user_id": 1}, headers={"Authorization": wrong})
        assert r.status_code == 401 and "Bearer <token>" in r.text, wrong
    # The token must not be bypassed by a second Authorization header, in either order.
    for pair in ([f"Bearer {TOKEN}", "Bearer wrong"], ["Bearer wrong", f"Bearer {TOKEN}"],
                 [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]):
        r = httpx.post(url, json={"user_id": 1}, headers=[("Authorization", v) for v in pair])
        assert r.status_code == 400 and "exactly one" in r.text
    assert httpx.get(f"{secured.url}/healthz").status_code == 200  # probes need no secret
    assert httpx.get(f"{secured.url}/healthz", headers={"Authorization": "Bearer wrong"}).status_code == 200
    for path in ("/readyz", "/metrics", "/v1/models", "/openapi.json", "/docs"):
        assert httpx.get(f"{secured.url}{path}").status_code == 401, path
        assert httpx.get(f"{secured.url}{path}", headers=secured.headers).status_code == 200, path


def test_access_log_lists_requests(secured):
    httpx.post(f"{secured.url}/v1/models/recs/recommend", json={"user_id": 2}, headers=secured.headers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and '"POST /v1/models/recs/recommend" 200' not in secured.output():
        time.sleep(0.1)
    log = secured.output()
    assert '"POST /v1/models/recs/recommend" 200' in log and "reelflow.serving.access" in log
    assert TOKEN not in log


def test_token_on_the_command_line_warns(tmp_path):
    p = serve_cmd("nothing@champion", "--token", "visible", "--port", str(free_port()))
    assert "--token is visible to other users" in p.stderr and "REELFLOW_SERVE_TOKEN" in p.stderr
    p = serve_cmd("nothing@champion", "--port", str(free_port()), env={"REELFLOW_SERVE_TOKEN": "hidden"})
    assert "visible to other users" not in p.stderr


# -- hot-swap and degraded readiness ---------------------------------------------------------


def test_alias_swap_under_load_fails_no_request(server):
    models.register("recs", small_model(1, MostPopular))
    stop = threading.Event()
    seen, failures = [], []

    def load():
        with httpx.Client(timeout=60) as c:
            for i in range(3000):  # bounded
                if stop.is_set():
                    return
                try:
                    r = server.post({"user_id": i % 60, "k": 5}, c)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        seen.append(r.json()["version"])
                except httpx.TransportError as exc:
                    failures.append(str(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen:
            time.sleep(0.05)
        models.set_alias("recs", "champion", 2)
        while time.monotonic() < deadline and (not seen or seen[-1] != 2):
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert 1 in seen and seen[-1] == 2
    assert httpx.get(f"{server.url}/v1/models").json()["models"][0]["version"] == 2
    log = server.output()
    assert "reelflow.serving INFO recs@champion: now serving version 2" in log and "WARNING" not in log


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_version_that_fails_to_load_makes_the_server_degraded(server, reelflow_home):
    v2 = models.register("recs", small_model(2))
    blob = reelflow_home / "blobs" / v2.key[:2] / v2.key
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    models.set_alias("recs", "champion", 2)
    ready = _wait_for(lambda: (j := httpx.get(f"{server.url}/readyz").json())["status"] == "degraded" and j)
    assert ready["version"] == 1 and ready["failed_version"] == 2 and "version 2 failed to load" in ready["error"]
    info = httpx.get(f"{server.url}/v1/models").json()["models"][0]
    assert info["version"] == 1 and "version 2 failed to load" in info["last_error"] and info["status"] == "degraded"
    assert server.post({"user_id": 1}).json()["version"] == 1  # still serving the old version
    text = httpx.get(f"{server.url}/metrics").text
    assert 'reelflow_model_degraded{model="recs"} 1.0' in text
    assert 'reelflow_model_load_failures_total{model="recs"} 1.0' in text
    # Rolling the alias back clears it.
    models.set_alias("recs", "champion", 1)
    _wait_for(lambda: httpx.get(f"{server.url}/readyz").json()["status"] == "ready")
    assert 'reelflow_model_degraded{model="recs"} 0.0' in httpx.get(f"{server.url}/metrics").text


# -- starting ---------------------------------------------------------------------------------


def serve_cmd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "reelflow.cli", "serve", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, start_new_session=True)


def test_startup_errors_exit_non_zero(reelflow_home):
    p = serve_cmd("nothing@champion", "--port", str(free_port()))  # no store at all
    assert p.returncode == 1 and str(reelflow_home) in p.stderr and "Traceback" not in p.stderr
    models.register("recs", small_model(0))
    p = serve_cmd("nothing@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "'nothing'" in p.stderr and "Traceback" not in p.stderr
    p = serve_cmd("recs@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "set one with" in p.stderr
    p = serve_cmd("recs/1", "--host", "0.0.0.0", "--port", str(free_port()))
    assert p.returncode == 2 and "--token" in p.stderr
    models.register("notarec", {"a": 1}, alias="champion")
    p = serve_cmd("notarec@champion", "--port", str(free_port()))
    assert p.returncode == 1 and "not a recommender" in p.stderr


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def test_several_workers_serve_the_same_model(reelflow_home, tmp_path):
    """--workers 2: two worker processes each load the model and each answers requests."""
    models.register("recs", small_model(0), alias="champion")
    s = ServerProcess("recs@champion", "--workers", "2", home=reelflow_home, log_dir=tmp_path)
    try:
        pids, versions = set(), set()
        deadline = time.monotonic() + 120
        attempts = 0
        while len(pids) < 2 and time.monotonic() < deadline and attempts < 2000:
            attempts += 1
            with httpx.Client(timeout=60) as c:  # a fresh connection each time: the kernel spreads them
                pids.add(c.get(f"{s.url}/v1/models").json()["models"][0]["pid"])
                versions.add(s.post({"user_id": attempts % 50, "k": 3}, c).json()["version"])
        assert len(pids) >= 2, f"only worker(s) {pids} answered {attempts} connections"
        assert pids <= _children(s.proc.pid)  # they are the server's own workers
        assert versions == {1}
    finally:
        s.stop()
    assert not any(os.path.exists(f"/proc/{p}") and _alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ids_of_a_model_with_string_user_ids_are_taken_as_sent():
    import pandas as pd

    from reelflow.recs import Interactions
    from reelflow.serving._holder import _loaded
    from reelflow.serving._ids import BadUserId, id_space, parse_user_id

    df = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u1", "²"], "item_id": [1, 2, 3, 2, 1]})
    loaded = _loaded(1, MostPopular().fit(Interactions.from_frame(df)))
    assert not loaded.ids.integer
    users = [parse_user_id(u, loaded.ids, "user_id") for u in ["u1", "²", "nobody", 7]]
    assert users == ["u1", "²", "nobody", 7]
    assert loaded.fallbacks(users) == [None, None, "popularity", "popularity"]
    ints = id_space(small_model(0))
    assert ints.integer and parse_user_id("42", ints, "user_id") == 42 and parse_user_id(-3, ints, "user_id") == -3
    with pytest.raises(BadUserId, match=r"user_ids\[0\]='٣' cannot be a user id of this model"):
        parse_user_id("٣", ints, "user_ids[0]")
