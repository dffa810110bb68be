"""The contract every recommender honours (implicit's RecommenderBaseTestMixin, sklearn's
check_estimator): name a model once in MODELS and it runs every check."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

import scipy.sparse as sp

from reelflow.errors import CorruptArtifactError, CorruptModelFileError, ModelFileError, NotFittedError
from reelflow.estimator import clone
from reelflow.recs import ALS, BPR, EASE, HybridEASE, Interactions, ItemKNN, MostPopular, RecommenderBase

MODELS = [
    MostPopular(),
    ItemKNN(k=20, shrink=0.0),
    EASE(l2=10.0),
    HybridEASE(l2=10.0, feature_weight=5.0),
    ALS(factors=4, iterations=15, regularization=0.1, alpha=1.0, random_state=0, num_threads=1),
    BPR(factors=8, iterations=200, learning_rate=0.05, random_state=0, num_threads=1),
]
if importlib.util.find_spec("torch") is not None:  # the torch extra; its own tests skip without it
    from reelflow.recs import SASRec

    MODELS.append(SASRec(factors=16, layers=1, max_len=10, max_epochs=30, patience=None, learning_rate=0.01,
                         dropout=0.1, threads=1, random_state=0))
ids = [type(m).__name__ for m in MODELS]


def clusters(seed=0):
    """Two taste clusters: users 0-39 watch items 0-9, users 40-79 watch items 10-19.
    Item 15 is the most popular overall (MostPopular's known answer)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(80):
        lo = 0 if u < 40 else 10
        for i in rng.choice(10, 6, replace=False):
            rows.append((f"u{u}", lo + int(i)))
    for u in range(40, 80):
        rows.append((f"u{u}", 15))
    rows += [("probe", 0), ("probe", 1), ("probe", 2)]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]))


@pytest.fixture(scope="module")
def data():
    return clusters()


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_unfitted_raises(model):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        clone(model).recommend(["probe"])


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_fit_returns_self_and_is_idempotent(model, data):
    m = clone(model)
    assert m.fit(data) is m
    first = m.recommend(["probe", "u1"], n=5)
    m.fit(data)
    second = m.recommend(["probe", "u1"], n=5)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_allclose(first[1], second[1], rtol=1e-4)


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_known_right_answer(model, data):
    m = clone(model).fit(data)
    top, _ = m.recommend(["probe"], n=3)
    if isinstance(m, MostPopular):
        assert top[0, 0] == 15
    else:
        assert set(top[0].tolist()) <= set(range(3, 10)), top  # the probe's own cluster


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_exclude_seen_and_candidate_restriction(model, data):
    m = clone(model).fit(data)
    top, scores = m.recommend(["probe"], n=data.n_items - 3)
    assert not {0, 1, 2} & set(top[0].tolist())
    assert np.all(np.diff(scores[0]) <= 1e-6)  # best first
    with_seen, _ = m.recommend(["probe"], n=data.n_items, exclude_seen=False)
    assert sorted(with_seen[0].tolist()) == sorted(data.item_ids.tolist())
    restricted, _ = m.recommend(["probe", "u3"], n=2, items=[4, 17])
    assert sorted(restricted[0].tolist()) == [4, 17]
    with pytest.raises(ValueError, match="not in the training catalogue"):
        m.recommend(["probe"], n=1, items=[999])


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_unknown_users_get_popularity_fallback_and_bad_n(model, data):
    m = clone(model).fit(data)
    top, scores = m.recommend(["nobody", "probe"], n=2)
    assert top.shape == (2, 2) and top[0, 0] == 15
    single, _ = m.recommend("nobody", n=1)
    assert single.shape == (1, 1)
    with pytest.raises(ValueError, match="larger than the catalogue"):
        m.recommend(["probe"], n=10_000)
    with pytest.raises(ValueError, match="positive integer"):
        m.recommend(["probe"], n=0)


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_save_load_roundtrip_and_bad_files(model, data, tmp_path):
    m = clone(model).fit(data)
    path = tmp_path / "model.rf"
    m.save(path)
    loaded = type(m).load(path)
    a, b = m.recommend(["probe", "u50", "nobody"], n=5), loaded.recommend(["probe", "u50", "nobody"], n=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifactError, match="model file"):
        type(m).load(path)
    (tmp_path / "foreign.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not a reelflow model file"):
        type(m).load(tmp_path / "foreign.pkl")


