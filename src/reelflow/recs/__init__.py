"""Recommendations ("what to watch next"): data, splits, models, honest evaluation.

    from reelflow.recs import Interactions, EASE, evaluate, temporal_split
    from reelflow.recs.datasets import movielens_small
"""

from __future__ import annotations

from .._extras import require

require("recs", "reelflow.recs")

from . import datasets
from ._base import RecommenderBase
from ._ease import EASE
from ._hybrid import ContentKNN, GenrePopular, HybridEASE
from ._evaluate import METRICS, TuneResult, evaluate, metric_value, tune
from ._implicit import ALS, BPR
from ._interactions import Interactions
from ._knn import ItemKNN
from ._popular import MostPopular
from ._sasrec import SASRec
from ._splits import leave_last_out, new_items_split, random_split, temporal_split, user_split

__all__ = [
    "Interactions",
    "RecommenderBase",
    "MostPopular",
    "ItemKNN",
    "EASE",
    "ALS",
    "BPR",
    "HybridEASE",
    "ContentKNN",
    "GenrePopular",
    "SASRec",
    "evaluate",
    "tune",
    "TuneResult",
    "metric_value",
    "METRICS",
    "leave_last_out",
    "temporal_split",
    "random_split",
    "user_split",
    "new_items_split",
    "datasets",
]
