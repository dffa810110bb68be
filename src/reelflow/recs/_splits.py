"""Train/validation/test splits. Each returns ``(train, test)``, or ``(train, valid, test)``
when a validation part is asked for (carved from the training side, never from test).
All parts share the data set's id maps; results are deterministic given ``seed``.
"""

from __future__ import annotations

import numpy as np

from ._interactions import Interactions

__all__ = ["leave_last_out", "temporal_split", "random_split", "user_split", "new_items_split"]

Split = tuple[Interactions, Interactions] | tuple[Interactions, Interactions, Interactions]


def _need_timestamps(data: Interactions, fn: str) -> np.ndarray:
    if data.timestamps is None:
        raise ValueError(f"{fn} needs timestamps; build the Interactions with timestamp=... or use random_split")
    return data.timestamps


def _check_fraction(name: str, f: float | None) -> None:
    if f is not None and not 0.0 < f < 1.0:
        raise ValueError(f"{name}={f!r} must be between 0 and 1 (exclusive)")


def _last_n_mask(data: Interactions, n: int, order_key: np.ndarray) -> np.ndarray:
    """True for each user's last ``n`` interactions by ``order_key`` (users keep >= 1 in train)."""
    order = np.lexsort((order_key, data.users))
    users_sorted = data.users[order]
    counts = np.bincount(data.users, minlength=data.n_users)
    ends = np.cumsum(counts)
    pos_from_end = ends[users_sorted] - 1 - np.arange(len(order))
    take = np.minimum(n, np.maximum(counts - 1, 0))[users_sorted]
    mask = np.zeros(len(data), bool)
    mask[order[pos_from_end < take]] = True
    return mask


