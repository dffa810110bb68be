"""New titles (cold start): a hybrid EASE with item side information, and two content baselines.

Why this hybrid. A title with no plays has an empty column in the user-item
matrix, so every collaborative model here scores it by its fallback only.
``HybridEASE`` adds the items' metadata to EASE's closed form the way
collective / side-information linear models do (Ning & Karypis 2012, cSLIM;
Jeunen, Van Balen & Goethals 2020, closed-form EASE with side information):
each metadata token is a pseudo-user who "watched" the items carrying it, so the
Gram matrix becomes ``XᵀX + feature_weight · F Fᵀ``. One inversion then learns,
for every item, weights from the other items that draw on co-viewing where it
exists and on shared genres, years, title words and tags where it does not:

* a new title's column is ``F Fᵀ`` only, so it is predicted from the warm
  titles that share its metadata, with EASE's regression (not a plain cosine)
  discounting tokens that every item has;
* a warm title's column is dominated by co-viewing counts (hundreds) next to
  ``feature_weight`` (tens), so on titles with history it stays within noise of
  plain EASE.

It keeps EASE's cost (one items × items inversion), its scoring, its safe model
file, and needs nothing at serving time beyond the learned matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._progress import progress
from ._base import RecommenderBase, top_n
from ._ease import EASE
from ._features import item_features

__all__ = ["HybridEASE", "ContentKNN", "GenrePopular"]


def _weights(model: HybridEASE | ContentKNN) -> dict[str, float]:
    return {"genres": model.genre_weight, "year": model.year_weight, "title": model.title_weight,
            "tags": model.tag_weight}


def _check_weights(model: HybridEASE | ContentKNN) -> None:
    for name, w in _weights(model).items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ValueError(f"{type(model).__name__}: the {name} weight {w!r} must be a number >= 0")


class HybridEASE(EASE):
    """EASE with item metadata: recommends new titles (no plays yet) next to known ones.

    The training data's ``item_meta`` (a DataFrame indexed by item id) supplies
    ``genres`` and ``tags`` (``|``-separated), the ``year`` (a column, or the
    ``(1995)`` ending a title) and ``title`` words; see the module docstring for
    the model. Without metadata it is plain EASE.

    Parameters
    ----------
    l2 : ridge regularisation, as in :class:`EASE`.
    feature_weight : weight of the metadata pseudo-users against co-viewing counts
        (0: plain EASE; typical 10–100 on MovieLens-sized data).
    genre_weight, year_weight, title_weight, tag_weight : relative weight of each
        metadata block (0 leaves a block out).
    min_df : title words and tags on fewer items than this are ignored.
    """

    def __init__(
        self,
        *,
        l2: float = 500.0,
        feature_weight: float = 30.0,
        genre_weight: float = 1.0,
        year_weight: float = 0.5,
        title_weight: float = 0.5,
        tag_weight: float = 0.5,
        min_df: int = 2,
    ) -> None:
        self.l2 = l2
        self.feature_weight = feature_weight
        self.genre_weight = genre_weight
        self.year_weight = year_weight
        self.title_weight = title_weight
        self.tag_weight = tag_weight
        self.min_df = min_df

    def _validate_params(self) -> None:
        self._check_positive(l2=self.l2, min_df=self.min_df)
        _check_weights(self)
        if not isinstance(self.feature_weight, (int, float)) or self.feature_weight < 0:
            raise ValueError(f"HybridEASE(feature_weight={self.feature_weight!r}): must be a number >= 0")

    def _gram(self, G: np.ndarray) -> np.ndarray:
        F = item_features(self.item_meta_, self.item_ids_, _weights(self), min_df=int(self.min_df))
        self.item_features_ = F
        if F.shape[1] and self.feature_weight > 0:
            G += np.float32(self.feature_weight) * np.asarray((F @ F.T).todense(), dtype=np.float32)
        return G


class ContentKNN(RecommenderBase):
    """Pure content baseline: items scored by metadata similarity to what the user watched.

    ``score(u, j) = Σ_{i watched by u} cos(f_i, f_j)`` over the ``k`` most similar
    items of each watched item, with ``f`` the metadata features of
    :class:`HybridEASE`. Needs ``item_meta`` on the training data.
    """

    def __init__(
        self,
        *,
        k: int = 200,
        genre_weight: float = 1.0,
        year_weight: float = 0.5,
        title_weight: float = 0.5,
        tag_weight: float = 0.5,
        min_df: int = 2,
    ) -> None:
        self.k = k
        self.genre_weight = genre_weight
        self.year_weight = year_weight
        self.title_weight = title_weight
        self.tag_weight = tag_weight
        self.min_df = min_df

    _threaded_scoring = True

    def _validate_params(self) -> None:
        self._check_positive(k=self.k, min_df=self.min_df)
        _check_weights(self)

    def _fit(self, X: sp.csr_matrix) -> None:
        F = item_features(self.item_meta_, self.item_ids_, _weights(self), min_df=int(self.min_df))
        if F.shape[1] == 0:
            raise ValueError(
                "ContentKNN needs item metadata (genres, year, title or tags): build the Interactions with "
                "item_meta=..., e.g. datasets.movielens_small()"
            )
        norms = np.sqrt(np.asarray(F.multiply(F).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        Fn = (sp.diags((1.0 / norms).astype(np.float32)) @ F).tocsr()
        n = F.shape[0]
        k = min(int(self.k), n - 1)
        rows, cols, vals = [], [], []
        block = max(1, min(n, 2_000_000 // max(n, 1)))
        with progress(n, "ContentKNN fit (item-item metadata similarities)", unit="item") as bar:
            for lo in range(0, n, block):
                hi = min(n, lo + block)
                sims = np.asarray((Fn[lo:hi] @ Fn.T).todense(), dtype=np.float32)
                sims[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
                idx, val = top_n(sims, k)
                rows.append(np.repeat(np.arange(lo, hi), k))
                cols.append(idx.ravel())
                vals.append(val.ravel())
                bar.update(hi - lo)
        S = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        S.eliminate_zeros()
        self.similarity_ = S.astype(np.float32)
        self.item_features_ = F

    def _score(self, users: np.ndarray) -> np.ndarray:
        B = self.user_items_[users].copy()
        B.data[:] = 1.0
        return np.asarray((B @ self.similarity_).todense(), dtype=np.float32)

    def _item_vectors(self) -> sp.csr_matrix:
        return self.item_features_


class GenrePopular(RecommenderBase):
    """"Most popular in your genres": the baseline a catalogue team would ship first.

    A user's taste is the share of their history in each genre; an item scores the
    sum of that share over its genres, ties broken by training popularity (a
    title with no plays yet ranks by genre match alone). Uses the ``genres``
    column of ``item_meta`` (``|``-separated).
    """

    def __init__(self) -> None:
        pass

    def _fit(self, X: sp.csr_matrix) -> None:
        G = item_features(self.item_meta_, self.item_ids_, {"genres": 1.0})
        if G.shape[1] == 0:
            raise ValueError(
                "GenrePopular needs a 'genres' column in the item metadata (e.g. 'Comedy|Drama'); build the "
                "Interactions with item_meta=..."
            )
        G.data[:] = 1.0
        self.item_genres_ = G.astype(np.float32)
        pop = self.item_popularity_
        self.tie_break_ = (np.log1p(pop) / (np.log1p(pop.max()) + 1.0) * 1e-3).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        B = self.user_items_[users].copy()
        B.data[:] = 1.0
        n = np.maximum(np.asarray(B.sum(axis=1)).ravel(), 1.0)
        taste = np.asarray((B @ self.item_genres_).todense(), dtype=np.float32) / n[:, None].astype(np.float32)
        return np.asarray(taste @ self.item_genres_.T.toarray(), dtype=np.float32) + self.tie_break_
