"""The single-member path of ``recommend`` (what ``reelflow serve`` calls per request).

It must answer exactly what the batch path and a direct numpy top-n answer, for
every model, including candidate restriction, ``exclude_seen=False`` and users
without history; its speed is measured in benchmarks/recs/bench_recommend.py.
"""

import numpy as np
import pytest

from reelflow.recs import ALS, BPR, EASE, HybridEASE, ItemKNN, MostPopular
from reelflow.recs.datasets import synthetic

MODELS = [ALS(factors=8, iterations=3, random_state=0), BPR(factors=8, iterations=5, random_state=0),
          EASE(l2=50.0), HybridEASE(l2=50.0), ItemKNN(k=10), MostPopular()]


@pytest.fixture(scope="module")
def data():
    return synthetic(120, 80, 2_000, seed=3)


def direct_scores(model, p):
    """The model's scores for one user, computed straight from its learned arrays."""
    name = type(model).__name__
    if name in ("ALS", "BPR"):
        return model.item_factors_ @ model.user_factors_[p]
    if name in ("EASE", "HybridEASE"):
        return np.asarray(model.user_items_[p : p + 1] @ model.weights_)[0]
    if name == "ItemKNN":
        return np.asarray((model.binary_items_[p : p + 1] @ model.similarity_).todense())[0]
    return model.scores_.copy()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_one_member_matches_direct_numpy_and_the_batch(model, data):
    m = model.fit(data, verbose=False)
    X = m.user_items_
    users = list(data.user_ids[:40])
    batch_ids, batch_scores = m.recommend(users, 7)
    for i, u in enumerate(users):
        ids, scores = m.recommend([u], 7)
        assert ids.shape == (1, 7) and scores.dtype == np.float32
        p = m._user_pos[u]
        s = direct_scores(m, p).astype(np.float32)
        s[X.indices[X.indptr[p] : X.indptr[p + 1]]] = -np.inf
        part = np.argpartition(-s, 6)[:7]
        part = part[np.argsort(-s[part], kind="stable")]
        np.testing.assert_array_equal(ids[0], m.item_ids_[part])
        np.testing.assert_array_equal(scores[0], s[part])
        np.testing.assert_allclose(scores[0], batch_scores[i], rtol=1e-5, atol=1e-6)
        assert len(set(ids[0]) & set(m.item_ids_[X.indices[X.indptr[p] : X.indptr[p + 1]]])) == 0


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_one_member_options_and_fallback(model, data):
    m = model.fit(data, verbose=False)
    u = data.user_ids[5]
    cands = list(data.item_ids[10:30])
    for kwargs in ({"items": cands}, {"exclude_seen": False}, {"items": cands, "exclude_seen": False}):
        one = m.recommend([u], 5, **kwargs)
        two = m.recommend([u, data.user_ids[6]], 5, **kwargs)
        np.testing.assert_allclose(one[1][0], two[1][0], rtol=1e-5, atol=1e-6)
        if "items" in kwargs:
            assert set(one[0][0]) <= set(cands)
    ids, scores = m.recommend(["no such member"], 5)  # unknown: the popularity fallback
    assert list(ids[0]) == list(m.item_ids_[np.argsort(-m.item_popularity_, kind="stable")[:5]])
    assert (m.recommend(u, 5)[0] == m.recommend([u], 5)[0]).all()  # a bare id is a batch of one
