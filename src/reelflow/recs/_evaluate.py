"""Honest offline evaluation: full ranking over the whole catalogue by default.

``evaluate`` ranks every item for every test user (seen training items
excluded), so metrics are not inflated by sampled negatives. Sampled evaluation
(``sampled_negatives=99``, as in the NCF paper) exists only to compare with old
papers: its negatives are returned so the numbers can be reproduced (Krichene &
Rendle 2020 show sampled metrics can reorder models).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._progress import note, progress, progress_scope
from ..estimator import clone
from ._base import RecommenderBase, top_n
from ._interactions import Interactions

__all__ = ["evaluate", "tune", "TuneResult", "METRICS", "metric_value"]

_EVAL_CHUNK = 4096  # users scored per progress step (recommend batches and threads within it)

METRICS = ("hr", "recall", "precision", "ndcg", "mrr", "map", "coverage", "novelty", "popularity")
_DEFAULT = ("hr", "recall", "precision", "ndcg", "mrr", "map", "coverage", "novelty")


def _ranking_metrics(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, float]:
    h = hits[:, :k].astype(np.float64)
    nh = h.sum(axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, 0)
    prec_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return {
        "hr": float((nh > 0).mean()),
        "recall": float((nh / n_rel).mean()),
        "precision": float((nh / k).mean()),
        "ndcg": float(((h * disc).sum(axis=1) / ideal).mean()),
        "mrr": float(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0).mean()),
        "map": float(((prec_at * h).sum(axis=1) / np.minimum(n_rel, k)).mean()),
    }


def evaluate(
    model: RecommenderBase,
    train: Interactions,
    test: Interactions | Any,
    k: int | Sequence[int] = (10, 20),
    metrics: Sequence[str] = _DEFAULT,
    *,
    items: Sequence[Hashable] | np.ndarray | None = None,
    cold_users: str = "fallback",
    sampled_negatives: int | None = None,
    negatives: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    verbose: bool | None = None,
) -> pd.DataFrame:
    """Evaluate a fitted model on ``test`` and return a tidy table.

    Parameters
    ----------
    model : fitted on ``train``.
    test : the held-out interactions: a split of the same data set, an
        :class:`Interactions` built on its own (e.g. read from a benchmark's test
        file), or a plain table (pandas / polars / pyarrow) with ``user_id`` and
        ``item_id`` columns. Anything not sharing ``train``'s id maps is aligned to
        them by external id (:meth:`Interactions.from_frame` with ``like=train``):
        rows naming items outside the training catalogue cannot be ranked and are
        left out, and test users unknown to training are cold users.
    k : cut-offs.
    metrics : any of ``hr, recall, precision, ndcg, mrr, map`` (per-user averages),
        ``coverage`` (share of the catalogue recommended to someone), ``novelty``
        (mean self-information -log2 p(item) of recommended items) and ``popularity``
        (their mean training popularity: popularity bias).
    items : rank only these external item ids (a candidate catalogue, e.g. the new
        titles of :func:`new_items_split`); test rows on other items are left out.
    cold_users : test users with no training history are ranked by the model's
        popularity fallback (``"fallback"``, the default: what production would
        serve them) or left out (``"skip"``).
    sampled_negatives : rank each test item against this many random unseen
        items instead of the whole catalogue (legacy protocol); the negatives used
        are in ``report.attrs["negatives"]`` and can be passed back as ``negatives``.
    verbose : progress over user batches on stderr (a bar in a terminal or notebook,
        plain lines in logs); ``False``, or env ``REELFLOW_PROGRESS=0``, silences it.

    Returns
    -------
    DataFrame with columns ``metric, k, value``. Its ``attrs`` say what was
    evaluated: ``n_users``, ``n_cold_users``, ``n_test_rows`` (rows given),
    ``n_unseen_item_rows`` (rows on items the model never saw in training: outside
    its catalogue, or in it without a training interaction), ``n_unknown_item_rows``
    (of those, rows outside the catalogue, left out), ``n_excluded_rows`` (rows on
    items outside ``items``) and ``alignment`` (see :attr:`Interactions.alignment`).
    A one-line summary goes to stderr when test rows refer to unseen items.
    """
    ks = sorted({k} if isinstance(k, (int, np.integer)) else set(k))
    if not ks or ks[0] < 1:
        raise ValueError(f"k={k!r}: cut-offs must be positive integers")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if cold_users not in ("fallback", "skip"):
        raise ValueError("cold_users must be 'fallback' or 'skip'")
    if not isinstance(train, Interactions):
        raise TypeError(f"evaluate() takes the training Interactions as train, got {type(train).__name__}")
    model_items = getattr(model, "item_ids_", None)
    if model_items is not None and not np.array_equal(model_items, train.item_ids):
        raise ValueError(
            f"the model was fitted on a catalogue of {len(model_items)} items, not on train's {train.n_items}; "
            "pass the Interactions the model was fitted on as train"
        )
    test, summary = _aligned_test(train, test, verbose)
    if len(test) == 0:
        raise ValueError("the test split is empty; nothing to evaluate")
    allowed: np.ndarray | None = None
    if items is not None:
        allowed = np.zeros(train.n_items, bool)
        allowed[model._item_positions(items, "evaluate(items=...)")] = True
        excluded = ~allowed[test.items]
        summary["n_excluded_rows"] = int(excluded.sum())
        test = test.subset(~excluded)
        if len(test) == 0:
            raise ValueError("no test row is on one of the items= candidates; nothing to evaluate")
    n_cand = train.n_items if allowed is None else int(allowed.sum())
    if ks[-1] > n_cand:
        what = "the catalogue" if allowed is None else "the items= candidates"
        raise ValueError(f"k={ks[-1]} is larger than {what} ({n_cand} items)")
    T = test.matrix.tocsr()
    T.data[:] = 1.0
    n_rel_all = np.diff(T.indptr)
    users = np.flatnonzero(n_rel_all > 0)
    user_ids = test.user_ids[users]
    in_train = train.user_index(user_ids)
    train_counts = np.bincount(train.users, minlength=train.n_users)
    cold = np.where(in_train >= 0, train_counts[np.maximum(in_train, 0)], 0) == 0
    if cold_users == "skip":
        users, user_ids = users[~cold], user_ids[~cold]
    if len(users) == 0:
        raise ValueError("no test user has training history; use cold_users='fallback' to evaluate them")
    if sampled_negatives is not None or negatives is not None:
        if items is not None:
            raise ValueError("items= and sampled negatives do not go together; use one protocol")
        return _sampled(model, train, test, users, ks, metrics, sampled_negatives, negatives, seed, verbose)
    kmax = ks[-1]
    rec_items = np.empty((len(user_ids), kmax), dtype=model.item_ids_.dtype)
    candidates = None if allowed is None else train.item_ids[allowed]
    chunk = max(_EVAL_CHUNK, -(-len(user_ids) // 20))  # about 20 progress steps at most
    with progress(len(user_ids), f"evaluate {type(model).__name__}", unit="user", verbose=verbose) as bar:
        for lo in range(0, len(user_ids), chunk):
            part = user_ids[lo : lo + chunk]
            rec_items[lo : lo + len(part)] = model.recommend(
                part, n=kmax, exclude_seen=True, items=candidates, batch_size=batch_size
            )[0]
            bar.update(len(part))
    rec_idx = model._item_positions(rec_items.ravel(), "evaluate").reshape(rec_items.shape)
    hits = np.asarray(T[np.repeat(users, kmax), rec_idx.ravel()]).reshape(len(users), kmax) > 0
    n_rel = n_rel_all[users]
    pop = train.matrix.getnnz(axis=0).astype(np.float64)
    rows: list[dict[str, Any]] = []
    for kk in ks:
        values = _ranking_metrics(hits, n_rel, kk)
        top = rec_idx[:, :kk]
        values["coverage"] = float(len(np.unique(top)) / train.n_items)
        p = np.maximum(pop[top], 1.0) / max(train.n_users, 1)
        values["novelty"] = float((-np.log2(p)).mean())
        values["popularity"] = float(pop[top].mean())
        rows.extend({"metric": m, "k": kk, "value": values[m]} for m in metrics)
    report = pd.DataFrame(rows)
    report.attrs.update(n_users=int(len(users)), n_cold_users=int(cold.sum()), **summary)
    return report


def _aligned_test(train: Interactions, test: Any, verbose: bool | None) -> tuple[Interactions, dict[str, Any]]:
    """``test`` on ``train``'s item ids, and what the alignment and training data say about its rows."""
    if not isinstance(test, Interactions):
        test = Interactions.from_frame(test, like=train)
    elif not np.array_equal(test.item_ids, train.item_ids):
        frame = test.to_frame()
        ts = "timestamp" if test.timestamps is not None else None
        test = Interactions.from_frame(frame, timestamp=ts, weight="weight", like=train)
    alignment = test.alignment
    n_unknown = int(alignment["unknown_item_rows"]) if alignment else 0
    n_rows = int(alignment["rows"]) if alignment else len(test)
    train_pop = np.bincount(train.items, minlength=train.n_items)
    n_unseen = n_unknown + int((train_pop[test.items] == 0).sum())
    if n_unseen:
        note(
            f"evaluate: {n_unseen:,} of {n_rows:,} test rows refer to items the model never saw in training "
            f"({n_unknown:,} outside its catalogue, left out; {n_unseen - n_unknown:,} in it without a training "
            "interaction, ranked like any item)",
            verbose=verbose,
        )
    summary = {
        "n_test_rows": n_rows,
        "n_unseen_item_rows": n_unseen,
        "n_unknown_item_rows": n_unknown,
        "n_excluded_rows": 0,
        "alignment": alignment,
    }
    return test, summary


