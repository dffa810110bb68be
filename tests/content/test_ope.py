"""Off-policy estimators: OBP's formulas (checked against plain loops), its bootstrap,
input validation, and estimates close to the simulator's truth."""

from pathlib import Path

import numpy as np
import pytest

from reelflow.content.bandits import ArtworkSimulator, LinUCB
from reelflow.content.ope import (
    DM, DR, IPW, SNDR, SNIPW, OffPolicyEvaluation, RegressionModel, Replay, SwitchDR,
    estimate_confidence_interval_by_bootstrap, load_open_bandit_dataset,
)

# The shared sample's random/all folder, gzipped (licence and origin in its README.md).
OBD_RANDOM = Path(__file__).resolve().parent / "data" / "open-bandit-random"


@pytest.fixture(scope="module")
def logs():
    rng = np.random.default_rng(0)
    n, k, L = 500, 4, 2
    action = rng.integers(0, k, n)
    position = rng.integers(0, L, n)
    pscore = rng.uniform(0.1, 0.9, n)
    reward = rng.binomial(1, 0.3, n).astype(float)
    ad = rng.dirichlet(np.ones(k), size=(n, L)).transpose(0, 2, 1)
    q = rng.uniform(0, 1, (n, k, L))
    return dict(reward=reward, action=action, pscore=pscore, position=position, action_dist=ad,
                estimated_rewards_by_reg_model=q)


def loops(d, lam=np.inf):
    """The estimators written as plain per-round loops, from their definitions."""
    n = len(d["reward"])
    ipw, dm, dr, sw, iws, corr = [], [], [], [], [], []
    for i in range(n):
        a, p = d["action"][i], d["position"][i]
        w = d["action_dist"][i, a, p] / d["pscore"][i]
        pi, q = d["action_dist"][i, :, p], d["estimated_rewards_by_reg_model"][i, :, p]
        base = sum(pi[j] * q[j] for j in range(len(pi))) / sum(pi)
        iws.append(w)
        ipw.append(d["reward"][i] * min(w, lam))
        dm.append(base)
        corr.append(d["reward"][i] - q[a])
        dr.append(base + min(w, lam) * corr[-1])
        sw.append(base + (w <= lam) * w * corr[-1])
    iws, corr, dm = np.array(iws), np.array(corr), np.array(dm)
    return {"ipw": np.mean(ipw), "snipw": np.mean(d["reward"] * iws / iws.mean()), "dm": dm.mean(),
            "dr": np.mean(dr), "sndr": np.mean(dm + iws * corr / iws.mean()), "switch": np.mean(sw)}


def test_estimators_equal_their_definitions(logs):
    ref = loops(logs)
    assert IPW().estimate_policy_value(**logs) == pytest.approx(ref["ipw"], rel=1e-12)
    assert SNIPW().estimate_policy_value(**logs) == pytest.approx(ref["snipw"], rel=1e-12)
    assert DM().estimate_policy_value(**logs) == pytest.approx(ref["dm"], rel=1e-12)
    assert DR().estimate_policy_value(**logs) == pytest.approx(ref["dr"], rel=1e-12)
    assert SNDR().estimate_policy_value(**logs) == pytest.approx(ref["sndr"], rel=1e-12)
    assert SwitchDR(lambda_=2.0).estimate_policy_value(**logs) == pytest.approx(loops(logs, 2.0)["switch"], rel=1e-12)
    assert IPW(lambda_=2.0).estimate_policy_value(**logs) == pytest.approx(loops(logs, 2.0)["ipw"], rel=1e-12)
    assert SwitchDR().estimate_policy_value(**logs) == pytest.approx(ref["dr"], rel=1e-12)


def test_bootstrap_draws_obps_resamples(logs):
    samples = IPW().estimate_round_rewards(**logs)
    ci = IPW().estimate_interval(**logs, n_bootstrap_samples=300, random_state=12345)
    rs = np.random.RandomState(12345)  # OBP's loop, verbatim in behaviour
    boot = [np.mean(rs.choice(samples, size=samples.shape[0])) for _ in range(300)]
    assert ci["mean"] == pytest.approx(np.mean(boot), rel=1e-12)
    assert ci["95.0% CI (lower)"] == pytest.approx(np.percentile(boot, 2.5), rel=1e-12)
    assert ci["95.0% CI (upper)"] == pytest.approx(np.percentile(boot, 97.5), rel=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        estimate_confidence_interval_by_bootstrap(samples, alpha=1)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"pscore": "zero"}, "pscore row 3 is 0.0; propensities must lie in \\(0, 1\\]"),
        ({"pscore": "big"}, "pscore row 3 is 1.5"),
        ({"action_dist": "unnormalised"}, "action_dist row 7 \\(position 0\\) sums to"),
        ({"reward": "short"}, "reward has shape \\(499,\\)"),
        ({"action": "big"}, "action row 2 is 9"),
        ({"action_dist": "empty"}, "logs are empty"),
    ],
)
def test_bad_logs_name_the_array_and_row(logs, change, match):
    d = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in logs.items()}
    (key, how), = change.items()
    if how == "zero":
        d["pscore"][3] = 0.0
    elif how == "big" and key == "pscore":
        d["pscore"][3] = 1.5
    elif how == "unnormalised":
        d["action_dist"][7, :, 0] *= 2
    elif how == "short":
        d["reward"] = d["reward"][:-1]
    elif how == "big":
        d["action"][2] = 9
    elif how == "empty":
        d = {k: v[:0] for k, v in d.items()}
    with pytest.raises(ValueError, match=match):
        DR().estimate_policy_value(**d)


