"""Fault injection for the model server: hostile requests and heavy load, on 127.0.0.1.

One server (token required, as off loopback) takes: lowercase ``bearer``, two
Authorization headers, oversized bodies, hostile user ids, then heavy requests
(the largest one request may ask for) from several clients while a probe times
``/healthz``. Bounded in requests and time; prints one summary line.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serving._server import ServerProcess, register_in, small_model

TOKEN = "fault-token"
HOSTILE_IDS = ["²", "³", "١٢٣", "٣", "𝟙", "9" * 4301, "9" * 20, " 7", "+7", "7\n", "0x7", "", "stranger",
               2**63, -(2**63) - 1, 10**40, 1.5, 1.0, True, None, [], {}]
HEAVY_CLIENTS = 6
HEAVY_REQUESTS_EACH = 8  # bounded: 48 requests of 1000 users x k=100
LOAD_SECONDS = 60.0  # and bounded in time

# The probe runs in its own process: in the test's process it would wait for the GIL
# behind the heavy clients' response handling and time the client, not the server.
PROBE = """
import http.client, json, os, sys, time
port, stop_file, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
out, start = [], time.monotonic()
while not os.path.exists(stop_file) and time.monotonic() - start < limit:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", "/healthz")
    status = conn.getresponse().status
    out.append((status, time.perf_counter() - t0))
    conn.close()
    time.sleep(0.05)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve-faults")
    register_in(home, "recs", small_model(0, n_items=300))
    s = ServerProcess("recs@champion", "--poll-interval", "0", home=home, token=TOKEN,
                      env={"REELFLOW_SERVE_TOKEN": TOKEN}, log_dir=tmp_path_factory.mktemp("logs"))
    yield s
    s.stop()


def test_server_survives_hostile_requests_and_stays_responsive_under_load(guarded, tmp_path):
    url = f"{guarded.url}/v1/models/recs/recommend"
    auth = {"Authorization": f"bearer {TOKEN}"}  # lowercase scheme: RFC 7235 says case-insensitive
    statuses: list[int] = []
    with httpx.Client(timeout=120) as c:
        assert c.post(url, json={"user_id": 1}, headers=auth).status_code == 200
        r = c.post(url, json={"user_id": 1}, headers=[("Authorization", f"Bearer {TOKEN}"),
                                                      ("Authorization", "Bearer other")])
        assert r.status_code == 400 and "Authorization headers" in r.text
        r = c.post(url, content=b'{"user_ids": [' + b"1," * 600_000 + b"1]}", headers={**auth,
                   "content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.text
        statuses.append(r.status_code)
        for hostile in HOSTILE_IDS:
            for body in ({"user_id": hostile}, {"user_ids": [3, hostile], "k": 5}):
                r = c.post(url, json=body, headers=auth)
                statuses.append(r.status_code)
                assert r.status_code == 422, (hostile, r.text[:300])
        assert c.post(url, json={"user_id": 10**6}, headers=auth).json()["fallback"] == "popularity"

    # Heavy requests from several clients; /healthz must keep answering meanwhile.
    heavy = {"user_ids": list(range(1000)), "k": 100}
    done: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def heavy_client() -> None:
        with httpx.Client(timeout=300) as hc:
            for _ in range(HEAVY_REQUESTS_EACH):
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                r = hc.post(url, json=heavy, headers=auth)
                if r.status_code != 200 or r.content.count(b'"user_id"') != 1000:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                done.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=heavy_client) for _ in range(HEAVY_CLIENTS)]
    stop_file = tmp_path / "stop-probe"
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(guarded.port), str(stop_file), str(LOAD_SECONDS)],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(LOAD_SECONDS + 60)
        stop_file.touch()
        out, _ = probe.communicate(timeout=180)
    finally:
        stop.set()
        stop_file.touch()
        for t in threads:
            t.join()
        if probe.poll() is None:
            os.killpg(probe.pid, signal.SIGKILL)
            probe.wait()
    assert probe.returncode == 0, out
    probes = json.loads(out)
    assert all(status == 200 for status, _ in probes)
    health = [seconds for _, seconds in probes]
    assert errors == []
    assert len(done) >= HEAVY_CLIENTS and len(health) >= 10
    p50, p90, worst = statistics.median(health), statistics.quantiles(health, n=10)[-1], max(health)
    print(f"serving faults: {len(statuses)} hostile requests, 5xx seen {sum(s >= 500 for s in statuses)}; "
          f"{len(done)} heavy requests (1000 users x k=100, median {statistics.median(done):.2f} s) from "
          f"{HEAVY_CLIENTS} clients; /healthz p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
          f"max {worst * 1000:.0f} ms over {len(health)} probes")
    # Scoring and encoding run off the event loop, so health answers in well under the time of
    # one heavy request. (With scoring on the loop: p50 0.39 s, max 5.6 s on a loaded 2-core machine.)
    assert p50 < 0.5 and p90 < 2.0, (p50, p90, worst)
    assert all(s < 500 for s in statuses)
