"""Off-policy evaluation with the Open Bandit Pipeline's names, inputs and outputs.

An OBP user switches by changing the import::

    from reelflow.content.ope import InverseProbabilityWeighting as IPW   # was obp.ope

Inputs follow OBP: ``reward``, ``action``, ``pscore`` (n_rounds,), optional
``position`` (0-based), and the evaluation policy's ``action_dist`` of shape
(n_rounds, n_actions, len_list). Closed-form estimators (IPW, SNIPW) give OBP's
numbers exactly; DM/DR-family estimators give them for the same reward-model
predictions; ``estimate_interval`` draws the same bootstrap samples as OBP for
the same ``random_state``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress

__all__ = [
    "InverseProbabilityWeighting",
    "IPW",
    "SelfNormalizedInverseProbabilityWeighting",
    "SNIPW",
    "DirectMethod",
    "DM",
    "DoublyRobust",
    "DR",
    "SelfNormalizedDoublyRobust",
    "SNDR",
    "SwitchDoublyRobust",
    "SwitchDR",
    "Replay",
    "RegressionModel",
    "OffPolicyEvaluation",
    "estimate_confidence_interval_by_bootstrap",
    "check_ope_inputs",
    "load_open_bandit_dataset",
]


# -- validation ------------------------------------------------------------------------
def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_ope_inputs(
    action_dist: np.ndarray,
    *,
    reward: np.ndarray | None = None,
    action: np.ndarray | None = None,
    pscore: np.ndarray | None = None,
    position: np.ndarray | None = None,
    estimated_rewards_by_reg_model: np.ndarray | None = None,
    reward_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Validate OPE inputs; return the 0-based positions. Every error names the array and row."""
    ad = np.asarray(action_dist)
    if ad.ndim != 3:
        raise ValueError(f"action_dist must have shape (n_rounds, n_actions, len_list), got {ad.shape}")
    n = ad.shape[0]
    if n == 0:
        raise ValueError("the logs are empty: action_dist has 0 rounds")
    sums = ad.sum(axis=1)
    bad = ~np.isclose(sums, 1.0, atol=1e-6)
    if bad.any():
        row, pos = np.argwhere(bad)[0]
        raise ValueError(f"action_dist row {row} (position {pos}) sums to {sums[row, pos]:.6g}, not 1")
    if (ad < 0).any():
        raise ValueError(f"action_dist row {int(np.argwhere(ad < 0)[0][0])} has a negative probability")
    arrays = {"reward": reward, "action": action, "pscore": pscore, "position": position}
    for name, arr in arrays.items():
        if arr is not None and np.asarray(arr).shape != (n,):
            raise ValueError(f"{name} has shape {np.asarray(arr).shape}, expected ({n},) like action_dist's rounds")
    if action is not None:
        a = np.asarray(action)
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError("action must hold integer action ids")
        out = (a < 0) | (a >= ad.shape[1])
        if out.any():
            row = _first_bad(out)
            raise ValueError(f"action row {row} is {a[row]}, outside [0, {ad.shape[1]}) of action_dist")
    if pscore is not None:
        ps = np.asarray(pscore, dtype=np.float64)
        bad = ~((ps > 0) & (ps <= 1))
        if bad.any():
            row = _first_bad(bad)
            raise ValueError(f"pscore row {row} is {ps[row]}; propensities must lie in (0, 1]")
    if reward is not None:
        r = np.asarray(reward, dtype=np.float64)
        if not np.isfinite(r).all():
            raise ValueError(f"reward row {_first_bad(~np.isfinite(r))} is not finite")
        if reward_range is not None:
            lo, hi = reward_range
            bad = (r < lo) | (r > hi)
            if bad.any():
                row = _first_bad(bad)
                raise ValueError(f"reward row {row} is {r[row]}, outside the declared range [{lo}, {hi}]")
    if position is None:
        if ad.shape[2] > 1:
            raise ValueError("position is required when action_dist has len_list > 1")
        pos = np.zeros(n, dtype=np.int64)
    else:
        pos = np.asarray(position)
        out = (pos < 0) | (pos >= ad.shape[2])
        if not np.issubdtype(pos.dtype, np.integer) or out.any():
            row = _first_bad(out) if out.any() else 0
            raise ValueError(f"position row {row} must be an integer in [0, {ad.shape[2]})")
    if estimated_rewards_by_reg_model is not None and np.asarray(estimated_rewards_by_reg_model).shape != ad.shape:
        raise ValueError(
            f"estimated_rewards_by_reg_model has shape {np.asarray(estimated_rewards_by_reg_model).shape}, "
            f"expected action_dist's {ad.shape}"
        )
    return pos


