"""Splits: leak-free, deterministic, validation carved from train."""

import numpy as np
import pytest

from reelflow.recs import leave_last_out, random_split, temporal_split, user_split
from reelflow.recs.datasets import synthetic


@pytest.fixture(scope="module")
def data():
    return synthetic(n_users=200, n_items=150, n_interactions=6000, seed=3)


def test_temporal_split_has_no_future_in_train(data):
    train, valid, test = temporal_split(data, 0.2, valid_fraction=0.1)
    assert train.timestamps.max() < valid.timestamps.min() <= valid.timestamps.max() < test.timestamps.min()
    assert len(train) + len(valid) + len(test) == len(data)
    assert abs(len(test) / len(data) - 0.2) < 0.02
    assert np.array_equal(train.item_ids, test.item_ids)
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        temporal_split(data, 1.5)


def test_leave_last_out(data):
    train, valid, test = leave_last_out(data, valid=True)
    counts = np.bincount(data.users, minlength=data.n_users)
    assert len(test) == int((counts >= 2).sum())
    for u in np.unique(test.users)[:20]:
        assert train.timestamps[train.users == u].max() <= test.timestamps[test.users == u].min()
        assert valid.timestamps[valid.users == u].max() <= test.timestamps[test.users == u].min()


def test_random_split_deterministic(data):
    a, b = random_split(data, 0.3, seed=7), random_split(data, 0.3, seed=7)
    assert np.array_equal(a[1].users, b[1].users)
    assert not np.array_equal(a[1].users, random_split(data, 0.3, seed=8)[1].users)


def test_user_split_holds_out_users_with_fold_in(data):
    train, test = user_split(data, test_users=0.25, fold_in=0.5, seed=1)
    held = np.unique(test.users)
    assert 0.2 * data.n_users < len(held) <= 0.25 * data.n_users + 1
    # held-out users keep their earliest half in train for folding in
    for u in held[:10]:
        assert train.timestamps[train.users == u].max() <= test.timestamps[test.users == u].min()
    assert len(train) + len(test) == len(data)


def test_splits_need_timestamps():
    d = synthetic(n_users=20, n_items=20, n_interactions=100)
    d.timestamps = None
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(d)
