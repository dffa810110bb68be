"""ItemKNN: item-based collaborative filtering, cosine similarity with shrinkage."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._progress import progress
from ._base import RecommenderBase, top_n

__all__ = ["ItemKNN"]


class ItemKNN(RecommenderBase):
    """Score items by their similarity to what the user watched.

    ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)`` over the binarised
    user-item columns, keeping each item's ``k`` nearest neighbours.

    Parameters
    ----------
    k : neighbours kept per item.
    shrink : shrinkage term (damps similarities supported by few users).
    """

    def __init__(self, *, k: int = 100, shrink: float = 10.0) -> None:
        self.k = k
        self.shrink = shrink

    _threaded_scoring = True

    def _validate_params(self) -> None:
        self._check_positive(k=self.k)
        if self.shrink < 0:
            raise ValueError(f"ItemKNN(shrink={self.shrink!r}): shrink must be >= 0")

    def _fit(self, X: sp.csr_matrix) -> None:
        B = X.copy()
        B.data[:] = 1.0
        Bt = B.T.tocsr()
        norms = np.sqrt(np.asarray(Bt.sum(axis=1)).ravel()).astype(np.float32)
        n = B.shape[1]
        k = min(self.k, n - 1)
        rows, cols, vals = [], [], []
        block = max(1, min(n, 2_000_000 // max(n, 1)))
        with progress(n, "ItemKNN fit (item-item similarities)", unit="item") as bar:
            for lo in range(0, n, block):
                hi = min(n, lo + block)
                sims = np.asarray((Bt[lo:hi] @ B).todense(), dtype=np.float32)
                sims /= norms[lo:hi, None] * norms[None, :] + self.shrink + 1e-9
                sims[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
                idx, val = top_n(sims, k)
                rows.append(np.repeat(np.arange(lo, hi), k))
                cols.append(idx.ravel())
                vals.append(val.ravel())
                bar.update(hi - lo)
        S = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        S.eliminate_zeros()
        # Row i: item i's k neighbours; a user's score for j sums sim(i, j) over seen i.
        self.similarity_ = S.astype(np.float32)
        self.binary_items_ = B

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.binary_items_[users] @ self.similarity_).todense(), dtype=np.float32)

    def _score_one(self, user: int) -> np.ndarray:
        if type(self)._score is not ItemKNN._score:
            return super()._score_one(user)
        B, S = self.binary_items_, self.similarity_
        seen = B.indices[B.indptr[user] : B.indptr[user + 1]]
        starts, ends = S.indptr[seen], S.indptr[seen + 1]
        lengths = ends - starts
        # positions of the seen items' neighbour lists in S, concatenated in order
        pos = np.arange(int(lengths.sum())) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        scores = np.zeros(S.shape[1], np.float32)
        # float32 sums in the order scipy's sparse product adds them: the same scores bit for bit
        np.add.at(scores, S.indices[pos], S.data[pos])
        return scores
