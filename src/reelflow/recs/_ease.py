"""EASE (Steck 2019): a closed-form linear item-item model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .._progress import Progress, note, progress
from ._base import RecommenderBase

__all__ = ["EASE", "ease_weights"]

_NOTE_ABOVE_ITEMS = 2000  # below this EASE fits in well under a second


def ease_weights(G: np.ndarray, l2: float, bar: Progress) -> np.ndarray:
    """EASE's item-item weights from a Gram matrix (overwritten): ``B = -P / diag(P)``, ``diag(B) = 0``."""
    G[np.diag_indices_from(G)] += np.float32(l2)
    bar.update(stage="Gram matrix built")
    c, info = lapack.spotrf(G, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise ValueError(f"EASE: the Gram matrix is not positive definite (LAPACK info={info}); raise l2")
    bar.update(stage="Cholesky factor")
    P, info = lapack.spotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"EASE: inverting the Gram matrix failed (LAPACK info={info}); raise l2")
    P = np.triu(P) + np.triu(P, 1).T  # potri fills the upper triangle only
    B = P / (-np.diag(P))
    B[np.diag_indices_from(B)] = 0.0
    bar.update(stage="inverse")
    return B.astype(np.float32, copy=False)


class EASE(RecommenderBase):
    """Embarrassingly Shallow Autoencoder.

    ``B = I - P diag(1/diag(P))`` with ``P = (XᵀX + l2·I)⁻¹`` and ``diag(B) = 0``.
    The inverse comes from a float32 Cholesky factorisation (LAPACK ``potrf`` +
    ``potri``), about half the work of a general inverse.

    **Cost grows with the cube of the catalogue**: fitting is O(items³) time and
    O(items²) memory (two ``n_items²`` float32 matrices: 55 MB each at 3,706 items,
    380 MB at 9,742), whatever the number of users. All 9,724 MovieLens-small items
    take a minute or more on two cores; items with at least 5 interactions (about
    3,650) take a few seconds. Drop rare items first for a fast fit::

        data = movielens_small().filter(min_item_interactions=5)
        EASE(l2=500.0).fit(data)

    A fit over more than 2,000 items says so on stderr before it starts.

    Parameters
    ----------
    l2 : ridge regularisation (typical: 100–1000 for MovieLens-sized data).
    """

    def __init__(self, *, l2: float = 500.0) -> None:
        self.l2 = l2

    _threaded_scoring = True

    def _validate_params(self) -> None:
        self._check_positive(l2=self.l2)

    def _fit(self, X: sp.csr_matrix) -> None:
        n = X.shape[1]
        if n > _NOTE_ABOVE_ITEMS:
            note(
                f"EASE fit: inverting a {n:,} x {n:,} item matrix, O(items³) time and {2 * 4 * n * n / 1e6:,.0f} MB; "
                "to fit faster, drop rare items first: data.filter(min_item_interactions=...)"
            )
        with progress(3, f"{type(self).__name__} fit ({n:,} items, O(items³))", unit="stage") as bar:
            G = np.asarray((X.T @ X).todense(), dtype=np.float32)
            self.weights_ = ease_weights(self._gram(G), float(self.l2), bar)

    def _gram(self, G: np.ndarray) -> np.ndarray:
        """The item-item Gram matrix the closed form inverts (subclasses add side information)."""
        return G

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_items_[users] @ self.weights_, dtype=np.float32)

    def _score_one(self, user: int) -> np.ndarray:
        if type(self)._score is not EASE._score:
            return super()._score_one(user)
        # A row slice, not fancy indexing (half the fixed cost); the same sparse x dense
        # kernel as the batch path, so the same scores bit for bit. (Gathering B's rows for
        # a BLAS gemv is no faster and stalls on a busy machine's BLAS threads.)
        return np.asarray(self.user_items_[user : user + 1] @ self.weights_, dtype=np.float32)[0]

    def _item_vectors(self) -> np.ndarray:
        return self.weights_.T
