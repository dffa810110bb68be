"""Evaluation metrics against hand-computed values; tuning never sees the test split."""

import math

import numpy as np
import pandas as pd
import pytest

from reelflow.recs import EASE, Interactions, MostPopular, RecommenderBase, evaluate, metric_value, temporal_split, tune
from reelflow.recs.datasets import synthetic


class FixedScores(RecommenderBase):
    """Scores item i as -i: the ranking is 0, 1, 2, ... minus what the user has seen."""

    def __init__(self) -> None:
        pass

    def _fit(self, X):
        pass

    def _score(self, users):
        return np.tile(-np.arange(len(self.item_ids_), dtype=np.float32), (len(users), 1))


def split():
    rows = [("a", 0, 1), ("a", 1, 2), ("b", 0, 1), ("b", 5, 2), ("a", 2, 10), ("a", 4, 11), ("b", 3, 12)]
    d = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "t"]), timestamp="t")
    return temporal_split(d, cutoff=10)


def value(report, metric, k):
    return float(report[(report.metric == metric) & (report.k == k)].value.iloc[0])


def test_metrics_match_hand_computed_values():
    train, test = split()
    m = FixedScores().fit(train)
    r = evaluate(m, train, test, k=(2, 3), metrics=("hr", "precision", "recall", "ndcg", "mrr", "map", "coverage"))
    # user a: ranking 2, 3, 4 (0, 1 seen), relevant {2, 4}; user b: ranking 1, 2, 3 (0, 5 seen), relevant {3}
    assert value(r, "hr", 2) == pytest.approx((1 + 0) / 2)
    assert value(r, "precision", 2) == pytest.approx((0.5 + 0) / 2)
    assert value(r, "recall", 3) == pytest.approx((1.0 + 1.0) / 2)
    idcg2 = 1 + 1 / math.log2(3)
    ndcg_a3 = (1 + 1 / math.log2(4)) / idcg2
    ndcg_b3 = (1 / math.log2(4)) / 1
    assert value(r, "ndcg", 3) == pytest.approx((ndcg_a3 + ndcg_b3) / 2)
    assert value(r, "mrr", 3) == pytest.approx((1 + 1 / 3) / 2)
    assert value(r, "map", 3) == pytest.approx(((1 + 2 / 3) / 2 + (1 / 3) / 1) / 2)
    assert value(r, "coverage", 2) == pytest.approx(3 / 6)  # items 1, 2, 3 of 0..5
    assert r.attrs["n_users"] == 2 and list(r.columns) == ["metric", "k", "value"]
    assert metric_value(r, "ndcg@3") == value(r, "ndcg", 3)


def test_bad_evaluation_input():
    train, test = split()
    m = FixedScores().fit(train)
    with pytest.raises(ValueError, match="larger than the catalogue"):
        evaluate(m, train, test, k=100)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        evaluate(m, train, test, metrics=("auc",))
    with pytest.raises(ValueError, match="empty"):
        evaluate(m, train, test.subset(np.zeros(len(test), bool)), k=2)


def test_cold_users_fallback_or_skip():
    d = synthetic(n_users=300, n_items=100, n_interactions=6000, seed=2)
    train, test = temporal_split(d, 0.3)
    # make one test user cold: drop their training interactions
    u = int(test.users[0])
    train = train.subset(train.users != u)
    m = EASE(l2=50.0).fit(train)
    full = evaluate(m, train, test, k=10, metrics=("hr",))
    skipped = evaluate(m, train, test, k=10, metrics=("hr",), cold_users="skip")
    assert full.attrs["n_cold_users"] >= 1
    assert skipped.attrs["n_users"] == full.attrs["n_users"] - full.attrs["n_cold_users"]


def test_sampled_evaluation_is_reproducible():
    d = synthetic(n_users=300, n_items=200, n_interactions=8000, seed=4)
    train, test = temporal_split(d, 0.2)
    m = EASE(l2=100.0).fit(train)
    sampled = evaluate(m, train, test, k=10, metrics=("hr", "ndcg"), sampled_negatives=50, seed=1)
    negatives = sampled.attrs["negatives"]
    again = evaluate(m, train, test, k=10, metrics=("hr", "ndcg"), negatives=negatives)
    assert np.array_equal(sampled.value, again.value)
    assert negatives.shape == (sampled.attrs["n_users"], 50)
    assert sampled.attrs["protocol"] == "sampled-50"


def test_tune_uses_validation_only():
    d = synthetic(n_users=300, n_items=150, n_interactions=8000, seed=5)
    train, valid, test = temporal_split(d, 0.2, valid_fraction=0.2)
    res = tune(EASE, {"l2": [1.0, 100.0, 1000.0]}, train, valid, metric="ndcg@10")
    assert len(res.results) == 3 and set(res.results.columns) >= {"l2", "ndcg@10", "fit_seconds"}
    assert res.best_score == res.results["ndcg@10"].max()
    assert res.best_params == {"l2": res.results.loc[res.results["ndcg@10"].idxmax(), "l2"]}
    # the chosen model is the one fitted on the training part
    expected = EASE(**res.best_params).fit(train).recommend([0, 1], n=5)[0]
    assert np.array_equal(res.best_model.recommend([0, 1], n=5)[0], expected)
    assert len(tune(MostPopular(), {}, train, valid).results) == 1
    sampled = tune(EASE, {"l2": [1.0, 10.0, 100.0, 1000.0]}, train, valid, n_iter=2)
    assert len(sampled.results) == 2
