"""The public names of reelflow.recs: importable from the package, none from private modules."""

import reelflow.recs as recs


def test_public_names():
    assert set(recs.__all__) == {
        "Interactions", "RecommenderBase", "MostPopular", "ItemKNN", "EASE", "ALS", "BPR", "HybridEASE", "ContentKNN",
        "GenrePopular", "SASRec", "evaluate", "tune", "TuneResult", "metric_value", "METRICS", "leave_last_out",
        "temporal_split", "random_split", "user_split", "new_items_split", "datasets",
    }
    for name in recs.__all__:
        assert getattr(recs, name) is not None, name
