"""The UI's pages over a store filled by real runs (in-process HTTP client), and its access control."""

from __future__ import annotations

import html
import re
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
pytest.importorskip("python_multipart")



def assert_escaped(page: str, raw: str) -> None:
    """``raw`` (hostile markup) is shown as text: absent as markup, present once unescaped."""
    assert raw not in page
    assert raw in html.unescape(page)


def _csrf(client, path: str) -> str:
    page = client.get(path)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert m, page.text
    return m.group(1)


def test_runs_list_shows_runs_and_escapes_tags(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "UiFlow/1" in r.text and "UiFlow/2" in r.text
    assert "2 matching" in r.text
    assert_escaped(r.text, "<script>alert('tag')</script>")
    assert 'data-status="failed"' in r.text and 'data-status="succeeded"' in r.text


@pytest.mark.parametrize(("query", "expect", "absent"), [
    ("status=failed", ["UiFlow/2"], ["UiFlow/1<"]),
    ("status=succeeded", ["UiFlow/1"], ["UiFlow/2<"]),
    ("tag=nightly", ["UiFlow/1"], ["UiFlow/2<"]),
    ("where=metrics.ndcg%4010+%3E+0.36", ["UiFlow/2"], ["UiFlow/1<"]),
    ("where=params.alpha+%3D%3D+0.5", ["UiFlow/1"], ["UiFlow/2<"]),
    ("flow=NoSuchFlow", ["No runs match"], ["UiFlow/1<", "UiFlow/2<"]),
    ("since=1", ["UiFlow/1", "UiFlow/2"], []),
])
def test_runs_filters(client, query, expect, absent):
    r = client.get("/?" + query)
    assert r.status_code == 200, r.text
    for e in expect:
        assert e in r.text
    for a in absent:
        assert a not in r.text


@pytest.mark.parametrize(("query", "match"), [
    ("where=metrics.x+~+3", "cannot read the condition"),
    ("status=exploded", "is not a run status"),
    ("since=yesterday", "is not a number"),
])
def test_bad_filters_are_400_with_the_fix(client, query, match):
    r = client.get("/?" + query)
    assert r.status_code == 400
    assert match in r.text


def test_runs_pagination_on_many_runs(tmp_path):
    from fastapi.testclient import TestClient

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.ui import create_app

    store = Store(load_config(tmp_path / "many"))
    for i in range(120):
        store.metadata.create_run("ManyFlow" if i % 2 else "OtherFlow", user="u", tags=[f"t{i % 3}"])
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        first = c.get("/")
        assert first.text.count('class="run-row"') == 50
        assert "120 matching" in first.text and "page 1 of 3" in first.text
        assert 'href="/runs/ManyFlow/120"' in first.text and 'href="/runs/OtherFlow/71"' in first.text
        assert 'href="/runs/ManyFlow/70"' not in first.text
        last = c.get("/?page=3")
        assert last.text.count('class="run-row"') == 20
        assert 'href="/runs/ManyFlow/20"' in last.text and 'href="/runs/OtherFlow/1"' in last.text
        flt = c.get("/?flow=ManyFlow&tag=t1&page=1")
        rows = re.findall(r'href="/runs/(\w+)/(\d+)"', flt.text)
        assert rows and all(f == "ManyFlow" and int(i) % 3 == 2 for f, i in rows)  # run i has tag t{(i-1) % 3}
        assert "20 matching" in flt.text


def test_run_page_draws_the_graph_with_the_failed_step(client):
    r = client.get("/runs/UiFlow/2")
    assert r.status_code == 200
    nodes = {step: status for status, step in re.findall(r'class="dag-node status-([\w-]+)" data-step="(\w+)"', r.text)}
    assert nodes == {"start": "succeeded", "train": "succeeded", "evaluate": "failed",
                                                 "end": "not-run"}
    assert r.text.count('class="gantt-bar') == 3
    assert "evaluation failed on purpose" in r.text
    assert "alpha" in r.text and "0.8" in r.text  # parameters
    assert 'id="step-evaluate"' in r.text
    assert re.search(r'<td id="run-trigger">started by hand</td>', r.text)


def test_task_page_logs_search_and_escaping(client):
    r = client.get("/runs/UiFlow/1/start/1")
    assert r.status_code == 200
    assert_escaped(r.text, "hello from start <script>alert('log')</script>")
    s = client.get("/runs/UiFlow/1/train/2?q=EPOCH 3")
    assert "1 matching line" in s.text and "epoch 3 loss" in s.text
    w = client.get("/runs/UiFlow/1/train/2/logs/stdout?offset=0&limit=20").json()
    assert w["more"] and w["text"].startswith("epoch 0")
    rest = client.get(f"/runs/UiFlow/1/train/2/logs/stdout?offset={w['next']}").json()
    assert (w["text"] + rest["text"]).count("\n") == 5 and not rest["more"]
    d = client.get("/runs/UiFlow/1/train/2/logs/stdout?download=1")
    assert d.headers["content-disposition"].startswith("attachment") and d.text.count("loss") == 5


def test_failed_task_shows_exception_and_no_artifacts(client):
    r = client.get("/runs/UiFlow/2/evaluate/3")
    assert r.status_code == 200
    assert 'id="exception"' in r.text and "ValueError: evaluation failed on purpose" in r.text


def test_artifact_preview_and_download(client):
    frag = client.get("/runs/UiFlow/1/start/1/artifacts/note?fragment=1")
    assert frag.status_code == 200
    assert_escaped(frag.text, "<script>alert('artifact')</script>")
    assert "<script" not in frag.text
    table = client.get("/runs/UiFlow/1/start/1/artifacts/table?fragment=1")
    assert "[[1, 'a'], [2, 'b']]" in html.unescape(table.text)
    text = client.get("/runs/UiFlow/1/start/1/artifacts/note/download")
    assert text.text == "<script>alert('artifact')</script>"
    assert text.headers["content-type"].startswith("text/plain")
    assert "attachment" in text.headers["content-disposition"]
    no = client.get("/runs/UiFlow/1/train/2/artifacts/model/download")
    assert no.status_code == 404 and "only bytes, text and tables" in no.text
    missing = client.get("/runs/UiFlow/1/train/2/artifacts/nothing")
    assert missing.status_code == 404 and "has no artifact" in missing.text


def test_list_pages_never_load_artifact_values(client, monkeypatch):
    from reelflow.store import Store

    def refuse(*a, **k):
        raise AssertionError("a list page loaded an artifact value")

    monkeypatch.setattr(Store, "load", refuse)
    for path in ("/", "/runs/UiFlow/1", "/runs/UiFlow/2", "/models", "/models/ui-model",
                 "/metrics?run=UiFlow/1&run=UiFlow/2"):
        assert client.get(path).status_code == 200, path


def test_metrics_page_charts_and_compare_table(client):
    r = client.get("/metrics?run=UiFlow/1&run=UiFlow/2")
    assert r.status_code == 200
    chart = re.search(r'data-metric="loss" data-points="(\d+)"', r.text)
    assert chart and chart.group(1) == "10"  # 5 epochs x 2 runs
    assert r.text.count('class="pt"') == 10  # the two single-point metrics get no chart
    rows = dict(re.findall(r'<tr class="(differs|)"><th>([^<]+)</th>', r.text)[i][::-1] for i in range(6))
    assert rows["params.alpha"] == "differs" and rows["params.epochs"] == ""
    assert rows["metrics.ndcg@10"] == "differs" and rows["status"] == "differs"
    bad = client.get("/metrics?run=UiFlow/99")
    assert bad.status_code == 404 and "does not exist" in bad.text


def test_models_page_history_and_alias_move_needs_csrf(client):
    models = client.get("/models")
    assert "ui-model" in models.text and "champion &rarr; 2" in models.text
    page = client.get("/models/ui-model")
    assert page.text.count('class="history-row"') == 2
    assert 'href="/runs/UiFlow/1/train/2"' in page.text  # lineage
    refused = client.post("/models/ui-model/alias", data={"alias": "champion", "version": "1"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    forged = client.post("/models/ui-model/alias", data={"alias": "champion", "version": "1", "csrf_token": "x"})
    assert forged.status_code == 403
    token = _csrf(client, "/models/ui-model")
    ok = client.post("/models/ui-model/alias", data={"alias": "champion", "version": "1", "csrf_token": token},
                     follow_redirects=False)
    assert ok.status_code == 303
    after = client.get(ok.headers["location"])
    assert after.text.count('class="history-row"') == 3 and "Moved alias" in after.text
    bad = client.post("/models/ui-model/alias", data={"alias": "no way", "version": "1", "csrf_token": token})
    assert bad.status_code == 400 and "is not valid" in bad.text
    gone = client.post("/models/ui-model/alias", data={"alias": "champion", "version": "9", "csrf_token": token})
    assert gone.status_code == 404 and "has no version 9" in gone.text
    client.post("/models/ui-model/alias", data={"alias": "champion", "version": "2", "csrf_token": token})


def test_security_headers_and_card_sandbox(client):
    r = client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    card = client.get("/runs/UiFlow/1/train/2/cards/training")
    assert card.status_code == 200 and "sandbox allow-scripts" in card.headers["content-security-policy"]
    assert "Training report" in card.text
    assert_escaped(card.text, "<script>alert('card')</script>")


def test_host_header_is_checked_without_a_token(client):
    r = client.get("/", headers={"host": "evil.example:8080"})
    assert r.status_code == 421
    assert client.get("/", headers={"host": "localhost:8080"}).status_code == 200


def test_token_guards_every_route(ui_store):
    from fastapi.testclient import TestClient

    from reelflow.ui import create_app

    with TestClient(create_app(ui_store, token="s3cret-token"), base_url="http://ui.example") as c:
        assert c.get("/healthz").status_code == 200
        page = c.get("/runs/UiFlow/1", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/runs/UiFlow/1")
        for path in ("/", "/api/runs/status?ids=1", "/runs/UiFlow/1/train/2/cards/training", "/models"):
            assert c.get(path).status_code == 401, path
        assert c.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.post("/login", data={"token": "nope", "next": "/"}).status_code == 401
        ok = c.post("/login", data={"token": "s3cret-token", "next": "/models"}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/models"
        assert "s3cret-token" not in ok.headers["set-cookie"]
        assert c.get("/models").status_code == 200  # the session cookie
        evil = c.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"}, follow_redirects=False)
        assert evil.headers["location"] == "/"
    with TestClient(create_app(ui_store, token="s3cret-token"), base_url="http://ui.example") as c:
        link = c.get("/runs/UiFlow/1?token=s3cret-token", follow_redirects=False)
        assert link.status_code == 303 and link.headers["location"] == "/runs/UiFlow/1"
        assert c.get("/runs/UiFlow/1").status_code == 200


def test_missing_pages_are_404_with_the_reason(client):
    for path, text in (("/runs/UiFlow/77", "does not exist"), ("/runs/UiFlow/abc", "positive integers"),
                       ("/runs/UiFlow/1/nostep/1", "has no finished attempt"),
                       ("/runs/UiFlow/1/start/x", "is not a number"), ("/models/nothing", "no model named"),
                       ("/runs/UiFlow/1/start/1/cards/none", "has no card"),
                       ("/runs/UiFlow/1/start/1/logs/other", "logs are stdout and stderr")):
        r = client.get(path)
        assert r.status_code == 404, path
        assert text in r.text, (path, r.text)


def test_empty_store_says_how_to_fill_it(tmp_path):
    from fastapi.testclient import TestClient

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.ui import create_app

    with TestClient(create_app(Store(load_config(tmp_path / "none"))), base_url="http://127.0.0.1") as c:
        r = c.get("/")
        assert r.status_code == 200 and "reelflow demo" in r.text
    assert not (tmp_path / "none" / "metadata.db").exists()


def test_cli_refuses_a_public_host_without_a_token(tmp_path):
    env = {"REELFLOW_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "reelflow.cli", "ui", "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert "needs a token" in r.stderr and "REELFLOW_UI_TOKEN" in r.stderr
    assert "Traceback" not in r.stderr


def test_ui_runs_as_a_real_process(ui_server):
    import httpx

    r = httpx.get(ui_server.url + "/", timeout=30)
    assert r.status_code == 200 and "UiFlow/2" in r.text
    js = httpx.get(ui_server.url + "/static/vendor/vega-embed.min.js", timeout=30)
    assert js.status_code == 200 and len(js.content) > 10_000
    assert httpx.get(ui_server.url + "/api/runs/status?ids=1,2", timeout=30).json() == {"1": "succeeded",
                                                                                         "2": "failed"}


def test_a_first_visit_gets_a_working_csrf_token(ui_store):
    from fastapi.testclient import TestClient

    from reelflow.ui import create_app

    with TestClient(create_app(ui_store), base_url="http://127.0.0.1") as fresh:
        page = fresh.get("/models/ui-model")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert "samesite=strict" in page.headers["set-cookie"].lower()
        r = fresh.post("/models/ui-model/alias", data={"alias": "champion", "version": "2", "csrf_token": token},
                       follow_redirects=False)
        assert r.status_code == 303


def test_task_page_charts_a_metric_history(client):
    r = client.get("/runs/UiFlow/1/train/2")
    assert r.text.count('class="chart"') == 1 and r.text.count('class="pt"') == 5


def test_cli_says_when_the_port_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "reelflow.cli", "ui", "--port", str(port)], capture_output=True,
                           text=True, env={"REELFLOW_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port 0" in r.stderr
    assert "Traceback" not in r.stderr