def estimate_confidence_interval_by_bootstrap(
    samples: np.ndarray, alpha: float = 0.05, n_bootstrap_samples: int = 10000, random_state: int | None = None
) -> dict[str, float]:
    """OBP's nonparametric bootstrap, vectorised: the same resamples for the same ``random_state``.

    Uses ``numpy.random.RandomState(random_state)`` and draws resample indices in the
    order OBP's loop of ``choice`` calls does, so the interval matches OBP's.
    """
    if not (isinstance(alpha, float) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
    if not (isinstance(n_bootstrap_samples, (int, np.integer)) and n_bootstrap_samples > 0):
        raise ValueError(f"n_bootstrap_samples must be a positive integer, got {n_bootstrap_samples!r}")
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    rs = np.random.RandomState(random_state)
    means = np.empty(n_bootstrap_samples)
    chunk = max(1, min(n_bootstrap_samples, 20_000_000 // max(n, 1)))
    for lo in range(0, n_bootstrap_samples, chunk):
        m = min(chunk, n_bootstrap_samples - lo)
        idx = rs.randint(0, n, size=(m, n))
        means[lo : lo + m] = samples[idx].mean(axis=1)
    return {
        "mean": float(np.mean(means)),
        f"{100 * (1.0 - alpha)}% CI (lower)": float(np.percentile(means, 100 * (alpha / 2))),
        f"{100 * (1.0 - alpha)}% CI (upper)": float(np.percentile(means, 100 * (1.0 - alpha / 2))),
    }


# -- estimators --------------------------------------------------------------------------
@dataclass
class BaseOffPolicyEstimator(ABC):
    """OBP's estimator interface: ``estimate_round_rewards``, ``estimate_policy_value``,
    ``estimate_interval``."""

    estimator_name: str = "base"

    @abstractmethod
    def _round_rewards(self, **kw: Any) -> np.ndarray:
        """The per-round values whose mean is the estimate."""

    def estimate_round_rewards(self, **kwargs: Any) -> np.ndarray:
        return self._round_rewards(**kwargs)

    def estimate_policy_value(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray,
        pscore: np.ndarray | None = None,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        **kwargs: Any,
    ) -> float:
        """The estimated value of the evaluation policy."""
        return float(self._rounds(reward, action, action_dist, pscore, position, estimated_rewards_by_reg_model,
                                  kwargs).mean())

    def estimate_interval(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        action_dist: np.ndarray,
        pscore: np.ndarray | None = None,
        position: np.ndarray | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 10000,
        random_state: int | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Bootstrap confidence interval of the policy value (OBP's procedure)."""
        rounds = self._rounds(reward, action, action_dist, pscore, position, estimated_rewards_by_reg_model, kwargs)
        return estimate_confidence_interval_by_bootstrap(rounds, alpha, n_bootstrap_samples, random_state)

    def _rounds(self, reward: Any, action: Any, action_dist: Any, pscore: Any, position: Any, q: Any,
                extra: dict[str, Any]) -> np.ndarray:
        return self._round_rewards(reward=reward, action=action, action_dist=action_dist, pscore=pscore,
                                   position=position, estimated_rewards_by_reg_model=q, **extra)


def _prepare(needs_pscore: bool, needs_q: bool, **kw: Any) -> dict[str, Any]:
    for name in ("reward", "action", "action_dist") + (("pscore",) if needs_pscore else ()):
        if kw.get(name) is None:
            raise ValueError(f"{name} is required by this estimator")
    if needs_q and kw.get("estimated_rewards_by_reg_model") is None:
        raise ValueError(
            "estimated_rewards_by_reg_model is required by this estimator; fit a RegressionModel first"
        )
    ad = np.asarray(kw["action_dist"], dtype=np.float64)
    pos = check_ope_inputs(
        ad, reward=kw["reward"], action=kw["action"], pscore=kw.get("pscore"), position=kw.get("position"),
        estimated_rewards_by_reg_model=kw.get("estimated_rewards_by_reg_model"), reward_range=kw.get("reward_range"),
    )
    n = ad.shape[0]
    out = {"reward": np.asarray(kw["reward"], dtype=np.float64), "action": np.asarray(kw["action"]),
           "ad": ad, "pos": pos, "rows": np.arange(n)}
    if needs_pscore:
        out["iw"] = ad[out["rows"], out["action"], pos] / np.asarray(kw["pscore"], dtype=np.float64)
    if needs_q:
        q = np.asarray(kw["estimated_rewards_by_reg_model"], dtype=np.float64)
        out["q_pos"] = q[out["rows"], :, pos]
        out["q_factual"] = q[out["rows"], out["action"], pos]
        out["pi_pos"] = ad[out["rows"], :, pos]
    return out


@dataclass
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    """IPW: ``mean(r * pi_e(a|x) / pi_b(a|x))``, weights optionally clipped at ``lambda_``."""

    lambda_: float = np.inf
    estimator_name: str = "ipw"

    def _round_rewards(self, **kw: Any) -> np.ndarray:
        d = _prepare(True, False, **kw)
        iw = np.minimum(d["iw"], self.lambda_)
        return d["reward"] * iw


@dataclass
class SelfNormalizedInverseProbabilityWeighting(BaseOffPolicyEstimator):
    """SNIPW: IPW divided by the mean importance weight (bounded, slightly biased)."""

    estimator_name: str = "snipw"

    def _round_rewards(self, **kw: Any) -> np.ndarray:
        d = _prepare(True, False, **kw)
        return d["reward"] * d["iw"] / d["iw"].mean()


@dataclass
class DirectMethod(BaseOffPolicyEstimator):
    """DM: the reward model's prediction averaged under the evaluation policy."""

    estimator_name: str = "dm"

    def _round_rewards(self, **kw: Any) -> np.ndarray:
        kw.setdefault("pscore", None)
        d = _prepare(False, True, **kw)
        return np.average(d["q_pos"], weights=d["pi_pos"], axis=1)


@dataclass
class DoublyRobust(BaseOffPolicyEstimator):
    """DR: DM plus an importance-weighted correction of the reward model's error."""

    lambda_: float = np.inf
    estimator_name: str = "dr"

    def _correction(self, d: dict[str, Any]) -> np.ndarray:
        iw = np.minimum(d["iw"], self.lambda_)
        return iw * (d["reward"] - d["q_factual"])

    def _round_rewards(self, **kw: Any) -> np.ndarray:
        d = _prepare(True, True, **kw)
        return np.average(d["q_pos"], weights=d["pi_pos"], axis=1) + self._correction(d)


@dataclass
class SelfNormalizedDoublyRobust(DoublyRobust):
    """SNDR: DR with self-normalised importance weights."""

    estimator_name: str = "sndr"

    def _correction(self, d: dict[str, Any]) -> np.ndarray:
        return d["iw"] * (d["reward"] - d["q_factual"]) / d["iw"].mean()


@dataclass
class SwitchDoublyRobust(DoublyRobust):
    """Switch-DR: the DR correction only where the importance weight is at most ``lambda_``."""

    estimator_name: str = "switch-dr"

    def _correction(self, d: dict[str, Any]) -> np.ndarray:
        switch = d["iw"] <= self.lambda_
        return switch * d["iw"] * (d["reward"] - d["q_factual"])


@dataclass
class Replay(BaseOffPolicyEstimator):
    """The replay (rejection sampling) estimator: draw the evaluation policy's action per
    round, keep rounds where it equals the logged action, average their rewards.
    Unbiased when the logging policy was uniform (Li et al. 2011); deterministic
    evaluation policies need no randomness."""

    random_state: int | None = 0
    estimator_name: str = "replay"

    def _round_rewards(self, **kw: Any) -> np.ndarray:
        kw.setdefault("pscore", None)
        d = _prepare(False, False, **kw)
        probs = d["ad"][d["rows"], :, d["pos"]]
        u = np.random.default_rng(self.random_state).random(len(probs))[:, None]
        chosen = np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)
        keep = chosen == d["action"]
        if not keep.any():
            raise ValueError("Replay: no round's logged action matches the evaluation policy; the estimate is undefined")
        return d["reward"][keep]


IPW = InverseProbabilityWeighting
SNIPW = SelfNormalizedInverseProbabilityWeighting
DM = DirectMethod
DR = DoublyRobust
SNDR = SelfNormalizedDoublyRobust
SwitchDR = SwitchDoublyRobust


# -- reward model ----------------------------------------------------------------------------
class RegressionModel:
    """Fit any scikit-learn estimator as the reward model q(x, a, position), with cross-fitting.

    Features are the context, the action one-hot (or ``action_context[action]``) and the
    position one-hot. ``fit_predict(..., n_folds=K)`` predicts each round with a model
    that did not see it, as DR's guarantees assume; the result has OBP's shape
    (n_rounds, n_actions, len_list).
    """

    def __init__(self, *, n_actions: int, len_list: int = 1, base_model: Any = None,
                 action_context: np.ndarray | None = None) -> None:
        self.n_actions = n_actions
        self.len_list = len_list
        self.base_model = base_model
        self.action_context = action_context

    def _features(self, context: np.ndarray, action: np.ndarray, position: np.ndarray) -> np.ndarray:
        ac = np.eye(self.n_actions) if self.action_context is None else np.asarray(self.action_context)
        return np.hstack([context, ac[action], np.eye(self.len_list)[position]])

    def _model(self) -> Any:
        from sklearn.base import clone as sk_clone
        from sklearn.linear_model import LogisticRegression

        return sk_clone(self.base_model) if self.base_model is not None else LogisticRegression(max_iter=1000)

    def _predict(self, model: Any, context: np.ndarray) -> np.ndarray:
        n, K, L = len(context), self.n_actions, self.len_list
        ac = np.eye(K) if self.action_context is None else np.asarray(self.action_context, dtype=np.float64)
        coef = getattr(model, "coef_", None)
        classes = getattr(model, "classes_", None)
        if type(model).__name__ == "LogisticRegression" and coef is not None and coef.shape[0] == 1 \
                and classes is not None and len(classes) == 2:
            # A linear model scores every (action, position) analytically: same numbers as
            # predict_proba, without building n x K x L feature rows.
            w = coef[0]
            d = context.shape[1]
            logit = (context @ w[:d])[:, None, None] + (ac @ w[d : d + ac.shape[1]])[None, :, None] \
                + w[d + ac.shape[1] :][None, None, :] + model.intercept_[0]
            return 1.0 / (1.0 + np.exp(-logit))
        out = np.empty((n, K, L))
        grid_a, grid_p = np.meshgrid(np.arange(K), np.arange(L), indexing="ij")
        per_row = K * L
        chunk = max(1, 200_000 // per_row)
        for lo in range(0, n, chunk):
            ctx = context[lo : lo + chunk]
            m = len(ctx)
            X = self._features(np.repeat(ctx, per_row, axis=0), np.tile(grid_a.ravel(), m), np.tile(grid_p.ravel(), m))
            pred = model.predict_proba(X)[:, 1] if hasattr(model, "predict_proba") else model.predict(X)
            out[lo : lo + m] = pred.reshape(m, K, L)
        return out

    def fit_predict(self, context: np.ndarray, action: np.ndarray, reward: np.ndarray,
                    position: np.ndarray | None = None, n_folds: int = 1, random_state: int | None = None) -> np.ndarray:
        """Predicted rewards for every round, action and position."""
        context = np.asarray(context, dtype=np.float64)
        action = np.asarray(action)
        reward = np.asarray(reward)
        position = np.zeros(len(action), dtype=np.int64) if position is None else np.asarray(position)
        if not (len(context) == len(action) == len(reward) == len(position)):
            raise ValueError("context, action, reward and position must have one entry per round")
        if n_folds < 1:
            raise ValueError(f"n_folds={n_folds} must be at least 1")
        X = self._features(context, action, position)
        if n_folds == 1:
            model = self._model().fit(X, reward)
            return self._predict(model, context)
        from sklearn.model_selection import KFold

        out = np.empty((len(context), self.n_actions, self.len_list))
        with progress(n_folds, f"reward model ({n_folds}-fold cross-fitting, {len(context):,} rounds)",
                      unit="fold") as bar:
            for train_idx, test_idx in KFold(n_folds, shuffle=True, random_state=random_state).split(X):
                model = self._model().fit(X[train_idx], reward[train_idx])
                out[test_idx] = self._predict(model, context[test_idx])
                bar.update()
        return out


class OffPolicyEvaluation:
    """Run several estimators on one set of logs: OBP's ``OffPolicyEvaluation`` in miniature."""

    def __init__(self, *, bandit_feedback: dict[str, Any], ope_estimators: list[BaseOffPolicyEstimator]) -> None:
        self.bandit_feedback = bandit_feedback
        self.ope_estimators = ope_estimators

    def _kw(self, action_dist: np.ndarray, q: np.ndarray | None) -> dict[str, Any]:
        bf = self.bandit_feedback
        return {"reward": bf["reward"], "action": bf["action"], "pscore": bf.get("pscore"),
                "position": bf.get("position"), "action_dist": action_dist, "estimated_rewards_by_reg_model": q}

    def estimate_policy_values(self, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray | None = None) -> dict[str, float]:
        kw = self._kw(action_dist, estimated_rewards_by_reg_model)
        return {e.estimator_name: e.estimate_policy_value(**kw) for e in self.ope_estimators}

    def estimate_intervals(self, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray | None = None,
                           alpha: float = 0.05, n_bootstrap_samples: int = 100,
                           random_state: int | None = None) -> dict[str, dict[str, float]]:
        kw = self._kw(action_dist, estimated_rewards_by_reg_model)
        return {e.estimator_name: e.estimate_interval(**kw, alpha=alpha, n_bootstrap_samples=n_bootstrap_samples,
                                                      random_state=random_state) for e in self.ope_estimators}

    def summarize_off_policy_estimates(self, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray | None = None,
                                       alpha: float = 0.05, n_bootstrap_samples: int = 100,
                                       random_state: int | None = None) -> tuple[Any, Any]:
        """OBP's summary: (estimates, bootstrap intervals) as two DataFrames indexed by estimator."""
        import pandas as pd

        kw = self._kw(action_dist, estimated_rewards_by_reg_model)
        values, intervals = {}, {}
        for e in self.ope_estimators:  # one pass per estimator: the estimate and its bootstrap share rounds
            rounds = e.estimate_round_rewards(**kw)
            values[e.estimator_name] = float(rounds.mean())
            intervals[e.estimator_name] = estimate_confidence_interval_by_bootstrap(
                rounds, alpha, n_bootstrap_samples, random_state)
        on_policy = float(np.mean(self.bandit_feedback["reward"]))
        value_df = pd.DataFrame({"estimated_policy_value": values}).assign(
            relative_estimated_policy_value=lambda d: d.estimated_policy_value / on_policy
        )
        return value_df, pd.DataFrame(intervals).T


# -- data ---------------------------------------------------------------------------------------
def load_open_bandit_dataset(path: str | Path, *, context_set: str = "1") -> dict[str, Any]:
    """Read an Open Bandit Dataset folder (``all.csv`` or ``all.csv.gz``, + ``item_context.csv``)
    into OBP's ``bandit_feedback`` dict (0-based positions; context = one-hot user features,
    plus the user-item affinities for ``context_set="2"``)."""
    import pandas as pd

    folder = Path(path)
    data_file = folder / "all.csv" if folder.is_dir() else folder
    if folder.is_dir() and not data_file.exists() and (folder / "all.csv.gz").exists():
        data_file = folder / "all.csv.gz"
    if not data_file.exists():
        raise FileNotFoundError(f"{data_file} does not exist; point at e.g. open-bandit-sample/random/all")
    df = pd.read_csv(data_file, index_col=0)
    needed = ["item_id", "position", "click", "propensity_score"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{data_file} is not Open Bandit Dataset data: no column {missing[0]!r}")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True) if "timestamp" in df.columns else df
    user_cols = [c for c in df.columns if c.startswith("user_feature")]
    context = pd.get_dummies(df[user_cols], drop_first=True).to_numpy(np.float64)
    if context_set == "2":
        aff = [c for c in df.columns if c.startswith("user-item_affinity")]
        context = np.hstack([context, df[aff].to_numpy(np.float64)])
    item_file = (folder if folder.is_dir() else folder.parent) / "item_context.csv"
    action_context = None
    if item_file.exists():
        items = pd.read_csv(item_file, index_col=0)
        cat = [c for c in items.columns if c.startswith("item_feature") and not pd.api.types.is_numeric_dtype(items[c])]
        num = [c for c in items.columns if c.startswith("item_feature") and c not in cat]
        action_context = np.hstack([items[num].to_numpy(np.float64), pd.get_dummies(items[cat], drop_first=True).to_numpy(np.float64)])
    positions = np.unique(df["position"].to_numpy())
    pos = np.searchsorted(positions, df["position"].to_numpy()).astype(np.int64)
    return {
        "n_rounds": len(df),
        "n_actions": int(df["item_id"].max()) + 1,
        "action": df["item_id"].to_numpy(np.int64),
        "position": pos,
        "reward": df["click"].to_numpy(np.float64),
        "pscore": df["propensity_score"].to_numpy(np.float64),
        "context": context,
        "action_context": action_context,
        "len_list": len(positions),
    }
