"""MostPopular: the baseline every model must beat."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._base import RecommenderBase

__all__ = ["MostPopular"]


class MostPopular(RecommenderBase):
    """Recommend the items most users interacted with in training (same list for everyone)."""

    def __init__(self) -> None:
        pass

    def _fit(self, X: sp.csr_matrix) -> None:
        self.scores_ = self.item_popularity_.copy()

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(users), len(self.scores_))).copy()

    def _score_one(self, user: int) -> np.ndarray:
        return self.scores_.copy()
