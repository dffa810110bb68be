"""New titles: new_items_split, the hybrid model and its content baselines, evaluation on new items only."""

import numpy as np
import pandas as pd
import pytest

from reelflow.recs import (
    EASE, ContentKNN, GenrePopular, HybridEASE, Interactions, RecommenderBase, evaluate, new_items_split,
)
from reelflow.recs.datasets import movielens_small

GENRES = {**{i: "Comedy|Romance" for i in range(10)}, **{i: "Horror|Thriller" for i in range(10, 20)},
          20: "Comedy", 21: "Horror"}


def catalogue():
    """Comedy fans watch items 0-9, horror fans 10-19 (days 1-50); on day 100 the new titles
    20 (a comedy) and 21 (a horror film) arrive and each is watched by a few fans of its genre."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        lo = 0 if u < 30 else 10
        for i in rng.choice(10, 6, replace=False):
            rows.append((f"u{u}", lo + int(i), int(rng.integers(1, 50))))
    rows += [(f"u{u}", 20, 100 + u) for u in range(0, 30, 3)] + [(f"u{u}", 21, 100 + u) for u in range(30, 60, 3)]
    meta = pd.DataFrame({"title": [f"Film {i} ({1990 + i % 3})" for i in range(22)],
                         "genres": [GENRES[i] for i in range(22)]}, index=pd.Index(range(22), name="item_id"))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "t"])
    return Interactions.from_frame(df, timestamp="t", item_meta=meta)


def test_new_items_split_holds_out_titles_first_watched_after_the_cutoff():
    data = catalogue()
    train, test = new_items_split(data, cutoff=100)
    assert sorted(test.active_items().tolist()) == [20, 21] and len(test) == 20
    assert not {20, 21} & set(train.active_items().tolist()) and len(train) == len(data) - 20
    assert np.array_equal(train.item_ids, data.item_ids)  # one id space: new titles known by metadata
    by_fraction, _ = new_items_split(data, new_fraction=0.05)
    assert sorted(_.active_items().tolist()) == [20, 21]
    early, valid, late = new_items_split(data, cutoff=100, valid_fraction=0.1)
    assert len(early) + len(valid) == len(train) and set(valid.active_items()) <= set(range(20))
    # history="before_cutoff": nothing after the cut-off trains, not even on old titles
    strict, new = new_items_split(data, cutoff=100, history="before_cutoff")
    assert strict.timestamps.max() < 100 and len(strict) == len(train) and len(new) == 20
    strict, _ = new_items_split(data, cutoff=40, history="before_cutoff")
    assert strict.timestamps.max() < 40 and len(strict) < len(train)
    with pytest.raises(ValueError, match="makes no item new"):
        new_items_split(data, cutoff=10_000)
    with pytest.raises(ValueError, match="history='later'; choose one of all, before_cutoff"):
        new_items_split(data, history="later")
    with pytest.raises(ValueError, match="needs timestamps"):
        new_items_split(Interactions.from_frame(pd.DataFrame({"user_id": [1], "item_id": [2]})))


@pytest.mark.parametrize("model", [HybridEASE(l2=10.0, feature_weight=5.0), ContentKNN(k=10), GenrePopular()],
                         ids=lambda m: type(m).__name__)
def test_new_titles_are_recommended_to_the_fans_of_their_genre(model):
    train, test = new_items_split(catalogue(), cutoff=100)
    m = model.fit(train)
    top, _ = m.recommend(["u1", "u2", "u31", "u32"], n=1, items=[20, 21])
    assert top[:, 0].tolist() == [20, 20, 21, 21]
    r = evaluate(m, train, test, k=1, items=test.active_items(), cold_users="skip", verbose=False)
    assert r.set_index(["metric", "k"]).value[("hr", 1)] == 1.0 and r.attrs["n_users"] == 20
    assert r.attrs["n_unseen_item_rows"] == 20  # every test row is on a title the model never saw played


def test_collaborative_ease_cannot_tell_new_titles_apart():
    train, _ = new_items_split(catalogue(), cutoff=100)
    _, scores = EASE(l2=10.0).fit(train).recommend(["u1", "u31"], n=2, items=[20, 21])
    assert np.all(scores == 0.0)  # no plays, no signal: this is what HybridEASE fixes


def test_hybrid_without_metadata_is_plain_ease_and_metadata_weights_matter():
    data = catalogue()
    bare = Interactions(users=data.users, items=data.items, user_ids=data.user_ids, item_ids=data.item_ids,
                        timestamps=data.timestamps)
    users = ["u1", "u40"]
    np.testing.assert_allclose(HybridEASE(l2=10.0).fit(bare).recommend(users, n=5)[1],
                               EASE(l2=10.0).fit(bare).recommend(users, n=5)[1], rtol=1e-5)
    no_features = HybridEASE(l2=10.0, feature_weight=0.0).fit(data).recommend(users, n=5)[1]
    np.testing.assert_allclose(no_features, EASE(l2=10.0).fit(data).recommend(users, n=5)[1], rtol=1e-5)


def test_content_models_need_metadata_and_valid_weights():
    data = catalogue()
    bare = Interactions(users=data.users, items=data.items, user_ids=data.user_ids, item_ids=data.item_ids)
    with pytest.raises(ValueError, match="ContentKNN needs item metadata"):
        ContentKNN().fit(bare)
    with pytest.raises(ValueError, match="GenrePopular needs a 'genres' column"):
        GenrePopular().fit(bare)
    with pytest.raises(ValueError, match="the tags weight -1.0 must be a number >= 0"):
        HybridEASE(tag_weight=-1.0).fit(data)
    with pytest.raises(ValueError, match="feature_weight"):
        HybridEASE(feature_weight=-2.0).fit(data)


@pytest.mark.parametrize("model", [ContentKNN(k=10), GenrePopular(), HybridEASE(l2=10.0)],
                         ids=lambda m: type(m).__name__)
def test_content_models_save_and_load_safely(model, tmp_path):
    train, _ = new_items_split(catalogue(), cutoff=100)
    m = model.fit(train)
    m.save(tmp_path / "m.rf")
    loaded = RecommenderBase.load(tmp_path / "m.rf")
    assert type(loaded) is type(m)
    a, b = m.recommend(["u1", "u31", "new"], n=5), loaded.recommend(["u1", "u31", "new"], n=5)
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_array_equal(a[1], b[1])


def test_movielens_tags_are_metadata_and_can_stop_at_a_time():
    all_tags = movielens_small(tags=True).item_meta
    assert "pixar" in all_tags.loc[1, "tags"].split("|")
    early = movielens_small(tags=True, tags_before=1_200_000_000).item_meta
    assert early["tags"].notna().sum() < all_tags["tags"].notna().sum()