def _sampled(
    model: RecommenderBase,
    train: Interactions,
    test: Interactions,
    users: np.ndarray,
    ks: list[int],
    metrics: Sequence[str],
    n_neg: int | None,
    negatives: np.ndarray | None,
    seed: int,
    verbose: bool | None = None,
) -> pd.DataFrame:
    # One test item per user (their first in the test split) against sampled unseen items.
    T = test.matrix.tocsr()
    pos = np.array([T.indices[T.indptr[u]] for u in users])
    X = train.matrix
    if T.shape[0] > X.shape[0]:  # cold users appended to the user ids by alignment: no training rows
        X = sp.vstack([X, sp.csr_matrix((T.shape[0] - X.shape[0], X.shape[1]), dtype=X.dtype)])
    seen = (X + T).tocsr()
    if negatives is None:
        assert n_neg is not None
        rng = np.random.default_rng(seed)
        negatives = np.empty((len(users), n_neg), np.int64)
        all_items = np.arange(train.n_items)
        with progress(len(users), "evaluate: sampling negatives", unit="user", verbose=verbose) as bar:
            for r, u in enumerate(users):
                avail = np.setdiff1d(all_items, seen.indices[seen.indptr[u] : seen.indptr[u + 1]], assume_unique=True)
                if len(avail) == 0:
                    raise ValueError(f"user {test.user_ids[u]!r} has seen every item; no negatives can be sampled")
                # Without replacement when possible (a very active user may have fewer unseen items).
                negatives[r] = rng.choice(avail, n_neg, replace=len(avail) < n_neg)
                bar.update()
    if negatives.shape[0] != len(users):
        raise ValueError("negatives= has a row count different from the evaluated users; reuse it with the same split")
    cand = np.concatenate([pos[:, None], negatives], axis=1)
    scores = model._scores_for(model._user_positions(test.user_ids[users]))
    cand_scores = np.take_along_axis(scores, cand, axis=1)
    order, _ = top_n(cand_scores, cand.shape[1])
    hits = order == 0
    rows: list[dict[str, Any]] = []
    for kk in ks:
        values = _ranking_metrics(hits, np.ones(len(users), np.int64), kk)
        rows.extend({"metric": m, "k": kk, "value": values[m]} for m in metrics if m in values)
    report = pd.DataFrame(rows)
    report.attrs.update(n_users=int(len(users)), negatives=negatives, protocol=f"sampled-{negatives.shape[1]}")
    return report