def assert_same_value(a, b, name):
    assert type(a) is type(b), name
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    elif sp.issparse(a):
        assert a.format == b.format and a.dtype == b.dtype and a.shape == b.shape, name
        assert (a != b).nnz == 0, name
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), name
        for key in a:
            assert_same_value(a[key], b[key], f"{name}[{key}]")
    else:
        assert a == b, name


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_save_load_roundtrips_every_learned_attribute_exactly(model, tmp_path):
    """String user ids, int item ids, text metadata with a gap: everything comes back as it was."""
    rows = [(f"u{u}", i) for u in range(30) for i in range(20) if (u * 7 + i * 3) % 4 == 0]
    meta = pd.DataFrame({"title": [f"Film {i}" for i in range(20)], "genres": ["Drama", None] * 10,
                         "year": np.arange(1990, 2010)}, index=pd.Index(range(20), name="item_id"))
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), item_meta=meta)
    m = clone(model).fit(data)
    m.save(tmp_path / "m.rf")
    loaded = RecommenderBase.load(tmp_path / "m.rf")
    assert type(loaded) is type(m) and loaded.get_params() == m.get_params()
    learned = {k for k in vars(m) if k.endswith("_") and not k.startswith("_")}
    assert learned == {k for k in vars(loaded) if k.endswith("_") and not k.startswith("_")}
    for name in learned:
        if name == "item_meta_":
            assert loaded.item_meta_["genres"].isna().tolist() == m.item_meta_["genres"].isna().tolist()
            pd.testing.assert_frame_equal(loaded.item_meta_.fillna("?"), m.item_meta_.fillna("?"))
        else:
            assert_same_value(getattr(m, name), getattr(loaded, name), name)
    users = ["u0", "u4", "nobody"]
    np.testing.assert_array_equal(m.recommend(users, n=5)[1], loaded.recommend(users, n=5)[1])
    assert loaded.recommend(users, n=5)[0].tolist() == m.recommend(users, n=5)[0].tolist()


def test_load_checks_the_class_named_in_the_file(data, tmp_path):
    MostPopular().fit(data).save(tmp_path / "pop.rf")
    with pytest.raises(ModelFileError, match="holds a reelflow.recs._popular.MostPopular, not a EASE"):
        EASE.load(tmp_path / "pop.rf")
    assert isinstance(RecommenderBase.load(tmp_path / "pop.rf"), MostPopular)


def test_truncated_and_missing_model_files(data, tmp_path):
    path = tmp_path / "m.rf"
    ItemKNN(k=5).fit(data).save(path)
    raw = path.read_bytes()
    for cut in (len(raw) // 2, 40):
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptModelFileError, match=f"model file {path} is damaged or truncated"):
            ItemKNN.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ItemKNN.load(tmp_path / "nope.rf")
    assert issubclass(CorruptModelFileError, CorruptArtifactError)


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_params_and_similar_items(model, data):
    params = model.get_params()
    c = clone(model)
    assert c.get_params() == params and c is not model
    with pytest.raises(ValueError, match="has no parameter 'nope'"):
        clone(model).set_params(nope=1)
    m = clone(model).fit(data)
    sim, _ = m.similar_items([0, 12], n=3)
    assert sim.shape == (2, 3) and 0 not in sim[0].tolist()
    if not isinstance(m, MostPopular):
        assert set(sim[1].tolist()) <= set(range(10, 20))


@pytest.mark.parametrize(
    "model, match",
    [(EASE(l2=-1.0), "l2 must be a positive"), (ItemKNN(k=0), "k must be a positive"), (ALS(factors=0), "factors"),
     (BPR(learning_rate=0), "learning_rate")],
)
def test_bad_hyper_parameters_raise_in_fit(model, match, data):
    with pytest.raises(ValueError, match=match):
        model.fit(data)
    with pytest.raises(TypeError, match="takes an Interactions"):
        clone(model).fit([[1, 2]])


class _WritesMarker:
    """Unpickling this would create a file: proof that loading ran code from the model file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_crafted_model_file_runs_nothing(model, data, tmp_path):
    """Every model: a learned array swapped for a pickled object is refused, never unpickled."""
    import io
    import zipfile

    path, crafted, marker = tmp_path / "m.rf", tmp_path / "crafted.rf", tmp_path / "pwned"
    clone(model).fit(data).save(path)
    evil = io.BytesIO()
    np.save(evil, np.array([_WritesMarker(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(crafted, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, evil.getvalue() if name == "item_popularity_.npy" else src.read(name))
    with pytest.raises(ModelFileError, match="holds pickled Python objects"):
        type(model).load(crafted)
    assert not marker.exists()
