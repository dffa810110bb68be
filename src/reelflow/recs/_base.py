"""``RecommenderBase``: the one interface every recommender implements.

A model implements ``_fit(X)`` (X: users × items CSR, float32) and
``_score(user_index)`` (dense scores for a batch of known users); the base class
does the rest the same way for every model: external ids in and out, seen-item
exclusion, candidate restriction, batched top-n, the popularity fallback for
unknown users, item-item similarity and save/load.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from .._progress import progress_scope
from ..estimator import BaseEstimator, check_is_fitted
from ._interactions import Interactions

__all__ = ["RecommenderBase", "top_n"]

R = TypeVar("R", bound="RecommenderBase")


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest scores of each row, best first."""
    n = min(n, scores.shape[1])
    if n < scores.shape[1]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _scoring_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class RecommenderBase(BaseEstimator, ABC):
    """Base class of recommenders (fit / recommend / similar_items / save / load).

    Unknown users (not in the training data, or with no training interactions)
    get the **popularity fallback**: items ranked by how many training users
    interacted with them, minus what they have seen (nothing, for unknown users).
    """

    # Models whose _score is sparse x dense (single-threaded in scipy) score batches
    # in threads; models scoring with BLAS leave threading to BLAS.
    _threaded_scoring = False

    # -- to implement ------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: sp.csr_matrix) -> None:
        """Learn from the users x items matrix (float32 CSR)."""

    @abstractmethod
    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(users), n_items) for known users' positions."""

    def _score_one(self, user: int) -> np.ndarray:
        """Writable float32 scores (n_items,) of one known user with history.

        The single-member serving path calls this; models whose batch ``_score`` pays
        a fixed cost per call (sparse row indexing) override it with the same
        arithmetic on the user's CSR slice, so one member costs what bare numpy does.
        """
        return np.asarray(self._score(np.array([user], dtype=np.int64))[0], dtype=np.float32)

    def _item_vectors(self) -> np.ndarray | sp.spmatrix:
        """Item representations for similar_items (rows = items); default: who watched them."""
        return self.user_items_.T.tocsr()

    # -- fitting -------------------------------------------------------------------
    def fit(self: R, train: Interactions, *, verbose: bool | None = None) -> R:
        """Learn from ``train``; returns self.

        Long fits report progress on stderr (a bar in a terminal or notebook, plain
        lines in logs); ``verbose=False``, or env ``REELFLOW_PROGRESS=0``, silences it.
        """
        if not isinstance(train, Interactions):
            raise TypeError(f"fit() takes an Interactions object, got {type(train).__name__}; see Interactions.from_frame")
        if len(train) == 0:
            raise ValueError("fit() got no interactions; the training split is empty")
        self._validate_params()
        X = train.matrix.astype(np.float32)
        self.user_ids_ = train.user_ids
        self.item_ids_ = train.item_ids
        self.user_items_ = X
        self.item_popularity_ = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
        self.item_meta_ = train.item_meta
        self._user_pos = {u: i for i, u in enumerate(train.user_ids.tolist())}
        self._item_pos = {v: i for i, v in enumerate(train.item_ids.tolist())}
        with progress_scope(verbose):
            self._fit(X)
        return self

    def _validate_params(self) -> None:
        """Check hyper-parameters; raise ValueError naming the bad one."""

    def _check_positive(self, **values: Any) -> None:
        for name, v in values.items():
            if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{type(self).__name__}({name}={v!r}): {name} must be a positive number")

    @property
    def n_items(self) -> int:
        check_is_fitted(self, "item_ids_")
        return len(self.item_ids_)

    # -- recommending -------------------------------------------------------------
    def _user_positions(self, user_ids: Any) -> np.ndarray:
        ids = user_ids.tolist() if isinstance(user_ids, np.ndarray) else list(user_ids)
        pos = self._user_pos
        return np.fromiter((pos.get(u, -1) for u in ids), dtype=np.int64, count=len(ids))

    def _item_positions(self, item_ids: Any, what: str) -> np.ndarray:
        ids = item_ids.tolist() if isinstance(item_ids, np.ndarray) else list(item_ids)
        pos = self._item_pos
        out = np.fromiter((pos.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if (out < 0).any():
            bad = ids[int(np.flatnonzero(out < 0)[0])]
            raise ValueError(f"{what}: item {bad!r} is not in the training catalogue")
        return out

    def _scores_for(self, upos: np.ndarray) -> np.ndarray:
        """Dense float32 scores for user positions; -1 or users without history -> popularity."""
        scores = np.empty((len(upos), len(self.item_ids_)), np.float32)
        has_history = np.zeros(len(upos), bool)
        known = upos >= 0
        if known.any():
            indptr = self.user_items_.indptr
            counts = indptr[upos[known] + 1] - indptr[upos[known]]
            has_history[known] = counts > 0
        if has_history.any():
            scores[has_history] = self._score(upos[has_history])
        if (~has_history).any():
            scores[~has_history] = self.item_popularity_
        return scores

    def recommend(
        self,
        user_ids: Sequence[Hashable] | np.ndarray | Hashable,
        n: int = 10,
        exclude_seen: bool = True,
        items: Sequence[Hashable] | np.ndarray | None = None,
        *,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for each user.

        Parameters
        ----------
        user_ids : external user ids (a single id is treated as a batch of one).
        n : how many items per user; at most the catalogue (or ``len(items)``).
        exclude_seen : leave out items the user interacted with in training.
        items : restrict recommendations to these external item ids.

        Returns
        -------
        (item_ids, scores) : arrays of shape (len(user_ids), n), best first. When a
        user has fewer than ``n`` eligible items the tail has score ``-inf``.
        Unknown users get the popularity fallback (see the class docstring).
        """
        check_is_fitted(self, "item_ids_")
        if isinstance(user_ids, (str, bytes)) or not hasattr(user_ids, "__len__"):
            user_ids = [user_ids]
        n_cand = len(self.item_ids_) if items is None else len(items)  # type: ignore[arg-type]
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer")
        if n > n_cand:
            raise ValueError(
                f"n={n} is larger than the {'candidate list' if items is not None else 'catalogue'} "
                f"({n_cand} items); ask for at most {n_cand}"
            )
        if len(user_ids) == 1 and isinstance(user_ids, (list, tuple)):  # type: ignore[arg-type]
            upos = np.array([self._user_pos.get(user_ids[0], -1)], dtype=np.int64)  # one member: no fromiter
        else:
            upos = self._user_positions(user_ids)
        allowed = None
        if items is not None:
            allowed = np.zeros(len(self.item_ids_), bool)
            allowed[self._item_positions(items, "recommend(items=...)")] = True
        if len(upos) == 1:
            return self._recommend_one(int(upos[0]), n, exclude_seen, allowed)
        out_idx = np.empty((len(upos), n), np.int64)
        out_val = np.empty((len(upos), n), np.float32)
        X = self.user_items_

        def work(lo: int) -> None:
            b = upos[lo : lo + size]
            scores = self._scores_for(b)
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            if exclude_seen:
                known = np.flatnonzero(b >= 0)
                if len(known):
                    sub = X[b[known]]
                    rows = np.repeat(known, np.diff(sub.indptr))
                    scores[rows, sub.indices] = -np.inf
            out_idx[lo : lo + len(b)], out_val[lo : lo + len(b)] = top_n(scores, n)

        threads = _scoring_threads() if self._threaded_scoring else 1
        size = batch_size or int(np.clip(-(-len(upos) // (2 * threads)), 256, 2048))
        starts = range(0, len(upos), size)
        if threads > 1 and len(starts) > 1:
            # Sparse scoring and top-n release the GIL: batches run side by side.
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, starts))
        else:
            for lo in starts:
                work(lo)
        return self.item_ids_[out_idx], out_val

    def _recommend_one(self, u: int, n: int, exclude_seen: bool,
                       allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """One member (the serving hot path): no batching, no sparse fancy indexing.

        Same scores and the same top-n selection as the batch path, so the answer is
        identical; what it saves is fixed cost (a 1-row CSR copy, boolean masks).
        """
        indptr = self.user_items_.indptr
        lo, hi = (int(indptr[u]), int(indptr[u + 1])) if u >= 0 else (0, 0)
        scores = self._score_one(u) if hi > lo else self.item_popularity_.copy()
        if allowed is not None:
            scores[~allowed] = -np.inf
        if exclude_seen and hi > lo:
            scores[self.user_items_.indices[lo:hi]] = -np.inf
        if n < len(scores):
            part = np.argpartition(-scores, n - 1)[:n]
        else:
            part = np.arange(len(scores))
        vals = scores[part]
        order = np.argsort(-vals, kind="stable")
        return self.item_ids_[part[order]][None, :], vals[order][None, :]

    def similar_items(
        self, item_ids: Sequence[Hashable] | np.ndarray | Hashable, n: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each item (cosine), the item itself excluded."""
        check_is_fitted(self, "item_ids_")
        if isinstance(item_ids, (str, bytes)) or not hasattr(item_ids, "__len__"):
            item_ids = [item_ids]
        if n < 1 or n >= len(self.item_ids_):
            raise ValueError(f"n={n} must be between 1 and {len(self.item_ids_) - 1}")
        ipos = self._item_positions(item_ids, "similar_items")
        V: Any = self._item_vectors()
        if sp.issparse(V):
            norms = np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel())
            sims = np.asarray((V[ipos] @ V.T).todense(), dtype=np.float32)
        else:
            norms = np.linalg.norm(V, axis=1)
            sims = (V[ipos] @ V.T).astype(np.float32)
        norms[norms == 0] = 1.0
        sims /= norms[ipos][:, None] * norms[None, :]
        sims[np.arange(len(ipos)), ipos] = -np.inf
        idx, val = top_n(sims, n)
        return self.item_ids_[idx], val

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path``: plain arrays plus a JSON header, no pickle.

        The file is a zip (``.npz`` layout) that :meth:`load` reads without running
        anything from it; a SHA-256 in the header catches damage (integrity, not
        authenticity). It is written to a temporary file and renamed into place.
        """
        check_is_fitted(self, "item_ids_")
        from ._persist import save_model

        save_model(self, path)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str], *, trusted: bool = False) -> R:
        """Read a model written by :meth:`save`, without executing anything from the file.

        The class named in the file is checked before anything is built: ``EASE.load``
        of an ``ALS`` file, a foreign file or an unsafe one (pickled objects) raises
        :class:`~reelflow.errors.ModelFileError`; a damaged or truncated one raises
        :class:`~reelflow.errors.CorruptModelFileError`. ``RecommenderBase.load``
        accepts any recommender class defined in this process.

        Files written by reelflow 0.1 are pickles and are refused unless
        ``trusted=True``: unpickling can run code, so pass it only for a file you
        wrote yourself, then save the model again to convert it.
        """
        from ._persist import load_model

        model: R = load_model(cls, path, trusted=trusted)
        return model

    def _after_load(self) -> None:
        """Rebuild derived state (the id -> position maps) after loading learned state."""
        if "user_ids_" in self.__dict__:
            self._user_pos = {u: i for i, u in enumerate(self.user_ids_.tolist())}
            self._item_pos = {v: i for i, v in enumerate(self.item_ids_.tolist())}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_user_pos", None)  # rebuilt on load: smaller files, faster saves
        state.pop("_item_pos", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._after_load()
