"""ALS and BPR through the ``implicit`` library (CPU), with BLAS held to one thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._progress import progress
from ..estimator import check_is_fitted
from ._base import RecommenderBase

__all__ = ["ALS", "BPR"]


def _fit_implicit(make: Callable[[], Any], X: sp.csr_matrix, desc: str, iterations: int) -> Any:
    from threadpoolctl import threadpool_limits

    # implicit parallelises itself; a multi-threaded BLAS underneath oversubscribes
    # the cores and can be 10x slower (implicit issues #169, #440).
    with threadpool_limits(limits=1, user_api="blas"), progress(iterations, desc, unit="iteration") as bar:
        model = make()
        # our progress (bar or log lines) instead of implicit's tqdm bar, which spams stored logs
        model.fit(X, show_progress=False, callback=lambda *_: bar.update())
    return model


class _FactorModel(RecommenderBase):
    """A model fitted by an ``implicit`` class whose constructor takes our parameters by name."""

    _implicit_path: str = ""  # "module:Class" inside implicit.cpu

    def _fit(self, X: sp.csr_matrix) -> None:
        import importlib

        module, name = self._implicit_path.split(":")
        cls = getattr(importlib.import_module(module), name)
        desc = f"{type(self).__name__} fit ({X.shape[0]:,} users x {X.shape[1]:,} items)"
        self._store_factors(_fit_implicit(lambda: cls(**self.get_params()), X, desc, int(self.get_params()["iterations"])))

    def to_implicit(self) -> Any:
        """The fitted model as an ``implicit`` object, rebuilt from the stored factor arrays.

        Model files keep only the factors (plain arrays); this gives implicit's own API
        (``recommend``, ``similar_users``, ...) over internal user / item indices.
        """
        import importlib

        check_is_fitted(self, "item_factors_")
        module, name = self._implicit_path.split(":")
        model = getattr(importlib.import_module(module), name)(**self.get_params())
        model.user_factors = self.user_factors_.copy()
        model.item_factors = self.item_factors_.copy()
        return model

    def _store_factors(self, model: Any) -> None:
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T

    def _score_one(self, user: int) -> np.ndarray:
        return self.item_factors_ @ self.user_factors_[user]  # one gemv, as numpy would

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_


class ALS(_FactorModel):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) by alternating least squares.

    Hyper-parameters mean what they mean in ``implicit.als.AlternatingLeastSquares``:
    confidence ``1 + alpha * weight``, L2 ``regularization``, ``factors`` latent
    dimensions, ``iterations`` sweeps; ``random_state`` seeds the initialisation.
    """

    _implicit_path = "implicit.cpu.als:AlternatingLeastSquares"

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.01,
        alpha: float = 1.0,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.random_state = random_state
        self.num_threads = num_threads

    def _validate_params(self) -> None:
        self._check_positive(factors=self.factors, iterations=self.iterations, alpha=self.alpha)
        if self.regularization < 0:
            raise ValueError(f"ALS(regularization={self.regularization!r}) must be >= 0")


class BPR(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) by SGD, through ``implicit``."""

    _implicit_path = "implicit.cpu.bpr:BayesianPersonalizedRanking"

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 100,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.random_state = random_state
        self.num_threads = num_threads

    def _validate_params(self) -> None:
        self._check_positive(factors=self.factors, iterations=self.iterations, learning_rate=self.learning_rate)
        if self.regularization < 0:
            raise ValueError(f"BPR(regularization={self.regularization!r}) must be >= 0")
