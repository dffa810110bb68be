"""Bandit policies: the estimator contract, propensities, learning, rank-one updates."""

import numpy as np
import pytest

from reelflow.content.bandits import ArtworkSimulator, BernoulliTS, EpsilonGreedy, LinTS, LinUCB
from reelflow.estimator import clone

POLICIES = [
    EpsilonGreedy(n_actions=5, epsilon=0.1, random_state=0),
    LinUCB(n_actions=5, alpha=0.5, random_state=0),
    LinTS(n_actions=5, v=0.3, random_state=0),
]
ids = [type(p).__name__ for p in POLICIES]


@pytest.fixture(scope="module")
def sim():
    return ArtworkSimulator(n_members=2000, n_titles=100, seed=1)


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
@pytest.mark.parametrize("shape", ["disjoint", "shared"])
def test_select_returns_actions_with_their_probabilities(policy, shape, sim):
    p = clone(policy)
    imp = sim.impressions(300)
    x = imp.member_features if shape == "disjoint" else imp.contexts
    p.update(x[:200], np.arange(200) % 5, sim.plays(imp, np.arange(300) % 5)[:200])
    dist = p.action_distribution(x)
    assert dist.shape == (300, 5) and np.allclose(dist.sum(axis=1), 1.0) and (dist >= 0).all()
    actions, props = p.select(x)
    assert actions.shape == (300,) and ((0 <= actions) & (actions < 5)).all()
    assert np.allclose(props, dist[np.arange(300), actions])
    assert (props > 0).all()


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
def test_candidates_restrict_choices(policy, sim):
    imp = sim.impressions(200)
    mask = np.zeros((200, 5), bool)
    mask[:, [1, 3]] = True
    a, _ = clone(policy).select(imp.contexts, candidates=mask)
    assert set(a.tolist()) <= {1, 3}
    a, _ = clone(policy).select(imp.contexts, candidates=np.tile([0, 4], (200, 1)))
    assert set(a.tolist()) <= {0, 4}
    with pytest.raises(ValueError, match="candidates row 0 allows no action"):
        clone(policy).select(imp.contexts, candidates=np.zeros((200, 5), bool))


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
def test_learns_on_the_simulator(policy, sim):
    p = clone(policy)
    for _ in range(20):
        imp = sim.impressions(1000)
        a, _ = p.select(imp.contexts)
        p.update(imp.contexts, a, sim.plays(imp, a))
    test = sim.impressions(5000)
    value = sim.policy_value(test, p.action_distribution(test.contexts))
    rnd, oracle = sim.random_value(test), sim.oracle_value(test)
    assert value > rnd + 0.7 * (oracle - rnd), (value, rnd, oracle)


def test_rank_one_updates_match_the_ridge_solution():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = rng.normal(size=40)
    p = LinUCB(n_actions=1, l2=2.0)
    for i in range(40):  # one at a time: Sherman-Morrison
        p.update(X[i : i + 1], [0], y[i : i + 1])
    A = X.T @ X + 2.0 * np.eye(6)
    np.testing.assert_allclose(p.ridge_.A_inv[0], np.linalg.inv(A), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p.ridge_.theta[0], np.linalg.solve(A, X.T @ y), rtol=1e-8)
    q = LinUCB(n_actions=1, l2=2.0).update(X[:3], [0] * 3, y[:3]).update(X[3:], [0] * 37, y[3:])  # Woodbury, then batch
    np.testing.assert_allclose(q.ridge_.A_inv[0], np.linalg.inv(A), rtol=1e-8, atol=1e-10)


def test_lints_propensities_match_sampling():
    rng = np.random.default_rng(0)
    p = LinTS(n_actions=3, v=1.0, random_state=0)
    X = rng.normal(size=(30, 4))
    p.update(X, rng.integers(0, 3, 30), rng.normal(size=30))
    x = np.repeat(rng.normal(size=(1, 4)), 20000, axis=0)
    actions, _ = p.select(x)
    freq = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(freq, p.action_distribution(x[:1])[0], atol=0.015)


