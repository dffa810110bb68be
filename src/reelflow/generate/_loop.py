"""The loop back: approved outputs become the next training set and new artwork arms.

- :func:`approved_training_set` gathers every approved output as a (sketch,
  background) pair, newest decision wins, into a :class:`TrainingSet` whose
  ``version`` is a digest of its pairs' blob keys: the same approvals give the
  same version, one more approval a new one. The training flow stores it as an
  artifact, so each training run records exactly which approvals it learned from.
- :func:`add_artwork_arms` appends approved images to an artwork bandit of
  :mod:`reelflow.content` as new actions (cold arms with the policy's prior), so
  what generation produces can be tested on members at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ReelflowError

__all__ = ["TrainingSet", "ArtworkArm", "approved_training_set", "add_artwork_arms", "load_output_image"]


@dataclass(frozen=True)
class TrainingSet:
    """Approved (sketch, background) pairs: ``sketches`` (n, H, W), ``backgrounds`` (n, H, W, 3),
    the ``output_ids`` they came from, and ``version`` (a digest of their blobs)."""

    sketches: np.ndarray
    backgrounds: np.ndarray
    output_ids: tuple[int, ...]
    version: str
    keys: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.output_ids)


@dataclass(frozen=True)
class ArtworkArm:
    """An action added to a bandit: its index, the output it shows, and the image's features."""

    action: int
    output_id: int
    key: str
    features: np.ndarray


def _store(store: Any | None) -> Any:
    from ..store import get_store

    return store if store is not None else get_store(create=False)


def load_output_image(output_id: int, *, store: Any | None = None) -> np.ndarray:
    """The pixels of generated output ``output_id`` (hash-checked)."""
    from ..store._review_db import review_tables
    from ._images import decode_png

    st = _store(store)
    row = review_tables(st.metadata).output(int(output_id))
    return decode_png(st.load(row["key"], what=f"generated output {output_id}"))


def approved_training_set(*, model: str | None = None, size: int | None = None,
                          store: Any | None = None) -> TrainingSet:
    """Every approved output that has a sketch input, as a versioned training set.

    ``model`` keeps only outputs of that model reference; ``size`` only images of
    that side (others are skipped, not resized: a resized sketch is a different sketch).
    """
    import xxhash

    from ..store._review_db import review_tables
    from ._images import decode_png

    st = _store(store)
    rows = review_tables(st.metadata).outputs(status="approved", model=model)
    rows = sorted((r for r in rows if r["input_key"]), key=lambda r: r["id"])
    sketches, backs, ids, keys = [], [], [], []
    for r in rows:
        sk = decode_png(st.load(r["input_key"], what=f"input of output {r['id']}"))
        bg_key = r.get("retouched_key") or r["key"]  # an artist's retouch replaces the raw output
        bg = decode_png(st.load(bg_key, what=f"generated output {r['id']}"))
        if bg.ndim != 3 or bg.shape[-1] != 3 or sk.shape != bg.shape[:2] or (size is not None and sk.shape[0] != size):
            continue
        sketches.append(sk)
        backs.append(bg)
        ids.append(int(r["id"]))
        keys.append(f"{r['input_key']}:{bg_key}")
    version = xxhash.xxh3_64_hexdigest("\n".join(keys).encode())
    side = size or (sketches[0].shape[0] if sketches else 0)
    return TrainingSet(
        np.stack(sketches) if sketches else np.zeros((0, side, side), np.uint8),
        np.stack(backs) if backs else np.zeros((0, side, side, 3), np.uint8),
        tuple(ids), version, tuple(keys),
    )


def _image_features(img: np.ndarray) -> np.ndarray:
    """A small description of an artwork: mean RGB of its top, middle and bottom thirds, and brightness."""
    x = np.asarray(img, np.float64)[..., :3] / 255.0
    thirds = np.array_split(x, 3, axis=0)
    f = np.concatenate([t.mean(axis=(0, 1)) for t in thirds] + [[x.mean()]])
    return f


def add_artwork_arms(policy: Any, output_ids: list[int], *, store: Any | None = None) -> list[ArtworkArm]:
    """Append approved outputs to ``policy`` (a :mod:`reelflow.content.bandits` policy) as new actions.

    ``n_actions`` grows by ``len(output_ids)``; the new arms start from the policy's
    prior (a fresh ridge model per arm for disjoint LinUCB/LinTS/EpsilonGreedy, zero
    counts for BernoulliTS; a shared-model policy scores them from its own features,
    for which each arm's ``features`` are returned). Only approved outputs may become
    arms. Returns the arms with their action indices.
    """
    from ..store._review_db import review_tables

    st = _store(store)
    tables = review_tables(st.metadata)
    rows = [tables.output(int(i)) for i in output_ids]
    for r in rows:
        if r["status"] != "approved":
            raise ReelflowError(f"output {r['id']} is {r['status']}, not approved; approve it first "
                                f"(`reelflow review approve {r['id']}`)")
    n_old = int(policy.n_actions)
    k = len(rows)
    if hasattr(policy, "ridge_") and not getattr(policy, "shared_", True):
        ridge = policy.ridge_
        p = ridge.A.shape[1]
        l2 = float(getattr(policy, "l2", 1.0))
        ridge.A = np.concatenate([ridge.A, np.repeat(np.eye(p)[None] * l2, k, axis=0)])
        ridge.A_inv = np.concatenate([ridge.A_inv, np.repeat(np.eye(p)[None] / l2, k, axis=0)])
        ridge.b = np.concatenate([ridge.b, np.zeros((k, p))])
        ridge._theta = None
    if hasattr(policy, "successes_"):
        policy.successes_ = np.concatenate([policy.successes_, np.zeros(k)])
        policy.failures_ = np.concatenate([policy.failures_, np.zeros(k)])
        for prior in ("alpha_prior", "beta_prior"):
            v = np.asarray(getattr(policy, prior), np.float64)
            if v.ndim:  # per-arm priors: the new arms get the mean prior
                setattr(policy, prior, np.concatenate([v, np.full(k, v.mean())]))
    policy.n_actions = n_old + k
    arms = []
    for j, r in enumerate(rows):
        img = load_output_image(r["id"], store=st)
        arms.append(ArtworkArm(n_old + j, int(r["id"]), r["key"], _image_features(img)))
    return arms
