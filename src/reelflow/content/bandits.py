"""Contextual bandits for artwork personalisation, and a simulator with ground truth."""

from __future__ import annotations

from ._policies import BasePolicy, BernoulliTS, EpsilonGreedy, LinTS, LinUCB
from ._simulator import ArtworkSimulator, Impressions

__all__ = [
    "BasePolicy",
    "EpsilonGreedy",
    "LinUCB",
    "LinTS",
    "BernoulliTS",
    "ArtworkSimulator",
    "Impressions",
]
