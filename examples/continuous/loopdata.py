"""The MovieLens split shared by the training flow and the traffic simulator.

MovieLens ml-latest-small, bundled: the oldest 80% of ratings (by time) are the
data the first model sees. Each user's newer ratings alternate between the
*feedback pool* (what simulated members will watch when the server recommends to
them, sent as feedback) and the *test set* every model is scored on (never sent).
"""

from __future__ import annotations

import pandas as pd

MODEL = "recs-continuous"


def split() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(base, pool, test) frames with ``user_id``, ``item_id``, ``timestamp``."""
    from reelflow.recs.datasets import MOVIELENS_SMALL_DIR

    df = pd.read_csv(MOVIELENS_SMALL_DIR / "ratings.csv").rename(columns={"userId": "user_id", "movieId": "item_id"})
    df = df.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    cut = df["timestamp"].quantile(0.8)
    base, newer = df[df["timestamp"] < cut], df[df["timestamp"] >= cut]
    newer = newer[newer["user_id"].isin(base["user_id"]) & newer["item_id"].isin(base["item_id"])]
    rank = newer.groupby("user_id").cumcount()
    cols = ["user_id", "item_id", "timestamp"]
    return base[cols], newer[rank % 2 == 0][cols], newer[rank % 2 == 1][cols]
