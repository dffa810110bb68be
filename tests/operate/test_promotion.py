"""Promotion gates both ways, rollback, and the decisions in the alias history (API and CLI)."""

from __future__ import annotations

import pytest

from operate.opshelpers import cli, ok
from reelflow import models
from reelflow.errors import NotFoundError, ParameterError


@pytest.fixture
def three():
    models.register("recs", {"w": 1}, metrics={"ndcg@10": 0.30, "rmse": 1.0}, alias="champion")
    models.register("recs", {"w": 2}, metrics={"ndcg@10": 0.35, "rmse": 1.1})
    models.register("recs", {"w": 3}, metrics={"ndcg@10": 0.33, "rmse": 0.9})


def test_gate_moves_a_better_candidate_and_keeps_a_worse_one(three):
    d = models.promote("recs", 2, alias="champion", metric="ndcg@10")
    assert d.moved and d.incumbent == 1 and d.candidate_value == 0.35 and d.incumbent_value == 0.30
    assert models.alias_version("recs", "champion") == 2
    kept = models.promote("recs", 3, alias="champion", metric="ndcg@10")
    assert not kept and kept.incumbent == 2 and "does not beat" in kept.reason
    assert models.alias_version("recs", "champion") == 2
    hist = models.history("recs")
    assert [(h["decision"], h["version"]) for h in hist] == [(None, 1), ("moved", 2), ("kept", 2)]
    assert hist[1]["candidate_value"] == 0.35 and hist[1]["incumbent_value"] == 0.30
    assert "0.33 vs 0.35" in hist[2]["reason"]


def test_min_improvement_and_lower_is_better(three):
    assert not models.promote("recs", 2, metric="ndcg@10", min_improvement=0.1)
    assert models.alias_version("recs", "champion") == 1
    assert models.promote("recs", 3, metric="rmse", higher_is_better=False)  # 0.9 < 1.0
    assert not models.promote("recs", 2, metric="rmse", higher_is_better=False)


def test_first_holder_and_bad_input():
    models.register("solo", {"w": 1}, metrics={"ndcg@10": 0.1})
    d = models.promote("solo", 1, alias="champion")
    assert d.moved and "had no holder" in d.reason
    assert not models.promote("solo", 1, alias="champion")  # already holds
    with pytest.raises(ParameterError, match="no registered metric 'map'"):
        models.promote("solo", 1, metric="map")
    with pytest.raises(NotFoundError):
        models.promote("solo", 9)


def test_rollback_goes_back_to_the_previous_holder(three):
    models.promote("recs", 2)
    d = models.rollback("recs", "champion")
    assert d.candidate == 1 and d.incumbent == 2
    assert models.alias_version("recs", "champion") == 1
    assert models.history("recs")[-1]["decision"] == "rollback"
    with pytest.raises(NotFoundError, match="no alias 'nope'"):
        models.rollback("recs", "nope")


def test_cli_promote_rollback_and_history(three):
    assert "moved to 2" in ok("models", "promote", "recs", "2", "--metric", "ndcg@10")
    assert "kept 2" in ok("models", "promote", "recs", "3")
    out = ok("models", "history", "recs")
    assert "does not beat" in out and "beats version 1" in out
    assert "-> version 1 (was 2)" in ok("models", "rollback", "recs", "champion")
    res = cli("models", "promote", "recs", "2", "--metric", "nope")
    assert res.returncode == 2 and "no registered metric 'nope'" in res.stderr
