"""Asynchronous generation over HTTP: a real `reelflow serve` process, and the queue limit in-process."""

from __future__ import annotations

import base64
import time

import httpx
import numpy as np
import pytest
from generate._gen import SIZE, tiny_model

pytest.importorskip("fastapi")

from serving._server import ServerProcess  # noqa: E402

from reelflow import models  # noqa: E402
from reelflow.generate import decode_png, make_pairs, png_bytes  # noqa: E402


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wait(client: httpx.Client, url: str, job: str, deadline: float = 120.0) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        body = client.get(f"{url}/v1/jobs/{job}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job} not done after {deadline} s: {body}")


def test_generate_poll_and_hot_swap(reelflow_home, tmp_path):
    m1 = tiny_model(epochs=1, n=8)
    models.register("backgrounds", m1, alias="champion")
    server = ServerProcess("backgrounds@champion", "--poll-interval", "0.2", "--generate-queue", "3",
                           home=reelflow_home, log_dir=tmp_path)
    try:
        sk, _ = make_pairs(1, seed=3, size=SIZE)
        with httpx.Client(timeout=60) as c:
            assert c.get(f"{server.url}/readyz").json()["generation"] == {"waiting": 0, "max_queue": 3}
            r = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": _b64(png_bytes(sk[0])), "seed": 7})
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            body = _wait(c, server.url, job)
            assert body["status"] == "done" and body["version"] == 1 and body["seed"] == 7
            img = decode_png(base64.b64decode(body["image"]))
            assert np.array_equal(img, m1.generate(sk, seeds=[7], device="cpu")[0])
            png = c.get(f"{server.url}/v1/jobs/{job}/image.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"

            assert c.get(f"{server.url}/v1/jobs/nosuchjob").status_code == 404
            bad = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": _b64(b"not a png")})
            assert bad.status_code == 422 and "not an image" in bad.text
            rgb = png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8))
            bad = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": _b64(rgb)})
            assert bad.status_code == 422 and "mode RGB" in bad.text
            small = png_bytes(np.zeros((8, 8), np.uint8))
            bad = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": _b64(small)})
            assert bad.status_code == 422 and "8 x 8" in bad.text
            bad = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": "%%%"})
            assert bad.status_code == 422
            assert c.post(f"{server.url}/v1/models/other/generate",
                          json={"sketch": _b64(png_bytes(sk[0]))}).status_code == 404

            # the alias moves: the server hot-swaps and the next job uses version 2
            models.register("backgrounds", tiny_model(epochs=1, n=8, seed=1), alias="champion")
            end = time.monotonic() + 60
            while c.get(f"{server.url}/readyz").json()["version"] != 2:
                assert time.monotonic() < end, "no hot swap"
                time.sleep(0.2)
            r = c.post(f"{server.url}/v1/models/backgrounds/generate", json={"sketch": _b64(png_bytes(sk[0]))})
            assert _wait(c, server.url, r.json()["job_id"])["version"] == 2
    finally:
        server.stop()


def test_a_full_queue_answers_429(reelflow_home):
    import threading

    from fastapi.testclient import TestClient

    from reelflow.serving import ServeConfig, create_app

    models.register("backgrounds", tiny_model(epochs=1, n=8), alias="champion")
    app = create_app(ServeConfig(spec="backgrounds@champion", poll_interval=0, max_generate_queue=2))
    model = app.fastapi.state.holder.current.model
    release = threading.Event()
    real = model.generate
    model.generate = lambda *a, **k: (release.wait(30), real(*a, **k))[1]  # hold the worker on its first job
    sk = _b64(png_bytes(make_pairs(1, seed=3, size=SIZE)[0][0]))
    try:
        with TestClient(app) as c:
            codes = []
            for _ in range(6):
                codes.append(c.post("/v1/models/backgrounds/generate", json={"sketch": sk}).status_code)
                time.sleep(0.05)
            assert codes[:3] == [202, 202, 202]  # one running, two waiting
            assert 429 in codes[3:]
            r = c.post("/v1/models/backgrounds/generate", json={"sketch": sk})
            assert r.status_code == 429 and r.headers["retry-after"] and "queue is full" in r.text
    finally:
        release.set()


def test_generation_routes_need_the_token(reelflow_home):
    from fastapi.testclient import TestClient

    from reelflow.serving import ServeConfig, create_app

    models.register("backgrounds", tiny_model(epochs=1, n=8), alias="champion")
    app = create_app(ServeConfig(spec="backgrounds@champion", poll_interval=0, token="s3cret"))
    sk = _b64(png_bytes(make_pairs(1, seed=3, size=SIZE)[0][0]))
    with TestClient(app) as c:
        assert c.post("/v1/models/backgrounds/generate", json={"sketch": sk}).status_code == 401
        assert c.get("/v1/jobs/x").status_code == 401
        r = c.post("/v1/models/backgrounds/generate", json={"sketch": sk}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 202
        assert c.post("/v1/models/backgrounds/generate", json={"sketch": sk, "seed": -1},
                      headers={"Authorization": "Bearer s3cret"}).status_code == 422


def test_the_queue_size_option(reelflow_home):
    import os
    import subprocess
    import sys

    from click.testing import CliRunner

    from reelflow.cli import main
    from reelflow.errors import ParameterError
    from reelflow.serving import serve

    r = CliRunner().invoke(main, ["serve", "backgrounds@champion", "--generate-queue", "0"])
    assert r.exit_code == 2 and "--generate-queue" in r.output and "x>=1" in r.output
    with pytest.raises(ParameterError, match="--generate-queue 0: give at least 1"):
        serve("backgrounds@champion", generate_queue=0)
    # --workers N: each worker builds its app from the environment, the queue size included
    # (in a process of its own: a server process sets process-wide things such as gc.freeze)
    models.register("backgrounds", tiny_model(epochs=1, n=8), alias="champion")
    env = {**os.environ, "REELFLOW_SERVE_SPEC": "backgrounds@champion", "REELFLOW_SERVE_POLL": "0",
           "REELFLOW_SERVE_GENERATE_QUEUE": "5"}
    p = subprocess.run([sys.executable, "-c", "from reelflow.serving._app import app_from_env; "
                        "print(app_from_env().fastapi.state.generation.max_queue)"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0 and p.stdout.split() == ["5"], p.stdout + p.stderr
