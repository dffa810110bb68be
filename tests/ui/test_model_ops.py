"""The model page's operational side: promotion-gate verdicts in the alias history, and which servers
serve which version."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def app_client():
    """The UI over the test's own store (the environment's, REELFLOW_HOME)."""
    from fastapi.testclient import TestClient

    from reelflow.store import get_store
    from reelflow.ui import create_app

    with TestClient(create_app(get_store()), base_url="http://127.0.0.1") as c:
        yield c


def test_alias_history_shows_promotion_verdicts_with_their_metrics(app_client):
    from reelflow import models

    models.register("recs", {"w": 1}, alias="champion", metrics={"ndcg@10": 0.30})
    models.register("recs", {"w": 2}, metrics={"ndcg@10": 0.35})
    models.register("recs", {"w": 3}, metrics={"ndcg@10": 0.33})
    assert models.promote("recs", 2, metric="ndcg@10")
    assert not models.promote("recs", 3, metric="ndcg@10", min_improvement=0.001)
    models.rollback("recs", "champion")
    page = app_client.get("/models/recs").text
    rows = re.findall(r'<tr class="history-row( decision-\w+)?">', page)
    assert rows == [" decision-rollback", " decision-kept", " decision-moved", ""]  # newest first
    text = _text(page)
    assert "1 promoted, 1 kept the holder" in text
    assert "ndcg@10 : candidate v2 0.35 vs holder 0.3 (higher is better)" in text
    assert "ndcg@10 : candidate v3 0.33 vs holder 0.35 (higher is better, needs > 0.001)" in text
    assert "version 3 does not beat version 2 on ndcg@10" in text
    assert "rollback: recs@champion back from version 2 to version 1" in text
    assert "stays 2" in text and "set by hand" in text
    # "since" is the rollback's time, not the gate that kept the holder
    since = re.search(r"<tr><td>champion</td><td>1</td><td>([^<]+)</td>", page)
    assert since is not None and since.group(1) != "-"


def _rows() -> list[dict]:
    from sqlalchemy import select

    from reelflow.store import get_store
    from reelflow.store._servers_db import servers_table

    with get_store().metadata.read() as conn:
        return [dict(r) for r in conn.execute(select(servers_table())).mappings()]


def _wait(cond, what: str, deadline_s: float = 120.0):
    import time

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_heartbeat_follows_a_hot_swap_drops_stale_rows_and_says_goodbye():
    pytest.importorskip("pandas")
    from serving._server import small_model

    from reelflow import models
    from reelflow.serving._heartbeat import Heartbeat
    from reelflow.serving._holder import ModelHolder
    from reelflow.store import get_store
    from reelflow.store._servers_db import FORGET_AFTER, beat, live_servers

    models.register("recs", small_model(0), alias="champion")
    models.register("recs", small_model(1))
    holder = ModelHolder("recs@champion", poll_interval=0)
    hb = Heartbeat(holder, host="127.0.0.1", port=8123, interval=30.0)
    md = get_store().metadata
    hb.start()
    try:
        row = _wait(lambda: live_servers(md, "recs"), "the first beat")[0]
        assert (row["version"], row["status"], row["port"], row["alias"]) == (1, "ready", 8123, "champion")
        models.set_alias("recs", "champion", 2)
        assert holder.refresh()
        # the swap is reported at once, not after the 30 s interval
        _wait(lambda: [r for r in live_servers(md, "recs") if r["version"] == 2], "the beat after the swap", 20)
        # a server that missed 3 beats is not shown; an hour-stale row is deleted by the next beat
        assert live_servers(md, "recs", now=row["last_seen"] + 3 * 30.0 + 60) == []
        gone = {**hb.row(), "id": "elsewhere:1:dead"}
        beat(md, gone, now=0.0)
        assert any(r["id"] == "elsewhere:1:dead" for r in _rows())
        hb.beat()
        assert not any(r["id"] == "elsewhere:1:dead" for r in _rows()) and FORGET_AFTER < 1e9
    finally:
        hb.stop()
    assert _rows() == [] and live_servers(md) == []


def test_a_real_server_shows_on_the_model_page_and_leaves_it(app_client, reelflow_home, tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("uvicorn")
    from serving._server import ServerProcess, small_model

    from reelflow import models

    models.register("recs", small_model(0), alias="champion")
    models.register("recs", small_model(1))
    assert "No server reports serving this model" in app_client.get("/models/recs").text
    server = ServerProcess("recs@champion", "--poll-interval", "0.2", home=reelflow_home, log_dir=tmp_path,
                           env={"REELFLOW_SERVE_HEARTBEAT": "0.5"})
    try:
        def listed() -> str | None:
            t = app_client.get("/models/recs").text
            return t if 'class="server-row"' in t else None

        page = _wait(listed, "the server's row on the model page")
        text = _text(page)
        assert f"http://127.0.0.1:{server.port}" in text and str(server.proc.pid) in text
        assert "recs@champion" in text and 'data-version="1"' in page and "ready" in text
        assert '<td class="served">1 serving version 1</td>' in app_client.get("/models").text
        models.set_alias("recs", "champion", 2)
        _wait(lambda: 'data-version="2"' in app_client.get("/models/recs").text, "the swap on the model page")
    finally:
        server.stop()  # SIGTERM: the server removes its row on the way out
    assert _rows() == [], server.log_path.read_text(errors="replace")  # removed, not merely stale
    assert "No server reports serving this model" in app_client.get("/models/recs").text


def test_a_bad_heartbeat_setting_is_a_usage_error(reelflow_home):
    import os
    import subprocess
    import sys

    from reelflow import models

    models.register("recs", {"w": 1}, alias="champion")
    r = subprocess.run([sys.executable, "-m", "reelflow.cli", "serve", "recs@champion", "--port", "1"],
                       capture_output=True, text=True, timeout=180,
                       env={**os.environ, "REELFLOW_SERVE_HEARTBEAT": "often"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "REELFLOW_SERVE_HEARTBEAT='often' is not a number of seconds" in r.stderr


def test_deployments_promotions_and_servers_pages_on_postgresql(postgres_url, tmp_path):
    import warnings

    pytest.importorskip("croniter")
    from reelflow import models
    from reelflow.operate import deploy, pause
    from reelflow.store import get_store
    from reelflow.store._servers_db import beat, goodbye

    flow = tmp_path / "pg_flow.py"
    flow.write_text("from reelflow import FlowSpec, schedule, step\n\n\n@schedule(cron='30 2 * * *', timezone='Asia/Tokyo')\n"
                    "class PgFlow(FlowSpec):\n    @step\n    def start(self):\n        self.next(self.end)\n\n"
                    "    @step\n    def end(self):\n        pass\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deploy(flow, name="pg-nightly")
    pause("pg-nightly")
    models.register("recs", {"w": 1}, alias="champion", metrics={"ndcg@10": 0.3})
    models.register("recs", {"w": 2}, metrics={"ndcg@10": 0.2})
    assert not models.promote("recs", 2, metric="ndcg@10")
    store = get_store()
    row = {"id": "pg:1:x", "model": "recs", "alias": "champion", "version": 1, "status": "ready", "detail": None,
           "host": "127.0.0.1", "port": 8000, "hostname": "pg", "pid": 1, "started_at": 1.0, "beat_interval": 10.0}
    beat(store.metadata, row)
    beat(store.metadata, row)  # the second beat updates the row
    from fastapi.testclient import TestClient

    from reelflow.ui import create_app

    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        listed = _text(c.get("/deployments?q=pg-").text)
        assert "pg-nightly" in listed and "paused" in listed and "JST" in listed
        assert "schedule 30 2 * * * (Asia/Tokyo)" in _text(c.get("/deployments/pg-nightly").text)
        page = c.get("/models/recs").text
        assert 'class="history-row decision-kept"' in page and 'class="server-row" data-version="1"' in page
        goodbye(store.metadata, "pg:1:x")
        assert 'class="server-row"' not in c.get("/models/recs").text