def leave_last_out(data: Interactions, n: int = 1, *, valid: bool = False) -> Split:
    """Each user's last ``n`` interactions (by time) are the test set; with ``valid=True``
    the ``n`` before those are the validation set. Users with a single interaction stay
    entirely in train."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    ts = _need_timestamps(data, "leave_last_out")
    test_mask = _last_n_mask(data, n, ts)
    train, test = data.subset(~test_mask), data.subset(test_mask)
    if not valid:
        return train, test
    v_mask = _last_n_mask(train, n, train.timestamps)  # type: ignore[arg-type]
    return train.subset(~v_mask), train.subset(v_mask), test


def temporal_split(
    data: Interactions,
    test_fraction: float = 0.2,
    *,
    cutoff: int | None = None,
    valid_fraction: float | None = None,
) -> Split:
    """Everything at or after a global cut-off time is test: no future leaks into training.

    The cut-off is ``cutoff`` (a timestamp) or the ``1 - test_fraction`` quantile of
    the timestamps. ``valid_fraction`` carves the last part of the training period.
    """
    ts = _need_timestamps(data, "temporal_split")
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("valid_fraction", valid_fraction)
    t = int(np.quantile(ts, 1.0 - test_fraction)) if cutoff is None else int(cutoff)
    test_mask = ts >= t
    if test_mask.all() or not test_mask.any():
        raise ValueError(f"cut-off {t} leaves an empty train or test part; choose another cut-off")
    train, test = data.subset(~test_mask), data.subset(test_mask)
    if valid_fraction is None:
        return train, test
    inner = temporal_split(train, valid_fraction)
    return inner[0], inner[1], test


def random_split(
    data: Interactions, test_fraction: float = 0.2, *, valid_fraction: float | None = None, seed: int = 0
) -> Split:
    """Interactions assigned to test at random (leaks the future; for comparisons only)."""
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("valid_fraction", valid_fraction)
    rng = np.random.default_rng(seed)
    test_mask = rng.random(len(data)) < test_fraction
    train, test = data.subset(~test_mask), data.subset(test_mask)
    if valid_fraction is None:
        return train, test
    inner = random_split(train, valid_fraction, seed=seed + 1)
    return inner[0], inner[1], test


def user_split(
    data: Interactions,
    test_users: float = 0.2,
    *,
    fold_in: float = 0.8,
    valid_users: float | None = None,
    seed: int = 0,
) -> Split:
    """Held-out users: a ``test_users`` fraction of users is evaluated on interactions the
    model never saw. A ``fold_in`` fraction of each held-out user's interactions (their
    earliest, when timestamps exist) stays in train so models can represent them; the
    rest is their test set. ``valid_users`` holds out a disjoint set the same way."""
    _check_fraction("test_users", test_users)
    _check_fraction("fold_in", fold_in)
    _check_fraction("valid_users", valid_users)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(data.n_users)
    n_test = max(1, int(round(test_users * data.n_users)))
    n_valid = 0 if valid_users is None else max(1, int(round(valid_users * data.n_users)))
    role = np.zeros(data.n_users, np.int8)
    role[perm[:n_test]] = 2
    role[perm[n_test : n_test + n_valid]] = 1
    key = data.timestamps if data.timestamps is not None else rng.random(len(data))
    counts = np.bincount(data.users, minlength=data.n_users)
    n_hold = np.maximum(0, counts - np.maximum(1, np.floor(fold_in * counts)).astype(np.int64))
    order = np.lexsort((key, data.users))
    users_sorted = data.users[order]
    pos_from_end = np.cumsum(counts)[users_sorted] - 1 - np.arange(len(order))
    held = np.zeros(len(data), bool)
    held[order[pos_from_end < n_hold[users_sorted]]] = True
    r = role[data.users]
    test_mask = held & (r == 2)
    valid_mask = held & (r == 1)
    train = data.subset(~(test_mask | valid_mask))
    if valid_users is None:
        return train, data.subset(test_mask)
    return train, data.subset(valid_mask), data.subset(test_mask)


_HISTORY = ("all", "before_cutoff")


def new_items_split(
    data: Interactions,
    new_fraction: float = 0.1,
    *,
    cutoff: int | None = None,
    history: str = "all",
    valid_fraction: float | None = None,
) -> Split:
    """New titles (item cold start): items first watched at or after a cut-off are the test catalogue.

    An item is *new* when its first interaction is at or after ``cutoff`` (a
    timestamp), by default the time after which the latest ``new_fraction`` of the
    items first appeared. The test part holds every interaction with a new item;
    the training part never contains one, so a model meets the new titles only
    through their metadata (``item_meta``). Evaluate on the new titles alone with::

        train, test = new_items_split(data, 0.1)
        evaluate(model.fit(train), train, test, items=test.active_items(), cold_users="skip")

    ``history`` says which interactions with the other items train on: ``"all"``
    (the default; the usual item cold-start protocol, so users who watched a new
    title have their history) or ``"before_cutoff"`` (nothing from after the
    cut-off). ``valid_fraction`` carves a validation part from the training side
    the same way (its new items are the latest-appearing of the training items).
    All parts share ``data``'s id maps.
    """
    ts = _need_timestamps(data, "new_items_split")
    _check_fraction("new_fraction", new_fraction)
    _check_fraction("valid_fraction", valid_fraction)
    if history not in _HISTORY:
        raise ValueError(f"history={history!r}; choose one of {', '.join(_HISTORY)}")
    first = np.full(data.n_items, np.iinfo(np.int64).max)
    np.minimum.at(first, data.items, ts)
    present = first < np.iinfo(np.int64).max
    if cutoff is None:
        t = int(np.quantile(first[present], 1.0 - new_fraction, method="higher"))
    else:
        t = int(cutoff)
    new = present & (first >= t)
    if not new.any() or new[present].all():
        raise ValueError(f"cut-off {t} makes no item new, or every item new; choose another cut-off or new_fraction")
    on_new = new[data.items]
    keep = ~on_new if history == "all" else ~on_new & (ts < t)
    train, test = data.subset(keep), data.subset(on_new)
    if valid_fraction is None:
        return train, test
    inner = new_items_split(train, valid_fraction, history=history)
    return inner[0], inner[1], test
