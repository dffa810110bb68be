"""Model registry: ``from reelflow import models``.

    models.register("recs", model, alias="champion", metrics={"ndcg@10": 0.41})
    models.set_alias("recs", "champion", 3)
    models.load("recs@champion")
    models.promote("recs", 4, alias="champion", metric="ndcg@10")   # only if better
    models.rollback("recs", "champion")
"""

from __future__ import annotations

from ._registry import (
    ModelVersion,
    alias_version,
    delete_alias,
    get,
    history,
    list,
    load,
    parse_spec,
    register,
    set_alias,
    versions,
)
from ._promote import PromotionDecision, promote, rollback

__all__ = [
    "ModelVersion",
    "register",
    "alias_version",
    "set_alias",
    "delete_alias",
    "get",
    "load",
    "list",
    "versions",
    "history",
    "parse_spec",
    "promote",
    "rollback",
    "PromotionDecision",
]
