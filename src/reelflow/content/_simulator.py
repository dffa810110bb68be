"""A simulator of artwork personalisation with known ground truth.

Members have tastes over visual themes (e.g. "romance", "action", "faces");
titles have an appeal and several artworks, each showing one theme with some
quality. An impression shows one artwork of one title to one member, who plays
it with probability

    p = sigmoid(base + appeal_t + taste_weight * taste_m[theme_k] + quality_weight * quality_k
                - position_effect * position) * exp(-fatigue * times_seen(member, title))

so every policy's true value is computable, not estimated. Members' observed
features are their tastes plus noise: a good policy must learn the mapping.
Position (the row on the page, when ``n_positions > 1``) and fatigue (a title shown
again to the same member plays less) are optional and off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ArtworkSimulator", "Impressions"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Impressions:
    """A batch of decisions to make: who sees which title, and the candidate features."""

    members: np.ndarray  # (n,)
    titles: np.ndarray  # (n,)
    contexts: np.ndarray  # (n, n_artworks, p) float32: member features x artwork features
    member_features: np.ndarray  # (n, d): for disjoint policies
    play_prob: np.ndarray  # (n, n_artworks): ground truth
    position: np.ndarray | None = None  # (n,) row on the page, when positions are simulated

    def __len__(self) -> int:
        return len(self.members)


class ArtworkSimulator:
    """Members x titles x artworks with a logistic play probability.

    Parameters
    ----------
    n_members, n_titles, n_artworks : sizes (artworks per title).
    n_themes : visual themes an artwork can show.
    taste_concentration : Dirichlet concentration of tastes (small = strong preferences).
    feature_noise : noise on the members' observed features.
    seed : everything is deterministic given the seed.
    """

    def __init__(
        self,
        n_members: int = 10_000,
        n_titles: int = 500,
        n_artworks: int = 5,
        *,
        n_themes: int = 8,
        taste_concentration: float = 0.3,
        feature_noise: float = 0.05,
        base: float = -2.9,
        taste_weight: float = 2.4,
        quality_weight: float = 0.6,
        position_effect: float = 0.0,
        n_positions: int = 1,
        fatigue: float = 0.0,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.n_members, self.n_titles, self.n_artworks, self.n_themes = n_members, n_titles, n_artworks, n_themes
        self.base, self.taste_weight, self.quality_weight = base, taste_weight, quality_weight
        self.position_effect, self.n_positions, self.fatigue = position_effect, n_positions, fatigue
        # times each member has been shown each title (only tracked when fatigue is on)
        self.exposures = np.zeros((n_members, n_titles), np.int32) if fatigue > 0 else None
        self.tastes = rng.dirichlet(np.full(n_themes, taste_concentration), size=n_members)
        noisy = self.tastes + feature_noise * rng.standard_normal(self.tastes.shape)
        self.member_features = np.hstack([noisy, np.ones((n_members, 1))])
        self.appeal = rng.normal(0.0, 0.5, n_titles)
        self.themes = np.stack([rng.choice(n_themes, n_artworks, replace=n_artworks > n_themes) for _ in range(n_titles)])
        self.quality = rng.normal(0.0, 1.0, (n_titles, n_artworks))
        self._rng = np.random.default_rng(seed + 1)

    @property
    def artwork_features(self) -> np.ndarray:
        """(n_titles, n_artworks, n_themes + 2): theme one-hot, quality, bias."""
        onehot = np.eye(self.n_themes)[self.themes]
        return np.concatenate([onehot, self.quality[..., None], np.ones((*self.themes.shape, 1))], axis=2)

    def play_probability(self, members: np.ndarray, titles: np.ndarray, position: np.ndarray | None = None) -> np.ndarray:
        """True play probability of every artwork, (n, n_artworks)."""
        taste = np.take_along_axis(self.tastes[members], self.themes[titles], axis=1)
        z = self.base + self.appeal[titles, None] + self.taste_weight * taste + self.quality_weight * self.quality[titles]
        if position is not None:
            z = z - self.position_effect * np.asarray(position)[:, None]
        p = _sigmoid(z)
        if self.exposures is not None:
            p = p * np.exp(-self.fatigue * self.exposures[members, titles])[:, None]
        return p

    def impressions(self, n: int) -> Impressions:
        """``n`` random (member, title) impressions with their candidate features."""
        members = self._rng.integers(0, self.n_members, n)
        titles = self._rng.integers(0, self.n_titles, n)
        position = self._rng.integers(0, self.n_positions, n) if self.n_positions > 1 else None
        mf = self.member_features[members]
        af = self.artwork_features[titles]
        contexts = np.einsum("nd,nkp->nkdp", mf, af).reshape(n, self.n_artworks, -1).astype(np.float32)
        return Impressions(members, titles, contexts, mf, self.play_probability(members, titles, position), position)

    def plays(self, impressions: Impressions, actions: np.ndarray) -> np.ndarray:
        """Sample play (1) / no play (0) for the chosen artworks."""
        p = impressions.play_prob[np.arange(len(impressions)), actions]
        if self.exposures is not None:
            np.add.at(self.exposures, (impressions.members, impressions.titles), 1)
        return (self._rng.random(len(p)) < p).astype(np.float64)

    @staticmethod
    def policy_value(impressions: Impressions, action_dist: np.ndarray) -> float:
        """True expected play rate of a policy with ``action_dist`` (n, n_artworks)."""
        return float((impressions.play_prob * action_dist).sum(axis=1).mean())

    @staticmethod
    def oracle_value(impressions: Impressions) -> float:
        return float(impressions.play_prob.max(axis=1).mean())

    @staticmethod
    def random_value(impressions: Impressions) -> float:
        return float(impressions.play_prob.mean())
