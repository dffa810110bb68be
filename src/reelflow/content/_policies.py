"""Bandit policies for choosing artwork: EpsilonGreedy, LinUCB, LinTS, BernoulliTS.

Contexts come in two shapes:

* ``(n, d)``: one feature vector per decision; each action has its own ridge
  model (the *disjoint* model of Li et al. 2010).
* ``(n, K, p)``: one feature vector per (decision, action), e.g. member features
  crossed with artwork features; one *shared* ridge model scores every action
  (like Vowpal Wabbit's ``--cb_explore_adf``), so what is learnt about a theme
  carries over to every title's artwork.

Every decision comes with the probability the policy had of making it, because
off-policy evaluation needs it. Updates are rank-one Sherman–Morrison (Woodbury
for a batch), never a re-inversion.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.special import ndtr

from .._progress import progress
from ..estimator import BaseEstimator

__all__ = ["BasePolicy", "EpsilonGreedy", "LinUCB", "LinTS", "BernoulliTS"]

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(48)  # P(argmax) of Gaussians to ~1e-6
_GH_W = _GH_W / _GH_W.sum()
_CHUNK_ROWS = 2048  # contexts per step of action_distribution: LinTS holds rows x K x K x 48 floats


def _as_contexts(contexts: Any) -> np.ndarray:
    x = np.asarray(contexts, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"contexts must be (n, d) or (n, n_actions, p), got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"contexts row {row} has NaN or infinite values")
    return x


class _Ridge:
    """Ridge statistics for one or many linear models: A (k, p, p), A⁻¹ and b (k, p)."""

    def __init__(self, k: int, p: int, l2: float) -> None:
        self.A = np.repeat(np.eye(p)[None] * l2, k, axis=0)
        self.A_inv = np.repeat(np.eye(p)[None] / l2, k, axis=0)
        self.b = np.zeros((k, p))
        self._theta: np.ndarray | None = None

    @property
    def theta(self) -> np.ndarray:
        if self._theta is None:
            self._theta = np.einsum("kpq,kq->kp", self.A_inv, self.b)
        return self._theta

    def update(self, j: int, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        """Add weighted rows X (m, p) with targets y to model j."""
        m, p = X.shape
        if m == 0:
            return
        self._theta = None
        self.b[j] += (w * y) @ X
        Xw = X * np.sqrt(w)[:, None]
        self.A[j] += Xw.T @ Xw
        Ainv = self.A_inv[j]
        if m == 1:  # Sherman–Morrison: O(p²)
            u = Ainv @ Xw[0]
            self.A_inv[j] = Ainv - np.outer(u, u) / (1.0 + Xw[0] @ u)
        elif m < p:  # Woodbury: an m x m solve
            U = Ainv @ Xw.T
            S = np.eye(m) + Xw @ U
            self.A_inv[j] = Ainv - U @ np.linalg.solve(S, U.T)
        else:  # a batch larger than the dimension: one p x p Cholesky solve is cheaper
            c = np.linalg.cholesky(self.A[j])
            ci = np.linalg.inv(c)
            self.A_inv[j] = ci.T @ ci


class BasePolicy(BaseEstimator, ABC):
    """``select`` / ``action_distribution`` / ``update`` / ``fit`` for every policy."""

    n_actions: int
    random_state: int | None

    def _rng(self) -> np.random.Generator:
        if not hasattr(self, "rng_"):
            self.rng_ = np.random.default_rng(self.random_state)
        return self.rng_

    def _check_n_actions(self) -> None:
        if not isinstance(self.n_actions, (int, np.integer)) or self.n_actions < 1:
            raise ValueError(f"{type(self).__name__}(n_actions={self.n_actions!r}) must be a positive integer")

    def _mask(self, n: int, candidates: Any) -> np.ndarray:
        if candidates is None:
            return np.ones((n, self.n_actions), bool)
        c = np.asarray(candidates)
        if c.dtype == bool:
            if c.shape != (n, self.n_actions):
                raise ValueError(f"candidates mask must have shape ({n}, {self.n_actions}), got {c.shape}")
            mask = c
        else:
            mask = np.zeros((n, self.n_actions), bool)
            rows = np.repeat(np.arange(n), c.shape[1]) if c.ndim == 2 else None
            if rows is None or c.shape[0] != n:
                raise ValueError("candidates must be a boolean (n, n_actions) mask or an (n, m) array of action ids")
            mask[rows, c.ravel()] = True
        empty = ~mask.any(axis=1)
        if empty.any():
            raise ValueError(f"candidates row {int(np.flatnonzero(empty)[0])} allows no action")
        return mask

    def _init_models(self, x: np.ndarray) -> None:
        """Create ridge statistics sized for these contexts (on first use)."""
        l2 = float(getattr(self, "l2", 1.0))
        if x.ndim == 3:
            if x.shape[1] != self.n_actions:
                raise ValueError(f"contexts has {x.shape[1]} actions per row, expected n_actions={self.n_actions}")
            self.shared_ = True
            self.ridge_ = _Ridge(1, x.shape[2], l2)
        else:
            self.shared_ = False
            self.ridge_ = _Ridge(self.n_actions, x.shape[1], l2)
        self.dim_ = x.shape[-1]

    def _ensure(self, x: np.ndarray) -> None:
        if not hasattr(self, "ridge_"):
            self._init_models(x)
        elif x.shape[-1] != self.dim_ or (x.ndim == 3) != self.shared_:
            raise ValueError(
                f"contexts have shape {x.shape[1:]}, but {type(self).__name__} was trained on "
                f"{'(n_actions, ' if self.shared_ else '('}{self.dim_}) features"
            )

    def _mean_var(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of every action's reward, (n, K) each."""
        r = self.ridge_
        if self.shared_:
            n, k, p = x.shape
            flat = x.reshape(n * k, p)
            mean = (flat @ r.theta[0]).reshape(n, k)
            var = ((flat @ r.A_inv[0]) * flat).sum(axis=1).reshape(n, k)
        else:
            mean = x @ r.theta.T
            var = np.stack([((x @ r.A_inv[j]) * x).sum(axis=1) for j in range(len(r.A_inv))], axis=1)
        return mean, np.maximum(var, 0.0)

    # -- the public API -------------------------------------------------------------
    def action_distribution(self, contexts: Any, candidates: Any = None, *, verbose: bool | None = None) -> np.ndarray:
        """Probability of each action for each context, shape (n, n_actions).

        Large batches are computed in chunks (bounded memory) with progress on stderr;
        ``verbose=False`` or env ``REELFLOW_PROGRESS=0`` silences it.
        """
        self._check_n_actions()
        x = _as_contexts(contexts)
        self._ensure(x)
        mask = self._mask(len(x), candidates)
        n = len(x)
        if n <= _CHUNK_ROWS:
            return self._distribution(x, mask)
        out = np.empty((n, self.n_actions))
        with progress(n, f"{type(self).__name__} action distribution", unit="context", verbose=verbose) as bar:
            for lo in range(0, n, _CHUNK_ROWS):
                hi = min(n, lo + _CHUNK_ROWS)
                out[lo:hi] = self._distribution(x[lo:hi], mask[lo:hi])
                bar.update(hi - lo)
        return out

    def select(self, contexts: Any, candidates: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Choose an action per context; returns ``(actions, propensities)``."""
        dist = self.action_distribution(contexts, candidates)
        u = self._rng().random(len(dist))[:, None]
        actions = np.minimum((dist.cumsum(axis=1) < u).sum(axis=1), self.n_actions - 1)
        return actions, dist[np.arange(len(dist)), actions]

    def update(self, contexts: Any, actions: Any, rewards: Any, weights: Any = None) -> BasePolicy:
        """Learn from observed rewards of chosen actions (online); returns self."""
        self._check_n_actions()
        x = _as_contexts(contexts)
        a = np.asarray(actions)
        y = np.asarray(rewards, dtype=np.float64)
        if not (len(x) == len(a) == len(y)):
            raise ValueError(f"contexts ({len(x)}), actions ({len(a)}) and rewards ({len(y)}) differ in length")
        if len(a) and (a.min() < 0 or a.max() >= self.n_actions):
            row = int(np.flatnonzero((a < 0) | (a >= self.n_actions))[0])
            raise ValueError(f"actions row {row} is {a[row]}, outside [0, {self.n_actions})")
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
        self._ensure(x)
        if self.shared_:
            feats = x[np.arange(len(x)), a]
            self.ridge_.update(0, feats, y, w)
        else:
            for j in np.unique(a):
                sel = a == j
                self.ridge_.update(int(j), x[sel], y[sel], w[sel])
        self.n_updates_ = getattr(self, "n_updates_", 0) + len(y)
        return self

    partial_fit = update

    def fit(self, logs: dict[str, Any], *, importance_weighted: bool = True) -> BasePolicy:
        """Learn from logged data (OBP ``bandit_feedback`` keys ``context``, ``action``,
        ``reward``, ``pscore``). Samples are weighted by ``1 / pscore`` (normalised to
        mean 1) so a logging policy's preferences do not bias the learnt model."""
        for k in ("context", "action", "reward"):
            if k not in logs:
                raise ValueError(f"fit(logs): logs has no {k!r} array (expected OBP bandit_feedback keys)")
        if len(logs["action"]) == 0:
            raise ValueError("fit(logs): the logs are empty")
        for attr in ("ridge_", "rng_", "n_updates_", "shared_", "dim_"):
            self.__dict__.pop(attr, None)
        w = None
        if importance_weighted and logs.get("pscore") is not None:
            ps = np.asarray(logs["pscore"], dtype=np.float64)
            bad = np.flatnonzero(~((ps > 0) & (ps <= 1)))
            if len(bad):
                raise ValueError(f"pscore row {int(bad[0])} is {ps[bad[0]]}; propensities must lie in (0, 1]")
            w = (1.0 / ps) / np.mean(1.0 / ps)
        return self.update(logs["context"], logs["action"], logs["reward"], weights=w)

    @abstractmethod
    def _distribution(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Probability of each allowed action, (n, n_actions)."""


def _argmax_dist(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One-hot of the best allowed action; ties share the probability."""
    s = np.where(mask, scores, -np.inf)
    best = s == s.max(axis=1, keepdims=True)
    return best / best.sum(axis=1, keepdims=True)


class EpsilonGreedy(BasePolicy):
    """Greedy on ridge estimates, exploring uniformly with probability ``epsilon``."""

    def __init__(self, *, n_actions: int, epsilon: float = 0.1, l2: float = 1.0, random_state: int | None = None) -> None:
        self.n_actions = n_actions
        self.epsilon = epsilon
        self.l2 = l2
        self.random_state = random_state

    def _distribution(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"EpsilonGreedy(epsilon={self.epsilon!r}) must lie in [0, 1]")
        mean, _ = self._mean_var(x)
        greedy = _argmax_dist(mean, mask)
        uniform = mask / mask.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * greedy + self.epsilon * uniform


class LinUCB(BasePolicy):
    """Upper confidence bound on ridge estimates: ``mean + alpha * std`` (Li et al. 2010)."""

    def __init__(self, *, n_actions: int, alpha: float = 1.0, l2: float = 1.0, random_state: int | None = None) -> None:
        self.n_actions = n_actions
        self.alpha = alpha
        self.l2 = l2
        self.random_state = random_state

    def _distribution(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.alpha < 0:
            raise ValueError(f"LinUCB(alpha={self.alpha!r}) must be >= 0")
        mean, var = self._mean_var(x)
        return _argmax_dist(mean + self.alpha * np.sqrt(var), mask)


class LinTS(BasePolicy):
    """Linear Thompson sampling: sample each action's reward from its Gaussian posterior
    (scale ``v``) and play the best sample. Propensities are exact up to quadrature:
    ``P(a) = E_z[prod_b Phi((mu_a + s_a z - mu_b) / s_b)]``."""

    def __init__(self, *, n_actions: int, v: float = 0.5, l2: float = 1.0, random_state: int | None = None) -> None:
        self.n_actions = n_actions
        self.v = v
        self.l2 = l2
        self.random_state = random_state

    def _win_probability(self, mean: np.ndarray, sd: np.ndarray, mask: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """P(action cand[i, j] has the best sample in row i), shape of ``cand``."""
        mu = np.where(mask, mean, -1e300)
        rows = np.arange(len(mu))[:, None]
        mu_a, sd_a = mu[rows, cand], sd[rows, cand]
        va = mu_a[:, :, None] + sd_a[:, :, None] * _GH_X  # (n, c, G): action a's value at each node
        z = (va[:, :, None, :] - mu[:, None, :, None]) / sd[:, None, :, None]  # against every b: (n, c, K, G)
        logcdf = np.where(mask[:, None, :, None], np.log(np.clip(ndtr(z), 1e-300, 1.0)), 0.0)
        own = np.arange(mu.shape[1])[None, None, :] == cand[:, :, None]  # drop b == a
        logcdf = np.where(own[..., None], 0.0, logcdf)
        p = (np.exp(logcdf.sum(axis=2)) * _GH_W).sum(axis=2)
        return np.where(mask[rows, cand], p, 0.0)

    def _posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.v <= 0:
            raise ValueError(f"LinTS(v={self.v!r}) must be > 0")
        mean, var = self._mean_var(x)
        return mean, np.maximum(self.v * np.sqrt(var), 1e-12)

    def _distribution(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean, sd = self._posterior(x)
        cand = np.broadcast_to(np.arange(self.n_actions), mean.shape)
        p = self._win_probability(mean, sd, mask, cand)
        return p / p.sum(axis=1, keepdims=True)

    def select(self, contexts: Any, candidates: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Play the argmax of one posterior sample per decision; its propensity by quadrature
        (computed for the chosen action only, which keeps batch decisions fast)."""
        self._check_n_actions()
        x = _as_contexts(contexts)
        self._ensure(x)
        mask = self._mask(len(x), candidates)
        mean, sd = self._posterior(x)
        draw = mean + sd * self._rng().standard_normal(mean.shape)
        actions = np.where(mask, draw, -np.inf).argmax(axis=1)
        p = self._win_probability(mean, sd, mask, actions[:, None])[:, 0]
        # normalise as action_distribution does (quadrature sums to 1 up to ~1e-6)
        return actions, np.clip(p, 1e-12, 1.0)


class BernoulliTS(BasePolicy):
    """Non-contextual Beta-Bernoulli Thompson sampling (the OBP/ZOZOTOWN baseline).

    ``len_list > 1`` ranks a slate: ``action_distribution`` then has shape
    (n, n_actions, len_list), estimated from ``n_sim`` posterior draws.
    """

    def __init__(
        self,
        *,
        n_actions: int,
        alpha_prior: Any = 1.0,
        beta_prior: Any = 1.0,
        len_list: int = 1,
        n_sim: int = 10_000,
        random_state: int | None = None,
    ) -> None:
        self.n_actions = n_actions
        self.alpha_prior = alpha_prior
        self.beta_prior = beta_prior
        self.len_list = len_list
        self.n_sim = n_sim
        self.random_state = random_state

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "successes_"):
            self.successes_ = np.zeros(self.n_actions)
            self.failures_ = np.zeros(self.n_actions)
        a = np.broadcast_to(np.asarray(self.alpha_prior, dtype=np.float64), (self.n_actions,))
        b = np.broadcast_to(np.asarray(self.beta_prior, dtype=np.float64), (self.n_actions,))
        return a + self.successes_, b + self.failures_

    def _ensure(self, x: np.ndarray) -> None:  # contexts only give the number of rows
        self._counts()

    def _slate_distribution(self) -> np.ndarray:
        a, b = self._counts()
        draws = self._rng().beta(a, b, size=(self.n_sim, self.n_actions))
        if self.len_list < self.n_actions:
            top = np.argpartition(-draws, self.len_list - 1, axis=1)[:, : self.len_list]
            order = np.argsort(-np.take_along_axis(draws, top, axis=1), axis=1)
            ranked = np.take_along_axis(top, order, axis=1)
        else:
            ranked = np.argsort(-draws, axis=1)
        dist = np.zeros((self.n_actions, self.len_list))
        for pos in range(self.len_list):
            dist[:, pos] = np.bincount(ranked[:, pos], minlength=self.n_actions) / self.n_sim
        return dist

    def _distribution(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        d = np.where(mask, self._slate_distribution()[:, 0][None, :], 0.0)
        return d / d.sum(axis=1, keepdims=True)

    def action_distribution(self, contexts: Any, candidates: Any = None, *, verbose: bool | None = None) -> np.ndarray:
        # context-free: one distribution broadcast to every row, nothing long to report
        self._check_n_actions()
        n = len(contexts) if not isinstance(contexts, (int, np.integer)) else int(contexts)
        if candidates is not None:
            if self.len_list != 1:
                raise ValueError("candidates are supported for len_list=1 only")
            return self._distribution(np.empty((n, 0)), self._mask(n, candidates))
        dist = self._slate_distribution()
        out = np.broadcast_to(dist[None], (n, *dist.shape))
        return out[:, :, 0].copy() if self.len_list == 1 else out.copy()

    def select(self, contexts: Any, candidates: Any = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(contexts) if not isinstance(contexts, (int, np.integer)) else int(contexts)
        a, b = self._counts()
        draws = self._rng().beta(a, b, size=(n, self.n_actions))
        mask = self._mask(n, candidates)
        actions = np.where(mask, draws, -np.inf).argmax(axis=1)
        dist = self.action_distribution(n, candidates) if self.len_list == 1 else None
        if dist is None:
            raise ValueError("select() picks one action; use action_distribution for slates (len_list > 1)")
        return actions, dist[np.arange(n), actions]

    def update(self, contexts: Any, actions: Any, rewards: Any, weights: Any = None) -> BernoulliTS:
        a = np.asarray(actions)
        y = np.asarray(rewards, dtype=np.float64)
        if len(a) != len(y):
            raise ValueError(f"actions ({len(a)}) and rewards ({len(y)}) differ in length")
        if len(a) and (a.min() < 0 or a.max() >= self.n_actions):
            raise ValueError(f"actions must lie in [0, {self.n_actions})")
        if len(y) and ((y < 0) | (y > 1)).any():
            row = int(np.flatnonzero((y < 0) | (y > 1))[0])
            raise ValueError(f"rewards row {row} is {y[row]}; BernoulliTS takes rewards in [0, 1]")
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
        self._counts()
        self.successes_ += np.bincount(a, weights=w * y, minlength=self.n_actions)
        self.failures_ += np.bincount(a, weights=w * (1 - y), minlength=self.n_actions)
        return self

    partial_fit = update

    def fit(self, logs: dict[str, Any], *, importance_weighted: bool = False) -> BernoulliTS:
        for attr in ("successes_", "failures_", "rng_"):
            self.__dict__.pop(attr, None)
        if len(logs.get("action", [])) == 0:
            raise ValueError("fit(logs): the logs are empty")
        return self.update(None, logs["action"], logs["reward"])

