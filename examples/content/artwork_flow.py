"""Which artwork should each member see? Learn policies offline from logged impressions,
evaluate them off-policy, check the estimates against the simulator's truth, pick the best.

    python examples/content/artwork_flow.py run
    python examples/content/artwork_flow.py run --n-logged 50000 --policies '["LinUCB", "LinTS"]'
"""

from reelflow import FlowSpec, JSONType, Parameter, current, step
from reelflow.cards import Markdown, Table, VegaChart, card

POLICIES = {
    "LinUCB": {"alpha": 0.0},
    "LinTS": {"v": 0.1},
    "EpsilonGreedy": {"epsilon": 0.05},
}


class ArtworkFlow(FlowSpec):
    """Offline training and off-policy evaluation of artwork personalisation policies."""

    n_logged = Parameter("n-logged", default=30_000, help="impressions logged by the uniform-random policy")
    policies = Parameter("policies", type=JSONType, default='["LinUCB", "LinTS", "EpsilonGreedy"]',
                         help="JSON list of policies (LinUCB, LinTS, EpsilonGreedy)")
    seed = Parameter("seed", default=0)

    @step
    def start(self):
        """Log impressions from a uniform-random policy (propensity 1/5 for every artwork)."""
        import numpy as np

        from reelflow.content.bandits import ArtworkSimulator

        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
        self.sim = ArtworkSimulator(n_members=5000, n_titles=300, seed=self.seed)
        rng = np.random.default_rng(self.seed)
        train, test = self.sim.impressions(self.n_logged), self.sim.impressions(self.n_logged)
        self.logs = {}
        for name, imp in (("train", train), ("test", test)):
            action = rng.integers(0, self.sim.n_artworks, len(imp))
            self.logs[name] = {"context": imp.contexts, "action": action, "reward": self.sim.plays(imp, action),
                               "pscore": np.full(len(imp), 1 / self.sim.n_artworks)}
        # what evaluation needs from the simulator: features for the reward model, the truth
        self.test_member_features = test.member_features
        self.test_play_prob = test.play_prob
        print(f"logged {len(train):,} training and {len(test):,} evaluation impressions; "
              f"random play rate {self.logs['train']['reward'].mean():.4f}")
        self.next(self.train, foreach="policies")

    @step
    def train(self):
        """Fit one policy on the training logs, evaluate it on the held-out logs."""
        from reelflow.content import bandits
        from reelflow.content.ope import DR, IPW, SNIPW, RegressionModel

        self.policy_name = self.input
        policy = getattr(bandits, self.policy_name)(n_actions=self.sim.n_artworks, random_state=self.seed,
                                                     **POLICIES[self.policy_name])
        print(f"{self.policy_name}: fitting on {len(self.logs['train']['reward']):,} logged impressions ...", flush=True)
        self.policy = policy.fit(self.logs["train"])
        logs = self.logs["test"]
        print(f"{self.policy_name}: computing its artwork probabilities for {len(logs['reward']):,} held-out "
              "impressions ...", flush=True)
        dist = self.policy.action_distribution(logs["context"])
        kw = {"reward": logs["reward"], "action": logs["action"], "pscore": logs["pscore"], "action_dist": dist[:, :, None]}
        print(f"{self.policy_name}: fitting the reward model for DR (2-fold cross-fitting) ...", flush=True)
        q = RegressionModel(n_actions=self.sim.n_artworks).fit_predict(
            self.test_member_features, logs["action"], logs["reward"], n_folds=2, random_state=0)
        self.estimates = {name: est.estimate_policy_value(**kw, estimated_rewards_by_reg_model=q)
                          for name, est in (("IPW", IPW()), ("SNIPW", SNIPW()), ("DR", DR()))}
        self.intervals = {}  # 95% bootstrap intervals, shown on the pick step's card
        for name, est in (("IPW", IPW()), ("SNIPW", SNIPW()), ("DR", DR())):
            ci = est.estimate_interval(**kw, estimated_rewards_by_reg_model=q, n_bootstrap_samples=200, random_state=0)
            self.intervals[name] = tuple(float(v) for k, v in ci.items() if "lower" in k or "upper" in k)
        self.truth = float((self.test_play_prob * dist).sum(axis=1).mean())
        print(f"{self.policy_name}: off-policy estimates "
              + ", ".join(f"{k} {v:.4f}" for k, v in self.estimates.items()) + f"; simulator truth {self.truth:.4f}",
              flush=True)
        self.next(self.pick)

    @card(type="blank", title="Off-policy estimates")
    @step
    def pick(self, inputs):
        """Choose the policy with the best DR estimate (what we could know without the simulator)."""
        import pandas as pd

        rows = [{"policy": i.policy_name, **i.estimates, "true value": i.truth} for i in inputs]
        self.table = pd.DataFrame(rows).sort_values("DR", ascending=False).reset_index(drop=True)
        best = max(inputs, key=lambda i: i.estimates["DR"])
        self.best_name, self.best_policy = best.policy_name, best.policy
        truth = inputs[0].test_play_prob
        self.oracle, self.random = float(truth.max(axis=1).mean()), float(truth.mean())
        points = [{"policy": i.policy_name, "estimator": e, "value": i.estimates[e], "low": lo, "high": hi}
                  for i in inputs for e, (lo, hi) in i.intervals.items()]
        points += [{"policy": i.policy_name, "estimator": "truth", "value": i.truth, "low": i.truth, "high": i.truth}
                   for i in inputs]
        current.card.append(Markdown(f"# Artwork policies, off-policy\nBest by DR: **{self.best_name}**; "
                                     f"random {self.random:.4f}, oracle {self.oracle:.4f}"))
        current.card.append(Table(self.table))
        current.card.append(VegaChart({
            "title": "Estimated play rate with 95% bootstrap intervals (truth from the simulator)",
            "data": {"values": points}, "width": 420,
            "encoding": {"y": {"field": "policy", "type": "nominal"}, "yOffset": {"field": "estimator"},
                         "color": {"field": "estimator", "type": "nominal"}},
            "layer": [{"mark": "rule", "encoding": {"x": {"field": "low", "type": "quantitative",
                                                          "scale": {"zero": False}, "title": "play rate"},
                                                    "x2": {"field": "high"}}},
                      {"mark": {"type": "point", "filled": True}, "encoding": {"x": {"field": "value",
                                                                                     "type": "quantitative"}}}],
        }))
        self.ab, regret = _online_checks(inputs[0].sim, inputs, self.seed, n=max(self.n_logged // 4, 500))
        policy_axis = {"field": "metric", "type": "nominal", "title": None}
        current.card.append(Markdown("## Online A/B test: each policy against random artwork\n"
                                     "Difference in play rate with its 95% Welch interval (simulated members)."))
        current.card.append(VegaChart({
            "data": {"values": self.ab[["metric", "difference", "ci_lower", "ci_upper"]].to_dict("records")},
            "width": 420,
            "layer": [{"mark": "rule", "encoding": {"x": {"field": "ci_lower", "type": "quantitative",
                                                          "title": "play rate: treatment - control"},
                                                    "x2": {"field": "ci_upper"}, "y": policy_axis}},
                      {"mark": {"type": "point", "filled": True, "size": 60},
                       "encoding": {"x": {"field": "difference", "type": "quantitative"}, "y": policy_axis}},
                      {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"},
                       "data": {"values": [{"zero": 0}]}, "encoding": {"x": {"field": "zero", "type": "quantitative"}}}],
        }))
        current.card.append(Markdown("## Learning online from scratch: cumulative regret against the oracle"))
        current.card.append(VegaChart({
            "mark": "line", "data": {"values": regret}, "width": 420,
            "encoding": {"x": {"field": "impressions", "type": "quantitative"},
                         "y": {"field": "cumulative regret", "type": "quantitative"},
                         "color": {"field": "policy", "type": "nominal"}},
        }))
        self.next(self.end)

    @step
    def end(self):
        print("\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"\nbest by DR: {self.best_name}; random {self.random:.4f}, oracle {self.oracle:.4f}")


def _online_checks(sim, inputs, seed, n, batches=20, batch=250):
    """What the offline estimates cannot show: an A/B test of each trained policy against random
    artwork on fresh members, and the regret of each policy class learning online from scratch."""
    import numpy as np
    import pandas as pd

    from reelflow.content import bandits
    from reelflow.content.experiments import compare

    rng = np.random.default_rng(seed + 1)
    imp = sim.impressions(n)
    control = sim.plays(imp, rng.integers(0, sim.n_artworks, n))
    rows = []
    for i in inputs:
        actions, _ = i.policy.select(imp.contexts)
        rows.append(compare(control, sim.plays(imp, actions), metric=i.policy_name))
    curves = []
    for i in inputs:
        policy = getattr(bandits, i.policy_name)(n_actions=sim.n_artworks, random_state=seed, **POLICIES[i.policy_name])
        total = 0.0
        for b in range(batches):
            step_imp = sim.impressions(batch)
            actions, _ = policy.select(step_imp.contexts)
            policy.update(step_imp.contexts, actions, sim.plays(step_imp, actions))
            best = step_imp.play_prob.max(axis=1)
            total += float((best - step_imp.play_prob[np.arange(batch), actions]).sum())
            curves.append({"policy": i.policy_name, "impressions": (b + 1) * batch, "cumulative regret": total})
    random_regret = 0.0
    for b in range(batches):
        step_imp = sim.impressions(batch)
        random_regret += float((step_imp.play_prob.max(axis=1) - step_imp.play_prob.mean(axis=1)).sum())
        curves.append({"policy": "random", "impressions": (b + 1) * batch, "cumulative regret": random_regret})
    return pd.concat(rows, ignore_index=True), curves


if __name__ == "__main__":
    ArtworkFlow()
