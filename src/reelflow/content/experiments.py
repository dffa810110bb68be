"""Reading A/B tests correctly: Welch intervals, relative lift, ratio metrics (delta method),
CUPED variance reduction, sample-ratio-mismatch checks and an always-valid sequential
test (mixture SPRT) that may be peeked at after every observation.

Every function returns a tidy one-row-per-result pandas DataFrame.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "compare",
    "ratio_compare",
    "cuped",
    "srm_check",
    "msprt",
    "SampleRatioMismatchWarning",
    "plot_results",
]

log = logging.getLogger("reelflow.experiments")


class SampleRatioMismatchWarning(UserWarning):
    """The observed split of units differs from the designed one: results are suspect."""


def _arr(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or len(a) < 2:
        raise ValueError(f"{name} needs at least 2 observations (got shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} row {int(np.flatnonzero(~np.isfinite(a))[0])} is NaN or infinite")
    return a


def _welch(mc: float, vc: float, nc: int, mt: float, vt: float, nt: int, alpha: float) -> dict[str, float]:
    se2_c, se2_t = vc / nc, vt / nt
    se = np.sqrt(se2_c + se2_t)
    df = (se2_c + se2_t) ** 2 / (se2_c**2 / (nc - 1) + se2_t**2 / (nt - 1)) if se > 0 else np.inf
    diff = mt - mc
    t = diff / se if se > 0 else 0.0
    q = stats.t.ppf(1 - alpha / 2, df)
    # relative lift by the delta method: Var(mt/mc) ~ se2_t/mc^2 + mt^2 se2_c/mc^4
    lift = diff / mc if mc != 0 else np.nan
    se_lift = np.sqrt(se2_t / mc**2 + mt**2 * se2_c / mc**4) if mc != 0 else np.nan
    z = stats.norm.ppf(1 - alpha / 2)
    return {
        "control_mean": mc, "treatment_mean": mt, "difference": diff,
        "ci_lower": diff - q * se, "ci_upper": diff + q * se,
        "relative_lift": lift, "lift_ci_lower": lift - z * se_lift, "lift_ci_upper": lift + z * se_lift,
        "t_stat": t, "df": df, "p_value": float(2 * stats.t.sf(abs(t), df)) if se > 0 else 1.0,
        "n_control": nc, "n_treatment": nt,
    }


def compare(control: Any, treatment: Any, *, alpha: float = 0.05, metric: str = "metric") -> pd.DataFrame:
    """Difference in means with a Welch confidence interval, and the relative lift.

    Equivalent to ``scipy.stats.ttest_ind(treatment, control, equal_var=False)``.
    """
    c, t = _arr(control, "control"), _arr(treatment, "treatment")
    res = _welch(c.mean(), c.var(ddof=1), len(c), t.mean(), t.var(ddof=1), len(t), alpha)
    return pd.DataFrame([{"metric": metric, **res}])


def _ratio_stats(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance (units are the randomisation units)."""
    n = len(num)
    mn, md = num.mean(), den.mean()
    if md == 0:
        raise ValueError("ratio metric: the denominator averages to zero")
    vn, vd = num.var(ddof=1), den.var(ddof=1)
    cov = np.cov(num, den, ddof=1)[0, 1]
    r = mn / md
    var = (vn - 2 * r * cov + r**2 * vd) / (md**2 * n)
    return r, var


def ratio_compare(num_control: Any, den_control: Any, num_treatment: Any, den_treatment: Any, *,
                  alpha: float = 0.05, metric: str = "ratio") -> pd.DataFrame:
    """Compare a ratio metric (e.g. plays per session, per member) with the delta method.

    Each array holds one value per randomisation unit (member): the numerator and
    denominator totals of that unit.
    """
    nc, dc = _arr(num_control, "num_control"), _arr(den_control, "den_control")
    nt, dt = _arr(num_treatment, "num_treatment"), _arr(den_treatment, "den_treatment")
    if len(nc) != len(dc) or len(nt) != len(dt):
        raise ValueError("each numerator must have one value per unit, like its denominator")
    rc, vc = _ratio_stats(nc, dc)
    rt, vt = _ratio_stats(nt, dt)
    se = np.sqrt(vc + vt)
    z = stats.norm.ppf(1 - alpha / 2)
    diff = rt - rc
    se_lift = np.sqrt(vt / rc**2 + rt**2 * vc / rc**4)
    return pd.DataFrame([{
        "metric": metric, "control_mean": rc, "treatment_mean": rt, "difference": diff,
        "ci_lower": diff - z * se, "ci_upper": diff + z * se, "relative_lift": diff / rc,
        "lift_ci_lower": diff / rc - z * se_lift, "lift_ci_upper": diff / rc + z * se_lift,
        "p_value": float(2 * stats.norm.sf(abs(diff / se))) if se > 0 else 1.0,
        "n_control": len(nc), "n_treatment": len(nt),
    }])