def test_fit_from_logs_is_importance_weighted(sim):
    imp = sim.impressions(5000)
    rng = np.random.default_rng(0)
    logged = rng.integers(0, 5, 5000)
    logs = {"context": imp.contexts, "action": logged, "reward": sim.plays(imp, logged), "pscore": np.full(5000, 0.2)}
    p = LinUCB(n_actions=5, alpha=0.0).fit(logs)
    test = sim.impressions(3000)
    assert sim.policy_value(test, p.action_distribution(test.contexts)) > sim.random_value(test) + 0.02
    with pytest.raises(ValueError, match="pscore row 1 is 0.0"):
        LinUCB(n_actions=5).fit({**logs, "pscore": np.r_[0.2, 0.0, np.full(4998, 0.2)]})
    with pytest.raises(ValueError, match="logs are empty"):
        LinUCB(n_actions=5).fit({"context": np.zeros((0, 3)), "action": [], "reward": []})


def test_bad_inputs_name_the_array_and_row():
    p = LinUCB(n_actions=3)
    with pytest.raises(ValueError, match="differ in length"):
        p.update(np.zeros((4, 2)), [0, 1, 2], [1, 0, 1, 0])
    with pytest.raises(ValueError, match="actions row 1 is 7"):
        p.update(np.zeros((2, 2)), [0, 7], [1, 0])
    with pytest.raises(ValueError, match="contexts row 0 has NaN"):
        p.select(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="n_actions"):
        LinUCB(n_actions=0).select(np.zeros((1, 2)))
    p.update(np.zeros((1, 2)), [0], [1])
    with pytest.raises(ValueError, match="was trained on"):
        p.select(np.zeros((1, 5)))


def test_bernoulli_ts_and_params():
    p = BernoulliTS(n_actions=3, random_state=0)
    p.update(None, [0] * 50 + [1] * 50, [1] * 40 + [0] * 10 + [1] * 5 + [0] * 45)
    dist = p.action_distribution(10)
    assert dist.shape == (10, 3) and dist[0].argmax() == 0
    a, props = p.select(np.zeros((100, 1)))
    assert (a == 0).mean() > 0.65 and np.allclose(props, dist[0][a], atol=0.02)  # Monte Carlo propensities
    slate = BernoulliTS(n_actions=5, len_list=2, random_state=0).action_distribution(4)
    assert slate.shape == (4, 5, 2) and np.allclose(slate.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="rewards row 0 is 2.0"):
        p.update(None, [0], [2.0])
    assert clone(LinUCB(n_actions=4, alpha=2.0)).get_params() == {"n_actions": 4, "alpha": 2.0, "l2": 1.0, "random_state": None}


def test_simulator_positions_and_fatigue():
    sim = ArtworkSimulator(n_members=50, n_titles=5, n_positions=3, position_effect=0.5, fatigue=0.5, seed=2)
    imp = sim.impressions(2000)
    assert imp.position is not None and set(np.unique(imp.position)) == {0, 1, 2}
    top = imp.play_prob[imp.position == 0].mean()
    assert top > imp.play_prob[imp.position == 2].mean()  # lower rows play less
    before = sim.play_probability(np.array([0]), np.array([0]))
    for _ in range(3):
        sim.plays(sim.impressions(2000), np.zeros(2000, int))
    assert (sim.play_probability(np.array([0]), np.array([0])) < before).all()  # seen titles tire


def test_large_batches_are_chunked_with_progress(sim, monkeypatch, capsys):
    """action_distribution over many contexts: same numbers in bounded chunks, progress in logs."""
    from reelflow.content import _policies

    imp = sim.impressions(600)
    rng = np.random.default_rng(0)
    action = rng.integers(0, sim.n_artworks, len(imp))
    policy = LinTS(n_actions=sim.n_artworks, v=0.3, random_state=0).fit(
        {"context": imp.contexts, "action": action, "reward": sim.plays(imp, action)})
    whole = policy.action_distribution(imp.contexts)
    monkeypatch.setattr(_policies, "_CHUNK_ROWS", 64)
    monkeypatch.setenv("REELFLOW_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("REELFLOW_PROGRESS", raising=False)
    np.testing.assert_allclose(policy.action_distribution(imp.contexts), whole, rtol=1e-12, atol=1e-15)
    err = capsys.readouterr().err
    assert "[reelflow] LinTS action distribution: 600/600 contexts (100%)" in err and "\r" not in err
    policy.action_distribution(imp.contexts, verbose=False)
    assert capsys.readouterr().err == ""