def test_reward_range_and_missing_model(logs):
    d = dict(logs)
    d["reward"] = d["reward"].copy()
    d["reward"][5] = 3.0
    with pytest.raises(ValueError, match="reward row 5 is 3.0, outside the declared range"):
        IPW().estimate_policy_value(**d, reward_range=(0, 1))
    with pytest.raises(ValueError, match="estimated_rewards_by_reg_model is required"):
        DR().estimate_policy_value(**{**logs, "estimated_rewards_by_reg_model": None})


def test_estimates_near_the_truth_on_the_simulator():
    sim = ArtworkSimulator(n_members=3000, n_titles=200, seed=3)
    train = sim.impressions(20_000)
    rng = np.random.default_rng(1)
    logged = rng.integers(0, 5, len(train))
    policy = LinUCB(n_actions=5, alpha=0.0).fit(
        {"context": train.contexts, "action": logged, "reward": sim.plays(train, logged), "pscore": np.full(len(train), 0.2)})
    test = sim.impressions(30_000)
    act = rng.integers(0, 5, len(test))
    reward = sim.plays(test, act)
    ad = policy.action_distribution(test.contexts)[:, :, None]
    truth = sim.policy_value(test, ad[:, :, 0])
    kw = dict(reward=reward, action=act, pscore=np.full(len(test), 0.2), action_dist=ad)
    q = RegressionModel(n_actions=5).fit_predict(test.member_features, act, reward, n_folds=2, random_state=0)
    for est in (IPW(), SNIPW(), DR(), SNDR(), Replay()):
        value = est.estimate_policy_value(**kw, estimated_rewards_by_reg_model=q)
        assert abs(value - truth) < 0.015, (est.estimator_name, value, truth)
    # this reward model ignores the artworks' features, so DM is biased; DR corrects it
    dm = DM().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q)
    dr = DR().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q)
    assert abs(dm - truth) > 3 * abs(dr - truth)


def test_replay_with_a_deterministic_policy(logs):
    d = dict(logs)
    ad = np.zeros_like(d["action_dist"])
    ad[:, 1, :] = 1.0
    v = Replay().estimate_policy_value(**{**d, "action_dist": ad})
    assert v == pytest.approx(d["reward"][d["action"] == 1].mean())


def test_open_bandit_dataset_loader_and_summary():
    bf = load_open_bandit_dataset(OBD_RANDOM)
    assert bf["action_context"].shape[0] == 80 and bf["context"].shape[0] == 10_000
    assert load_open_bandit_dataset(OBD_RANDOM, context_set="2")["context"].shape[1] == bf["context"].shape[1] + 80
    assert bf["n_rounds"] == 10_000 and bf["n_actions"] == 80 and bf["len_list"] == 3
    assert set(np.unique(bf["position"])) == {0, 1, 2} and np.allclose(bf["pscore"], 0.0125)
    uniform = np.full((bf["n_rounds"], 80, 3), 1 / 80)
    values, intervals = OffPolicyEvaluation(bandit_feedback=bf, ope_estimators=[IPW(), SNIPW()]).summarize_off_policy_estimates(
        uniform, random_state=12345)
    # evaluating the logging policy itself returns the logged click rate, exactly
    assert values.loc["ipw", "estimated_policy_value"] == pytest.approx(bf["reward"].mean())
    assert intervals.loc["ipw", "95.0% CI (lower)"] < bf["reward"].mean() < intervals.loc["ipw", "95.0% CI (upper)"]


def test_loader_rejects_other_files(tmp_path):
    (tmp_path / "all.csv").write_text(",a,b\n0,1,2\n")
    with pytest.raises(ValueError, match="not Open Bandit Dataset data"):
        load_open_bandit_dataset(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_open_bandit_dataset(tmp_path / "nope")


def test_regression_model_fast_linear_path_equals_predict_proba():
    from sklearn.linear_model import LogisticRegression

    class PlainLR(LogisticRegression):  # a subclass takes the generic predict_proba path
        pass

    rng = np.random.default_rng(0)
    ctx, act, pos = rng.normal(size=(400, 3)), rng.integers(0, 4, 400), rng.integers(0, 2, 400)
    rew = rng.binomial(1, 0.3, 400)
    fast = RegressionModel(n_actions=4, len_list=2, base_model=LogisticRegression()).fit_predict(ctx, act, rew, pos, n_folds=2, random_state=0)
    slow = RegressionModel(n_actions=4, len_list=2, base_model=PlainLR()).fit_predict(ctx, act, rew, pos, n_folds=2, random_state=0)
    assert fast.shape == (400, 4, 2)
    np.testing.assert_allclose(fast, slow, rtol=1e-10)
