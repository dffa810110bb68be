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
