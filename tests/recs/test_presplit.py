"""Data that comes already split: separate train / test files mapped onto one id space."""

import numpy as np
import pandas as pd
import pytest

from reelflow.recs import EASE, Interactions, ItemKNN, MostPopular, evaluate, leave_last_out
from reelflow.recs.datasets import synthetic


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A benchmark's two files: train.csv and test.csv, the test one with a new user and a new item."""
    data = synthetic(n_users=120, n_items=200, n_interactions=2400, seed=3)
    train, test = leave_last_out(data, n=2)
    while len(train.active_items()) < data.n_items:  # every item in the training file, as in a real benchmark
        data = data.subset(np.isin(data.items, np.unique(train.items))).filter()
        train, test = leave_last_out(data, n=2)
    folder = tmp_path_factory.mktemp("bench")
    train.to_frame().to_csv(folder / "train.csv", index=False)
    extra = pd.DataFrame({"user_id": [5, 999, 999], "item_id": [777, 4, 888],
                          "weight": 1.0, "timestamp": [2_000_000_000] * 3})
    pd.concat([test.to_frame(), extra]).to_csv(folder / "test.csv", index=False)
    return folder, train, test


def read(folder, name, **kw):
    return pd.read_csv(folder / name)


def test_from_frame_like_maps_onto_the_training_id_space(files, capsys):
    folder, _, _ = files
    train = Interactions.from_frame(read(folder, "train.csv"), timestamp="timestamp")
    test = Interactions.from_frame(read(folder, "test.csv"), timestamp="timestamp", like=train)
    assert np.array_equal(test.item_ids, train.item_ids)
    assert np.array_equal(test.user_ids[: train.n_users], train.user_ids) and test.user_ids[-1] == 999
    a = test.alignment
    assert a["rows"] == len(read(folder, "test.csv"))
    assert (a["unknown_item_rows"], a["unknown_items"], a["dropped_rows"]) == (2, 2, 2)
    assert (a["unknown_user_rows"], a["unknown_users"]) == (2, 1)
    assert len(test) == a["rows"] - 2  # the two rows on items 777 and 888 are gone, the rest kept
    # cold user 999 is kept with its known item
    assert test.user_index([999])[0] == train.n_users
    assert "2 row(s) name 2 item(s) outside the catalogue" in capsys.readouterr().err


def test_unknown_user_and_item_policies(files):
    folder, _, _ = files
    train = Interactions.from_frame(read(folder, "train.csv"), timestamp="timestamp")
    df = read(folder, "test.csv")
    dropped = Interactions.from_frame(df, like=train, unknown_users="drop")
    assert 999 not in dropped.user_ids.tolist() and dropped.alignment["dropped_rows"] == 3
    with pytest.raises(ValueError, match="2 of .* rows name 2 item\\(s\\) outside the reference catalogue, e.g. 777"):
        Interactions.from_frame(df, like=train, unknown_items="error")
    with pytest.raises(ValueError, match="1 user\\(s\\) the reference data set does not know, e.g. 999"):
        Interactions.from_frame(df[~df.item_id.isin([777, 888])], like=train, unknown_users="error")
    with pytest.raises(ValueError, match="unknown_users='maybe'; choose one of keep, drop, error"):
        Interactions.from_frame(df, like=train, unknown_users="maybe")
    text_ids = df.astype({"item_id": str, "user_id": str}).assign(item_id=lambda d: "m" + d.item_id)
    with pytest.raises(ValueError, match="read both tables with the same id type"):
        Interactions.from_frame(text_ids, like=train)


@pytest.mark.parametrize("model", [EASE(l2=50.0), ItemKNN(k=20), MostPopular()], ids=lambda m: type(m).__name__)
def test_evaluate_on_files_matches_evaluating_the_original_split(files, model):
    """Reading the two files back gives the same metrics as evaluating the split in memory."""
    folder, train0, test0 = files
    train = Interactions.from_frame(read(folder, "train.csv"), timestamp="timestamp")
    test_df = read(folder, "test.csv")
    m = model.fit(train)
    metrics = ("hr", "recall", "ndcg", "mrr", "map", "coverage", "novelty")
    original = evaluate(model.__class__(**model.get_params()).fit(train0), train0, test0, k=(5, 10), metrics=metrics,
                        verbose=False)
    known_users = test_df[test_df.user_id != 999]
    for test, n_unknown in ((Interactions.from_frame(test_df, timestamp="timestamp", like=train, unknown_users="drop"), 2),
                            (Interactions.from_frame(known_users, timestamp="timestamp"), 1),
                            (known_users[["user_id", "item_id"]], 1)):
        r = evaluate(m, train, test, k=(5, 10), metrics=metrics, verbose=False)
        pd.testing.assert_frame_equal(r, original)
        assert r.attrs["n_unknown_item_rows"] == n_unknown and r.attrs["n_unseen_item_rows"] >= n_unknown


def test_evaluate_counts_unseen_items_and_cold_users(files, capsys):
    folder, _, _ = files
    train = Interactions.from_frame(read(folder, "train.csv"), timestamp="timestamp")
    test_df = read(folder, "test.csv")
    m = MostPopular().fit(train)
    r = evaluate(m, train, test_df, k=5)
    assert r.attrs["n_test_rows"] == len(test_df)
    assert r.attrs["n_unknown_item_rows"] == 2 and r.attrs["n_cold_users"] == 1
    assert r.attrs["n_users"] == test_df.user_id.nunique()
    assert "2 of" in capsys.readouterr().err
    skipped = evaluate(m, train, test_df, k=5, cold_users="skip", verbose=False)
    assert skipped.attrs["n_users"] == r.attrs["n_users"] - 1
    sampled = evaluate(m, train, test_df, k=5, sampled_negatives=5, verbose=False)
    assert sampled.attrs["n_users"] == r.attrs["n_users"]


def test_unseen_items_in_the_catalogue_are_counted(files):
    """An item in the id map but without a training interaction is one the model never saw."""
    rows = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 13], "t": [1, 2, 1, 5, 6]})
    data = Interactions.from_frame(rows, timestamp="t")
    train, test = data.subset(data.timestamps < 5), data.subset(data.timestamps >= 5)
    r = evaluate(MostPopular().fit(train), train, test, k=1, verbose=False)
    assert r.attrs["n_unseen_item_rows"] == 2 and r.attrs["n_unknown_item_rows"] == 0


def test_evaluate_refuses_a_model_fitted_on_another_catalogue(files):
    folder, train0, _ = files
    other = Interactions.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2]}))
    with pytest.raises(ValueError, match="fitted on a catalogue of 2 items"):
        evaluate(MostPopular().fit(other), train0, read(folder, "test.csv"))
