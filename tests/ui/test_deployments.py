"""The deployments pages: triggers, next fire times (as the scheduler computes them), firings linked to the
runs they started, version history, pause/resume behind CSRF, pagination over many deployments."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
croniter = pytest.importorskip("croniter").croniter

HOSTILE = "<script>alert('tag')</script>"  # as in conftest


@pytest.fixture(scope="module")
def ops_store(ops_home):
    from reelflow.config import load_config
    from reelflow.store import Store

    return Store(load_config(ops_home))


@pytest.fixture
def ops_client(ops_store):
    from fastapi.testclient import TestClient

    from reelflow.ui import create_app

    with TestClient(create_app(ops_store), base_url="http://127.0.0.1") as c:
        yield c


def _berlin_slots(after: float, n: int) -> list[str]:
    """The next ``n`` 03:00 Europe/Berlin slots, computed here with croniter directly."""
    it = croniter("0 3 * * *", datetime.fromtimestamp(after, ZoneInfo("Europe/Berlin")))
    return [it.get_next(datetime).strftime("%Y-%m-%d %H:%M %Z") for _ in range(n)]


def _text(page: str) -> str:
    """What a reader sees: tags dropped, entities decoded, white space folded."""
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_list_shows_triggers_state_next_fire_and_last_firing(ops_client, ops_store):
    from reelflow.operate import get_deployment

    r = ops_client.get("/deployments")
    assert r.status_code == 200
    html = r.text
    assert html.count('class="deployment-row"') == 2
    assert '<a href="/deployments" class="active">Deployments</a>' in html
    text = _text(html)
    assert "schedule 0 3 * * * (Europe/Berlin)" in text
    assert "event ratings.arrived (day←day)" in text
    assert "after AfterFlow" not in text and "after NightlyFlow" in text
    nxt = get_deployment("nightly", store=ops_store).next_slot
    assert _berlin_slots(nxt - 1, 1)[0] in text  # the stored next slot, shown in the schedule's zone
    assert "never fired" not in text
    assert 'href="/runs/NightlyFlow/1"' in html and 'href="/runs/AfterFlow/2"' in html
    # the newest firings over all deployments, hostile payload escaped
    assert html.count('class="firing-row"') == 2
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_deployment_page_next_fires_firings_and_versions(ops_client, ops_store):
    from reelflow.operate import get_deployment

    html = ops_client.get("/deployments/nightly").text
    text = _text(html)
    nxt = get_deployment("nightly", store=ops_store).next_slot
    fires = re.findall(r'<li class="next-fire"><time data-epoch="[^"]+">([^<]+)</time>', html)
    assert fires == _berlin_slots(nxt - 1, 5)
    assert "UTC)" in text  # the same slots in UTC beside them
    # the event firing: what triggered it, the payload, the run it started (a working link)
    assert html.count('class="firing-row"') == 1
    assert "event ratings.arrived #1" in text and "succeeded" in text
    assert '<a class="firing-run" href="/runs/NightlyFlow/1">' in html
    run_page = ops_client.get("/runs/NightlyFlow/1")
    assert run_page.status_code == 200
    how = _text(re.search(r'<td id="run-trigger">(.*?)</td>', run_page.text, re.S).group(1))
    assert how.startswith("event ratings.arrived #1") and "deployment nightly" in how
    assert 'href="/deployments/nightly"' in run_page.text and HOSTILE not in run_page.text
    # version history, newest first, parameters of each
    assert html.count('class="dep-version"') == 2
    versions = re.findall(r'<tr class="dep-version"><td>(\d+)', html)
    assert versions == ["2", "1"]
    assert "day=monday" in text and "flow.py" in text
    # the chained deployment links the upstream run that triggered it
    after = ops_client.get("/deployments/after").text
    assert "finished run NightlyFlow/1" in _text(after)
    assert 'href="/runs/NightlyFlow/1">upstream run' in after
    assert '<a class="firing-run" href="/runs/AfterFlow/2">' in after
    chained = ops_client.get("/runs/AfterFlow/2").text
    assert "finished run NightlyFlow/1" in chained and 'href="/runs/NightlyFlow/1">upstream run' in chained
    assert 'id="next-fires"' not in after  # no schedule, no fire times


def test_pause_and_resume_are_csrf_protected_posts(ops_client, ops_store):
    from reelflow.operate import get_deployment

    assert ops_client.post("/deployments/nightly/pause").status_code == 403
    assert ops_client.post("/deployments/nightly/pause", data={"csrf_token": "forged"}).status_code == 403
    assert not get_deployment("nightly", store=ops_store).paused
    page = ops_client.get("/deployments/nightly")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = ops_client.post("/deployments/nightly/pause", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/deployments/nightly?done=paused"
    assert get_deployment("nightly", store=ops_store).paused
    page = ops_client.get(r.headers["location"]).text
    assert "Deployment paused." in page and ">Resume</button>" in page
    assert 'action="/deployments/nightly/resume"' in page
    listed = ops_client.get("/deployments").text
    assert re.search(r'data-name="nightly">.*?dep-state">paused<', listed, re.S)
    r = ops_client.post("/deployments/nightly/resume", data={"csrf_token": token})
    assert r.status_code == 200 and "Deployment resumed." in r.text
    assert not get_deployment("nightly", store=ops_store).paused
    assert ops_client.post("/deployments/nightly/delete", data={"csrf_token": token}).status_code == 404


def test_unknown_deployment_is_404_naming_the_known_ones(ops_client):
    r = ops_client.get("/deployments/nope")
    assert r.status_code == 404
    assert "no deployment named &#39;nope&#39;" in r.text and "after, nightly" in r.text


def test_a_store_that_never_deployed_reads_empty_and_creates_nothing(tmp_path):
    from fastapi.testclient import TestClient

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.store._operate_db import has_operate_tables
    from reelflow.ui import create_app

    store = Store(load_config(tmp_path / "fresh"))
    store.preflight()
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        r = c.get("/deployments")
    assert r.status_code == 200 and "No deployments" in r.text and "reelflow deploy flow.py" in r.text
    assert not has_operate_tables(store.metadata)


def test_many_deployments_are_paginated_in_sql(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy import insert

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.store._operate_db import operate_tables
    from reelflow.ui import create_app

    store = Store(load_config(tmp_path / "many"))
    store.preflight()
    t = operate_tables(store.metadata)
    now = time.time()
    trig = json.dumps({"cron": "0 * * * *", "timezone": None, "events": [], "flows": []})
    with store.metadata.write(flush_blobs=False) as conn:
        conn.execute(insert(t.deployments), [dict(name=f"d{i:04d}", version=1, flow_name="F", paused=i % 2,
                                                  next_slot=now + 3600, last_slot=now, event_cursor=0, run_cursor=now,
                                                  created_at=now, updated_at=now, user="u") for i in range(2000)])
        conn.execute(insert(t.versions), [dict(name=f"d{i:04d}", version=1, flow_name="F", entry="flow.py",
                                               code="{}", params="{}", param_types="{}", triggers=trig,
                                               catchup="latest", max_concurrent=1, on_busy="queue", source=None,
                                               created_at=now, user="u") for i in range(2000)])
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        t0 = time.perf_counter()
        first = c.get("/deployments").text
        took = time.perf_counter() - t0
        assert first.count('class="deployment-row"') == 50 and "page 1 of 40" in first
        assert 'data-name="d0000"' in first and 'data-name="d0050"' not in first
        last = c.get("/deployments?page=40").text
        assert last.count('class="deployment-row"') == 50 and 'data-name="d1999"' in last
        hit = c.get("/deployments?q=d019").text
        assert hit.count('class="deployment-row"') == 10 and "10 matching" in hit
    assert took < 10, f"the first page of 2,000 deployments took {took:.2f}s"
