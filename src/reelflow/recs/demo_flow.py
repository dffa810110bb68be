"""What to watch next: train, tune and compare recommenders on MovieLens, pick a champion.

This is reelflow's flagship flow and a readable example. Run it with

    reelflow demo                      # or: python -m reelflow.recs.demo_flow run
    reelflow demo --models '["EASE", "ALS"]' --test-fraction 0.1

The evaluation is honest: the data is split by time (no future leaks into
training), hyper-parameters are tuned on a validation period carved from the
training side only, every model ranks the full catalogue, and the champion is
chosen on validation, not test.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time

from reelflow import FlowSpec, JSONType, Parameter, checkpoint, current, step
from reelflow.cards import Markdown, Table, VegaChart, card

# Small grids keep the demo's main job under a minute on two cores. HybridEASE (EASE plus the
# titles' genres, years and title words) costs what EASE does; SASRec, a transformer, trains under
# a wall-clock budget here (--sasrec-budget seconds per fit), far less than it needs to converge.
GRIDS: dict[str, dict[str, list]] = {
    "MostPopular": {},
    "ItemKNN": {"k": [50, 200], "shrink": [0.0, 20.0]},
    "EASE": {"l2": [100.0, 500.0, 2000.0]},
    "ALS": {"factors": [32, 64], "regularization": [0.01, 0.1], "alpha": [1.0, 5.0]},
    "BPR": {"factors": [64], "learning_rate": [0.01, 0.05]},
    "HybridEASE": {"l2": [500.0], "feature_weight": [10.0, 30.0]},
    "SASRec": {"max_len": [50], "batch_size": [32], "learning_rate": [0.002]},
}
# SASRec joins the default comparison only where its extra is installed (pip install 'reelflow[torch]').
DEFAULT_MODELS = ["MostPopular", "ItemKNN", "EASE", "ALS", "HybridEASE"] + (
    ["SASRec"] if importlib.util.find_spec("torch") is not None else [])


class RecsDemoFlow(FlowSpec):
    """Compare recommenders on MovieLens ml-latest-small and pick the champion."""

    models = Parameter("models", type=JSONType, default=json.dumps(DEFAULT_MODELS),
                       help="JSON list of models to compare (MostPopular, ItemKNN, EASE, ALS, BPR, HybridEASE, "
                            "SASRec)")
    test_fraction = Parameter("test-fraction", default=0.2, help="latest share of interactions held out as test")
    min_item_interactions = Parameter("min-item-interactions", default=5,
                                      help="drop items with fewer interactions (keeps EASE fast)")
    sasrec_budget = Parameter("sasrec-budget", default=8.0,
                              help="SASRec's training budget in seconds for each of its two fits (tune, refit)")

    @step
    def start(self):
        """Load the bundled data and split it by time: train | valid (inside train) | test."""
        from reelflow.recs import temporal_split
        from reelflow.recs.datasets import movielens_small

        unknown = [m for m in self.models if m not in GRIDS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(GRIDS)}")
        print(f"Loading MovieLens ml-latest-small, keeping items with at least {self.min_item_interactions} "
              "interactions ...", flush=True)
        data = movielens_small().filter(min_item_interactions=self.min_item_interactions)
        print(f"Splitting {data} by time: the latest {self.test_fraction:.0%} is the test period, "
              "the latest 15% of the rest is the validation period for tuning", flush=True)
        self.train, self.test = temporal_split(data, self.test_fraction)
        self.fit_part, self.valid = temporal_split(self.train, 0.15)
        print(f"train {len(self.train):,} (of which valid {len(self.valid):,}), test {len(self.test):,} interactions; "
              f"next: tune and test {', '.join(self.models)}, one task each", flush=True)
        self.next(self.train_model, foreach="models")

    @checkpoint  # SASRec's epochs go to the store: a retry or `resume` continues its training
    @card(type="blank", id="tuning")
    @step
    def train_model(self):
        """Tune one model on the validation period, refit on all training data, test it."""
        from reelflow import recs

        self.model_name = self.input
        cls = getattr(recs, self.model_name)
        grid = GRIDS[self.model_name]
        if self.model_name == "SASRec":  # a time-boxed transformer: a budget, not a grid
            grid = {**grid, "time_budget": [float(self.sasrec_budget)], "random_state": [0]}
        n_candidates = math.prod(len(values) for values in grid.values())
        print(f"{self.model_name}: tuning {n_candidates} candidate setting(s) on the validation period "
              f"({len(self.fit_part):,} interactions to fit, ndcg@10 to compare) ...", flush=True)
        t0 = time.perf_counter()
        tuned = recs.tune(cls, grid, self.fit_part, self.valid, metric="ndcg@10")
        self.tune_seconds = time.perf_counter() - t0
        self.best_params = tuned.best_params
        self.valid_ndcg10 = tuned.best_score
        print(f"{self.model_name}: tuned in {self.tune_seconds:.1f} s, best {self.best_params} "
              f"(valid ndcg@10 {self.valid_ndcg10:.4f}); refitting it on all {len(self.train):,} training "
              "interactions ...", flush=True)
        t0 = time.perf_counter()
        self.model = cls(**self.best_params).fit(self.train)
        self.fit_seconds = time.perf_counter() - t0
        self.note = ""
        if self.model_name == "SASRec":
            self.note = (f"trained {self.model.epochs_} epoch(s) in its {float(self.sasrec_budget):.0f} s budget; "
                         "it needs many more to converge (see benchmarks/recs/bench_sasrec.py)")
        print(f"{self.model_name}: fitted in {self.fit_seconds:.1f} s; testing it on the held-out period "
              "(every user ranks the full catalogue) ...", flush=True)
        self.report = recs.evaluate(self.model, self.train, self.test, k=(10, 20))
        test_ndcg = self.report.set_index(["metric", "k"]).value[("ndcg", 10)]
        print(f"{self.model_name}: test ndcg@10 {test_ndcg:.4f}", flush=True)
        current.log_metrics({f"{m}@{k}": v for m, k, v in self.report.itertuples(index=False)})
        current.log_metric("valid_ndcg@10", self.valid_ndcg10)
        grid_df = tuned.results.assign(setting=[", ".join(f"{k}={r[k]}" for k in grid) or "default"
                                                for r in tuned.results.to_dict("records")])
        current.card.append(Markdown(f"# {self.model_name}: tuning grid\nBest {self.best_params}: valid ndcg@10 "
                                     f"**{self.valid_ndcg10:.4f}**, test ndcg@10 **{test_ndcg:.4f}**"))
        current.card.append(VegaChart({
            "mark": "bar", "data": {"values": grid_df[["setting", "ndcg@10"]].to_dict("records")},
            "encoding": {"y": {"field": "setting", "type": "nominal", "sort": "-x"},
                         "x": {"field": "ndcg@10", "type": "quantitative", "title": "validation ndcg@10"}}}))
        current.card.append(Table(grid_df))
        current.card.append(Table(self.report))
        self.next(self.choose)

    @card(type="blank", id="comparison")
    @step
    def choose(self, inputs):
        """Gather the reports; the champion has the best *validation* score."""
        import pandas as pd

        rows = []
        for inp in inputs:
            r = inp.report.set_index(["metric", "k"]).value
            rows.append({
                "model": inp.model_name,
                "valid ndcg@10": inp.valid_ndcg10,
                "test hr@10": r[("hr", 10)],
                "test ndcg@10": r[("ndcg", 10)],
                "test recall@20": r[("recall", 20)],
                "coverage@10": r[("coverage", 10)],
                "fit s": inp.fit_seconds,
                "params": inp.best_params,
            })
        self.comparison = pd.DataFrame(rows).sort_values("valid ndcg@10", ascending=False).reset_index(drop=True)
        best = max(inputs, key=lambda i: i.valid_ndcg10)
        self.champion_name = best.model_name
        self.champion = best.model
        self.why = _why(inputs, best)
        print(f"Compared {len(rows)} model(s); champion on validation ndcg@10: {self.champion_name} "
              f"({best.valid_ndcg10:.4f}); registering it as recs-demo@champion ...", flush=True)
        self.merge_artifacts(inputs, include=["train", "test"])
        # Register the champion with its lineage (this task); `reelflow serve recs-demo@champion` serves it.
        from reelflow import models

        scores = best.report.set_index(["metric", "k"]).value
        self.registered = models.register(
            "recs-demo", self.champion, alias="champion",
            metrics={"test ndcg@10": float(scores[("ndcg", 10)]), "valid ndcg@10": float(best.valid_ndcg10)},
            description=f"{self.champion_name} {best.best_params}, chosen on validation by RecsDemoFlow",
        ).spec
        current.log_metrics({"champion_test_ndcg@10": float(scores[("ndcg", 10)]),
                             "champion_valid_ndcg@10": float(best.valid_ndcg10)})
        current.card.append(Markdown(f"# Champion: {self.champion_name}\nChosen on validation ndcg@10; "
                                     f"registered as {self.registered} (alias champion)."))
        current.card.append(Table(self.comparison.drop(columns=["params"])))
        long = self.comparison.melt(id_vars="model", value_vars=["valid ndcg@10", "test ndcg@10", "test hr@10"])
        current.card.append(VegaChart({
            "mark": "bar", "data": {"values": long.to_dict("records")},
            "encoding": {"x": {"field": "model", "type": "nominal"}, "xOffset": {"field": "variable"},
                         "y": {"field": "value", "type": "quantitative"},
                         "color": {"field": "variable", "type": "nominal", "title": "metric"}}}))
        self.next(self.end)

    @card(type="blank", id="picks", title="Top picks")
    @step
    def end(self):
        """Show the comparison and a few 'because you watched' recommendations."""
        import numpy as np
        import pandas as pd

        with pd.option_context("display.width", 140, "display.max_columns", 20, "display.precision", 4):
            print("\n" + self.comparison.drop(columns=["params"]).to_string(index=False))
        print(f"\nChampion (best on validation): {self.champion_name} {self.comparison.params[0]}, "
              f"registered as {self.registered} (alias champion); serve it with `reelflow serve recs-demo@champion`")
        print(f"Why {self.champion_name} won: {self.why}")
        train = self.train
        users = [u for u in (1, 68, 414) if u in set(train.active_users().tolist())][:3]
        picks, _ = self.champion.recommend(users, n=5)
        picks_rows = []
        for user, items in zip(users, picks):
            mask = train.users == train.user_index([user])[0]
            last = train.item_ids[train.items[mask][np.argmax(train.timestamps[mask])]]
            similar, _ = self.champion.similar_items([last], n=3)
            print(f"\nMember {user}")
            print(f"  because you watched {train.titles([last])[0]}: {'; '.join(train.titles(similar[0]))}")
            print(f"  top picks: {'; '.join(train.titles(items))}")
            picks_rows.append([user, train.titles([last])[0], "; ".join(train.titles(similar[0])),
                               "; ".join(train.titles(items))])
        current.card.append(Markdown(f"# Top picks of {self.champion_name}"))
        current.card.append(Table(picks_rows, headers=["member", "last watched", "because you watched",
                                                       "top picks"]))
        self.summary = self.comparison.drop(columns=["params"]).to_dict("records")
        print(f"\nRun {current.flow_name}/{current.run_id}: inspect it with "
              f"`reelflow runs show {current.flow_name}/{current.run_id}` or in Python: "
              f"Run('{current.flow_name}/{current.run_id}').data.comparison")


def _why(inputs, best) -> str:
    """One sentence on why the champion won: its margin on validation, and what limited the others."""
    ranked = sorted(inputs, key=lambda i: i.valid_ndcg10, reverse=True)
    parts = [f"the best validation ndcg@10 ({best.valid_ndcg10:.4f})"]
    if len(ranked) > 1:
        second = ranked[1]
        margin = best.valid_ndcg10 / second.valid_ndcg10 - 1 if second.valid_ndcg10 > 0 else float("inf")
        parts.append(f"{margin:+.1%} over the runner-up {second.model_name} ({second.valid_ndcg10:.4f})")
    notes = [f"{i.model_name} {i.note}" for i in inputs if getattr(i, "note", "")]
    text = ", ".join(parts) + "; the champion is picked on the validation period, never on test"
    return text + (f". Note: {'; '.join(notes)}" if notes else "")


if __name__ == "__main__":
    RecsDemoFlow()
