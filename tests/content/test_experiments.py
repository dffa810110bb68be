"""A/B analysis against scipy and against simulated A/A and A/B experiments."""

import warnings

import numpy as np
import pytest
from scipy import stats

from reelflow.content.experiments import (
    SampleRatioMismatchWarning, compare, cuped, msprt, plot_results, ratio_compare, srm_check,
)


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    c, t = rng.normal(1.0, 1.0, 300), rng.normal(1.2, 2.0, 500)
    r = compare(c, t).iloc[0]
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert r.t_stat == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_lower, r.ci_upper) == (pytest.approx(ci.low, rel=1e-8), pytest.approx(ci.high, rel=1e-8))
    assert r.relative_lift == pytest.approx((t.mean() - c.mean()) / c.mean())
    with pytest.raises(ValueError, match="control row 1 is NaN"):
        compare([1.0, np.nan, 2.0], [1.0, 2.0])


def test_aa_false_positive_rate_is_nominal():
    rng = np.random.default_rng(1)
    p = np.array([compare(rng.exponential(1, 200), rng.exponential(1, 200)).p_value[0] for _ in range(2000)])
    assert 0.035 < (p < 0.05).mean() < 0.065


def test_ab_effect_is_detected_and_lift_interval_covers():
    rng = np.random.default_rng(2)
    r = compare(rng.binomial(1, 0.10, 20_000), rng.binomial(1, 0.11, 20_000)).iloc[0]
    assert r.p_value < 0.05 and r.lift_ci_lower < 0.1 < r.lift_ci_upper


def test_cuped_reduces_variance_and_keeps_the_effect():
    rng = np.random.default_rng(3)
    n = 5000
    pre_c, pre_t = rng.normal(10, 2, n), rng.normal(10, 2, n)
    c = 0.9 * pre_c + rng.normal(0, 1, n)
    t = 0.9 * pre_t + rng.normal(0, 1, n) + 0.1
    raw = compare(c, t).iloc[0]
    adj = cuped(c, t, pre_c, pre_t).iloc[0]
    assert adj.variance_reduction > 0.6  # corr^2 = 3.24 / 4.24
    assert (adj.ci_upper - adj.ci_lower) < 0.65 * (raw.ci_upper - raw.ci_lower)
    assert abs(adj.difference - 0.1) < 0.05


def test_ratio_metric_delta_method_coverage():
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(300):
        sessions_c, sessions_t = rng.poisson(5, 400) + 1, rng.poisson(5, 400) + 1
        plays_c, plays_t = rng.binomial(sessions_c, 0.3), rng.binomial(sessions_t, 0.3)
        r = ratio_compare(plays_c, sessions_c, plays_t, sessions_t).iloc[0]
        covered += r.ci_lower <= 0 <= r.ci_upper
    assert 0.92 < covered / 300 <= 0.99


def test_srm_check_warns_loudly():
    with pytest.warns(SampleRatioMismatchWarning, match="SAMPLE RATIO MISMATCH"):
        r = srm_check([10_000, 10_600])
    assert r.mismatch[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not srm_check([10_000, 10_050]).mismatch[0]
    with pytest.raises(ValueError, match="summing to 1"):
        srm_check([1, 2], expected=[0.5, 0.6])


def test_msprt_keeps_its_level_under_continuous_peeking():
    rng = np.random.default_rng(5)
    rejected = 0
    for _ in range(300):
        res = msprt(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000), alpha=0.05)
        rejected += res.reject.any()  # peeking after every pair
    assert rejected / 300 <= 0.06
    # a naive t-test peeked at every 100 pairs would be far above 5 %
    naive = 0
    for _ in range(300):
        c, t = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
        naive += any(stats.ttest_ind(t[:n], c[:n]).pvalue < 0.05 for n in range(100, 2001, 100))
    assert naive / 300 > 0.12


def test_msprt_detects_a_real_effect_with_a_boundary():
    rng = np.random.default_rng(6)
    res = msprt(rng.normal(0, 1, 3000), rng.normal(0.3, 1, 3000))
    assert res.reject.any()
    first = res[res.reject].iloc[0]
    assert abs(first.difference) >= first.boundary * 0.999
    assert (np.diff(res.p_value) <= 1e-12).all()  # always-valid p-values never go back up


def test_plot_results_returns_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(7)
    table = compare(rng.normal(0, 1, 100), rng.normal(0.2, 1, 100), metric="plays")
    fig = plot_results(table)
    fig.savefig(tmp_path / "ab.png")
    assert (tmp_path / "ab.png").stat().st_size > 1000
