"""Retrain the recommender on MovieLens plus the production feedback logged so far, and promote it
only when it beats the champion (ndcg@10 on held-out ratings).

Runs by hand (``reelflow run train_flow.py``), and when deployed (``reelflow deploy train_flow.py``)
every hour and whenever new ratings arrive or a feedback partition closes.
"""

from loopdata import MODEL, split

from reelflow import FlowSpec, Parameter, current, models, schedule, step, trigger


@schedule(hourly=True)
@trigger(events=[{"name": "ratings.arrived", "parameters": {"use_feedback": "use_feedback"}},
                 "feedback.partition_closed"])
class ContinuousRecsFlow(FlowSpec):
    use_feedback = Parameter("use_feedback", default=True, help="Train on the logged feedback too.")

    @step
    def start(self):
        import pandas as pd

        base, _, self.test = split()
        frames = [base[["user_id", "item_id"]]]
        self.feedback_rows = 0
        if self.use_feedback:
            from reelflow.errors import NotFoundError
            from reelflow.recs.datasets import read_feedback

            try:
                fb = read_feedback(MODEL, events=["play"])
                self.feedback_rows = len(fb)
                frames.append(fb.assign(user_id=fb["user_id"].astype("int64"),
                                        item_id=fb["item_id"].astype("int64"))[["user_id", "item_id"]])
            except NotFoundError:
                pass
        self.train_frame = pd.concat(frames, ignore_index=True)
        t = current.trigger
        print(f"started by {t.describe() if t else 'hand'}; training on {len(self.train_frame)} interactions "
              f"({self.feedback_rows} from feedback)")
        self.next(self.train)

    @step
    def train(self):
        from reelflow.recs import Interactions, ItemKNN, evaluate, metric_value

        data = Interactions.from_frame(self.train_frame, duplicates="sum")
        model = ItemKNN(k=100).fit(data)
        self.ndcg = metric_value(evaluate(model, data, self.test, k=10, metrics=["ndcg"]), "ndcg@10")
        mv = models.register(MODEL, model, metrics={"ndcg@10": self.ndcg})
        decision = models.promote(MODEL, mv.version, alias="champion", metric="ndcg@10")
        self.version, self.promoted, self.reason = mv.version, decision.moved, decision.reason
        print(f"version {mv.version}: ndcg@10={self.ndcg:.4f}; {'PROMOTED' if decision.moved else 'kept champion'}: "
              f"{decision.reason}")
        self.next(self.end)

    @step
    def end(self):
        pass
