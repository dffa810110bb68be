"""Interactions, readers and the bundled data set."""

import numpy as np
import pandas as pd
import pytest

from reelflow.recs import Interactions
from reelflow.recs.datasets import MOVIELENS_SMALL_DIR, movielens_small, read_movielens, read_recbole, synthetic


def frame():
    return pd.DataFrame({"u": ["bob", "amy", "amy", "cat"], "i": [10, 20, 10, 30], "t": [3, 1, 2, 5], "w": [1.0, 2.0, 3.0, 4.0]})


def test_from_frame_keeps_external_ids():
    d = Interactions.from_frame(frame(), user="u", item="i", timestamp="t", weight="w")
    assert d.shape == (3, 3) and len(d) == 4
    assert d.user_ids.tolist() == ["amy", "bob", "cat"] and d.item_ids.tolist() == [10, 20, 30]
    m = d.matrix.toarray()
    assert m[0].tolist() == [3.0, 2.0, 0.0]
    assert d.user_index(["cat", "nobody"]).tolist() == [2, -1]
    back = d.to_frame().sort_values(["user_id", "item_id"])
    assert back.weight.tolist() == [3.0, 2.0, 1.0, 4.0]


@pytest.mark.parametrize(
    "df, kwargs, match",
    [
        (pd.DataFrame({"u": [], "i": []}), {"user": "u", "item": "i"}, "empty"),
        (frame(), {"user": "user", "item": "i"}, "column 'user' is not in the table"),
        (pd.DataFrame({"u": [1, None], "i": [1, 2]}), {"user": "u", "item": "i"}, "column 'u' has 1 missing values \\(rows \\[1\\]\\)"),
        (pd.DataFrame({"u": [1, 1], "i": [2, 2]}), {"user": "u", "item": "i", "duplicates": "error"}, "repeat a \\(user, item\\) pair"),
        (frame(), {"user": "u", "item": "i", "weight": "u"}, "must be numeric"),
    ],
)
def test_bad_frames_are_clear_errors(df, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Interactions.from_frame(df, **kwargs)


def test_duplicates_policies():
    df = pd.DataFrame({"u": [1, 1, 2], "i": [5, 5, 5], "t": [10, 20, 30], "w": [1.0, 2.0, 4.0]})
    s = Interactions.from_frame(df, user="u", item="i", timestamp="t", weight="w")
    assert len(s) == 2 and sorted(s.weights.tolist()) == [3.0, 4.0] and sorted(s.timestamps.tolist()) == [20, 30]
    counted = Interactions.from_frame(df, user="u", item="i")
    assert counted.matrix.toarray().ravel().tolist() == [2.0, 1.0]
    last = Interactions.from_frame(df, user="u", item="i", timestamp="t", weight="w", duplicates="last")
    assert sorted(last.weights.tolist()) == [2.0, 4.0]


def test_movielens_small_is_bundled_with_its_readme():
    import hashlib

    # GroupLens' README (their licence) ships unchanged: the checksum of the release
    readme = (MOVIELENS_SMALL_DIR / "README.txt").read_bytes()
    assert hashlib.sha256(readme).hexdigest() == "569448aba20b7eb111dbaa271231a51a9c25add372ededf84256dc592a1fceaf"
    d = movielens_small()
    assert len(d) == 100_836 and d.n_users == 610
    assert d.titles([1])[0] == "Toy Story (1995)"
    assert movielens_small(min_rating=4.0).weights.max() == 1.0


def test_movielens_formats_and_recbole(tmp_path):
    (tmp_path / "ml1m").mkdir()
    (tmp_path / "ml1m" / "ratings.dat").write_text("1::10::5::100\n1::20::3::200\n2::10::4::300\n")
    (tmp_path / "ml1m" / "movies.dat").write_bytes("10::Caf\xe9 (1990)::Drama\n20::B (1991)::Comedy\n".encode("latin-1"))
    d = read_movielens(tmp_path / "ml1m", binary=False)
    assert len(d) == 3 and d.titles([10]) == ["Caf\xe9 (1990)"] and d.weights.tolist() == [5.0, 3.0, 4.0]
    (tmp_path / "ml100k").mkdir()
    (tmp_path / "ml100k" / "u.data").write_text("1\t10\t5\t100\n2\t10\t4\t300\n")
    assert read_movielens(tmp_path / "ml100k").n_users == 2
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t4\t1\nu2\ti1\t3\t2\n")
    r = read_recbole(inter)
    assert r.user_ids.tolist() == ["u1", "u2"] and r.timestamps.tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="no ratings.csv"):
        read_movielens(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a MovieLens ratings file"):
        read_movielens(bad)


def test_synthetic_has_power_law_popularity_and_structure():
    d = synthetic(n_users=400, n_items=300, n_interactions=20_000, seed=1)
    assert d.shape == (400, 300) and 18_000 <= len(d) <= 22_000
    sparse = synthetic(n_users=400, n_items=300, n_interactions=5000, seed=1)
    pop = np.sort(np.bincount(sparse.items, minlength=300))[::-1]
    assert pop[:30].sum() > 0.3 * pop.sum()  # the top 10 % of items take a heavy share
    assert synthetic(n_users=50, n_items=40, n_interactions=500, seed=1).users.tolist() == \
        synthetic(n_users=50, n_items=40, n_interactions=500, seed=1).users.tolist()


def test_filter_reindexes():
    d = synthetic(n_users=100, n_items=80, n_interactions=2000, seed=0)
    f = d.filter(min_item_interactions=20)
    assert f.n_items < d.n_items and np.bincount(f.items).min() >= 20
    assert set(f.item_ids.tolist()) <= set(d.item_ids.tolist())


def test_reading_an_interactions_does_not_change_its_bytes():
    from reelflow.store._serialize import encode

    d = synthetic(n_users=50, n_items=40, n_interactions=500)
    before = encode(d).key
    d.matrix, d.user_index([0]), d.item_index([1])  # caches derived state
    assert encode(d).key == before  # so a step that only reads it stores nothing new