def cuped(control: Any, treatment: Any, control_pre: Any, treatment_pre: Any, *, alpha: float = 0.05,
          metric: str = "metric") -> pd.DataFrame:
    """CUPED (Deng et al. 2013): adjust by a pre-period covariate, then compare.

    ``theta = cov(y, x) / var(x)`` on the pooled data; ``y - theta (x - mean(x))``
    keeps the means' difference and shrinks its variance by ``corr(y, x)^2``.
    The table reports ``variance_reduction`` (share of variance removed).
    """
    c, t = _arr(control, "control"), _arr(treatment, "treatment")
    xc, xt = _arr(control_pre, "control_pre"), _arr(treatment_pre, "treatment_pre")
    if len(xc) != len(c) or len(xt) != len(t):
        raise ValueError("each pre-period covariate needs one value per unit of its group")
    y = np.concatenate([c, t])
    x = np.concatenate([xc, xt])
    vx = x.var(ddof=1)
    theta = np.cov(y, x, ddof=1)[0, 1] / vx if vx > 0 else 0.0
    mx = x.mean()
    ac, at = c - theta * (xc - mx), t - theta * (xt - mx)
    res = _welch(ac.mean(), ac.var(ddof=1), len(ac), at.mean(), at.var(ddof=1), len(at), alpha)
    raw_var = c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t)
    adj_var = ac.var(ddof=1) / len(ac) + at.var(ddof=1) / len(at)
    return pd.DataFrame([{"metric": metric, **res, "theta": theta,
                          "variance_reduction": 1.0 - adj_var / raw_var if raw_var > 0 else 0.0}])


def srm_check(counts: Sequence[int], expected: Sequence[float] | None = None, *, threshold: float = 0.001) -> pd.DataFrame:
    """Sample-ratio-mismatch check: chi-square of observed unit counts against the design.

    Warns loudly (a :class:`SampleRatioMismatchWarning` and an error log line) when the
    p-value is below ``threshold``: the assignment or the logging is broken and the
    experiment's results should not be trusted.
    """
    obs = np.asarray(counts, dtype=np.float64)
    if obs.ndim != 1 or len(obs) < 2 or (obs < 0).any():
        raise ValueError("counts must list the number of units in each of at least 2 groups")
    shares = np.full(len(obs), 1.0 / len(obs)) if expected is None else np.asarray(expected, dtype=np.float64)
    if len(shares) != len(obs) or not np.isclose(shares.sum(), 1.0):
        raise ValueError("expected must give one share per group, summing to 1")
    chi2, p = stats.chisquare(obs, shares * obs.sum())
    mismatch = bool(p < threshold)
    if mismatch:
        msg = (f"SAMPLE RATIO MISMATCH: observed {obs.astype(int).tolist()} vs expected shares "
               f"{shares.round(4).tolist()} (chi2={chi2:.1f}, p={p:.2e}); do not trust this experiment's results "
               "until the assignment is fixed")
        log.error(msg)
        warnings.warn(msg, SampleRatioMismatchWarning, stacklevel=2)
    return pd.DataFrame([{"chi2": float(chi2), "p_value": float(p), "mismatch": mismatch,
                          "observed": obs.astype(int).tolist(), "expected_share": shares.tolist()}])


def msprt(control: Any, treatment: Any, *, alpha: float = 0.05, tau: float | None = None,
          sigma2: float | None = None, burn_in: int = 20) -> pd.DataFrame:
    """Always-valid sequential test of a difference in means (mixture SPRT, Johari et al. 2017).

    Observations arrive in pairs (one per group, in order). After ``n`` pairs the
    mixture likelihood ratio with a N(0, tau²) prior on the effect is

        Lambda_n = sqrt(V / (V + n tau²)) * exp(n² tau² d_n² / (2 V (V + n tau²)))

    with ``d_n`` the running difference and ``V = 2 sigma²`` the variance of one pair's
    difference. The always-valid p-value ``min(1, 1 / max_k Lambda_k)`` may be checked
    after every pair and stays valid; the test rejects when ``Lambda_n >= 1 / alpha``.
    ``boundary`` is the |difference| at which it would reject at each ``n``.

    Returns one row per pair (``n, difference, lambda, p_value, boundary, reject``).
    """
    c, t = _arr(control, "control"), _arr(treatment, "treatment")
    n = min(len(c), len(t))
    c, t = c[:n], t[:n]
    if sigma2 is None:  # plug-in variance from the first burn_in pairs (a common, mild choice)
        k = max(2, min(burn_in, n))
        sigma2 = float((c[:k].var(ddof=1) + t[:k].var(ddof=1)) / 2)
    V = 2.0 * max(sigma2, 1e-12)
    tau2 = V if tau is None else float(tau) ** 2
    m = np.arange(1, n + 1)
    d = np.cumsum(t - c) / m
    log_lam = 0.5 * np.log(V / (V + m * tau2)) + (m**2 * tau2 * d**2) / (2 * V * (V + m * tau2))
    p = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_lam)))
    # reject iff log Lambda >= log(1/alpha): solve for |d|
    boundary = np.sqrt(np.maximum(0.0, (np.log(1 / alpha) - 0.5 * np.log(V / (V + m * tau2))))
                       * 2 * V * (V + m * tau2) / (m**2 * tau2))
    return pd.DataFrame({"n": m, "difference": d, "lambda": np.exp(np.minimum(log_lam, 700)), "p_value": p,
                         "boundary": boundary, "reject": p <= alpha})


def plot_results(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """A forest plot of differences with their intervals (one row per metric); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_results needs matplotlib: pip install matplotlib") from exc
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(table)))
    else:
        fig = ax.figure
    y = np.arange(len(table))
    diff = table["difference"].to_numpy()
    lo, hi = table["ci_lower"].to_numpy(), table["ci_upper"].to_numpy()
    ax.errorbar(diff, y, xerr=[diff - lo, hi - diff], fmt="o", capsize=4)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, table["metric"].astype(str).tolist())
    ax.set_xlabel("treatment - control")
    fig.tight_layout()
    return fig