def metric_value(report: pd.DataFrame, metric: str) -> float:
    """``report`` value for ``"ndcg@10"``-style names."""
    name, _, k = metric.partition("@")
    sel = report[(report.metric == name) & (report.k == int(k or report.k.max()))]
    if sel.empty:
        raise ValueError(f"metric {metric!r} is not in the report (it has {sorted(set(report.metric))})")
    return float(sel.value.iloc[0])


@dataclass
class TuneResult:
    """Outcome of :func:`tune`: the winner (fitted on ``train``) and every trial."""

    best_params: dict[str, Any]
    best_score: float
    best_model: RecommenderBase
    results: pd.DataFrame


def _candidates(grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]], n_iter: int | None, seed: int) -> list[dict[str, Any]]:
    combos: list[dict[str, Any]]
    if isinstance(grid, Mapping):
        keys = list(grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    else:
        combos = [dict(c) for c in grid]
    if n_iter is not None and n_iter < len(combos):
        rng = np.random.default_rng(seed)
        combos = [combos[i] for i in sorted(rng.choice(len(combos), n_iter, replace=False))]
    return combos or [{}]


def tune(
    model: RecommenderBase | type[RecommenderBase],
    grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    train: Interactions,
    valid: Interactions,
    metric: str = "ndcg@10",
    *,
    n_iter: int | None = None,
    seed: int = 0,
    verbose: bool | None = None,
) -> TuneResult:
    """Pick hyper-parameters on the **validation** split only.

    ``grid`` is a dict of value lists (every combination, or ``n_iter`` random
    ones) or a list of parameter dicts. The test split never enters: pass the
    training part and a validation part carved from it (e.g. ``temporal_split(...,
    valid_fraction=0.1)``), then refit the winner on the whole training side.

    Progress (one step per candidate, with the best score so far) goes to stderr;
    the fits and evaluations inside stay quiet. ``verbose=False``, or env
    ``REELFLOW_PROGRESS=0``, silences it.
    """
    base = model() if isinstance(model, type) else model
    name, _, _ = metric.partition("@")
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use e.g. 'ndcg@10'")
    kk = int(metric.partition("@")[2] or 10)
    rows = []
    best: tuple[float, dict[str, Any], RecommenderBase] | None = None
    candidates = _candidates(grid, n_iter, seed)
    desc = f"tune {type(base).__name__} ({len(candidates)} candidates, {metric} on validation)"
    with progress(len(candidates), desc, unit="candidate", verbose=verbose) as bar, progress_scope(False):
        for params in candidates:
            m = clone(base).set_params(**params)
            t0 = time.perf_counter()
            m.fit(train)
            fit_s = time.perf_counter() - t0
            score = metric_value(evaluate(m, train, valid, k=kk, metrics=(name,)), f"{name}@{kk}")
            rows.append({**params, metric: score, "fit_seconds": fit_s})
            if best is None or score > best[0]:
                best = (score, params, m)
            bar.update(best=best[0])
    assert best is not None
    return TuneResult(best_params=best[1], best_score=best[0], best_model=best[2], results=pd.DataFrame(rows))

