"""Data sets: the bundled MovieLens ml-latest-small, MovieLens/RecBole readers, a generator.

``movielens_small()`` needs no network: the GroupLens files ship inside the
package, unchanged, with their README.txt (licence: research use; see that file;
cite Harper & Konstan 2015, ACM TiiS 5(4)).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ._feedback_data import from_feedback, read_feedback
from ._interactions import Interactions

__all__ = ["movielens_small", "read_movielens", "read_recbole", "synthetic", "MOVIELENS_SMALL_DIR", "from_feedback",
           "read_feedback"]

MOVIELENS_SMALL_DIR = Path(str(resources.files("reelflow.recs") / "data" / "ml-latest-small"))


def _movies(path: Path, sep: str = ",", encoding: str = "utf-8", names: list[str] | None = None) -> pd.DataFrame | None:
    if not path.exists():
        return None
    if names is None:
        m = pd.read_csv(path, sep=sep, encoding=encoding)
    else:
        m = pd.read_csv(path, sep=sep, encoding=encoding, names=names, engine="python")
    m = m.rename(columns={"movieId": "item_id", "movie_id": "item_id"})
    return m.set_index("item_id")[[c for c in ("title", "genres") if c in m.columns]]


def _tags(path: Path, before: int | None) -> pd.Series | None:
    """Each movie's tags (lower case, ``|``-joined, most used first) from a MovieLens tags.csv."""
    if not path.exists():
        return None
    t = pd.read_csv(path).rename(columns={"movieId": "item_id"})
    if before is not None:
        t = t[t["timestamp"] < before]
    tag = t["tag"].astype(str).str.strip().str.lower().str.replace("|", " ", regex=False)
    counts = pd.DataFrame({"item_id": t["item_id"], "tag": tag}).value_counts()
    return counts.reset_index().groupby("item_id", sort=True)["tag"].agg("|".join).rename("tags")


def read_movielens(
    path: str | os.PathLike[str],
    *,
    min_rating: float | None = None,
    binary: bool = True,
    tags: bool = False,
    tags_before: int | None = None,
) -> Interactions:
    """Read a MovieLens release folder or ratings file.

    Understands ``ratings.csv`` (ml-latest, ml-latest-small, ml-20m/25m),
    ``ratings.dat`` (ml-1m, ml-10m; ``::``-separated) and ``u.data`` (ml-100k;
    tab-separated). Every rating is an implicit interaction of weight 1 when
    ``binary`` (the default); otherwise the rating is the weight. ``min_rating``
    keeps only ratings at or above it. Titles and genres come along when the movies file is present;
    with ``tags=True`` a ``tags`` column too (from ``tags.csv``; ``tags_before`` keeps only tags
    applied before that timestamp, so an evaluation after it does not see them).
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if p.is_dir():
        for name in ("ratings.csv", "ratings.dat", "u.data"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise FileNotFoundError(f"{path}: no ratings.csv, ratings.dat or u.data in this folder")
    if not p.exists():
        raise FileNotFoundError(f"{path} does not exist")
    cols = ["user_id", "item_id", "rating", "timestamp"]
    try:
        if p.suffix == ".csv":
            df = pd.read_csv(p).rename(columns={"userId": "user_id", "movieId": "item_id"})
            meta = _movies(folder / "movies.csv")
        elif p.suffix == ".dat":
            df = pd.read_csv(p, sep="::", names=cols, engine="python")
            meta = _movies(folder / "movies.dat", sep="::", encoding="latin-1", names=["item_id", "title", "genres"])
        else:
            df = pd.read_csv(p, sep="\t", names=cols)
            meta = None
            item_file = folder / "u.item"
            if item_file.exists():
                items = pd.read_csv(item_file, sep="|", encoding="latin-1", header=None, usecols=[0, 1])
                meta = items.set_axis(["item_id", "title"], axis=1).set_index("item_id")
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{p} is not a MovieLens ratings file: {exc}") from None
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{p} is not a MovieLens ratings file: no column {missing[0]!r}")
    if min_rating is not None:
        df = df[df["rating"] >= min_rating]
    if tags:
        found = _tags(folder / "tags.csv", tags_before)
        if found is None:
            raise FileNotFoundError(f"{folder}: tags=True needs a tags.csv beside the ratings")
        meta = (pd.DataFrame(index=pd.Index([], name="item_id")) if meta is None else meta).join(found, how="left")
    return Interactions.from_frame(df, timestamp="timestamp", weight=None if binary else "rating", item_meta=meta)


def movielens_small(
    *, min_rating: float | None = None, binary: bool = True, tags: bool = False, tags_before: int | None = None
) -> Interactions:
    """MovieLens ml-latest-small (100,836 ratings by 610 users on 9,724 movies), bundled.

    Every rating is an implicit interaction (weight 1) unless ``binary=False``
    (weight = rating); ``min_rating`` keeps only ratings at or above it. The item
    metadata has ``title`` and ``genres``, and ``tags`` with ``tags=True`` (see
    :func:`read_movielens`).
    """
    return read_movielens(MOVIELENS_SMALL_DIR / "ratings.csv", min_rating=min_rating, binary=binary, tags=tags,
                          tags_before=tags_before)


def read_recbole(path: str | os.PathLike[str]) -> Interactions:
    """Read a RecBole atomic ``.inter`` file (tab-separated, typed header ``name:type``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path} does not exist")
    df = pd.read_csv(p, sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    user = "user_id" if "user_id" in df.columns else df.columns[0]
    item = "item_id" if "item_id" in df.columns else df.columns[1]
    ts = "timestamp" if "timestamp" in df.columns else None
    weight = "rating" if "rating" in df.columns else None
    return Interactions.from_frame(df, user=user, item=item, timestamp=ts, weight=weight)


def synthetic(
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 50_000,
    *,
    n_factors: int = 16,
    popularity_exponent: float = 1.0,
    taste_strength: float = 2.0,
    seed: int = 0,
) -> Interactions:
    """Interactions with power-law item popularity, latent tastes and timestamps.

    Each user draws distinct items with probability proportional to
    ``popularity_i * exp(taste_strength * <user taste, item profile>)`` (Gumbel
    top-k sampling), so collaborative models have structure to find. Activity per
    user is log-normal; timestamps increase per user over one year.
    """
    if n_interactions > n_users * n_items:
        raise ValueError("n_interactions cannot exceed n_users * n_items")
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** popularity_exponent
    rng.shuffle(pop)
    log_pop = np.log(pop).astype(np.float32)
    tastes = rng.normal(size=(n_users, n_factors)).astype(np.float32) / np.sqrt(n_factors)
    profiles = rng.normal(size=(n_items, n_factors)).astype(np.float32)
    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = np.maximum(1, np.round(activity / activity.sum() * n_interactions)).astype(np.int64)
    counts = np.minimum(counts, n_items)
    users_out, items_out = [], []
    batch = 512
    for lo in range(0, n_users, batch):
        hi = min(n_users, lo + batch)
        logits = taste_strength * tastes[lo:hi] @ profiles.T + log_pop
        logits += rng.gumbel(size=logits.shape).astype(np.float32)
        order = np.argsort(-logits, axis=1)
        for r in range(hi - lo):
            c = counts[lo + r]
            items_out.append(order[r, :c])
            users_out.append(np.full(c, lo + r, np.int32))
    users = np.concatenate(users_out)
    items = np.concatenate(items_out).astype(np.int32)
    start = 1_500_000_000
    ts = start + (rng.random(len(users)) * 365 * 86400).astype(np.int64)
    meta = pd.DataFrame({"title": [f"Title {i}" for i in range(n_items)]})
    meta.index.name = "item_id"
    return Interactions(
        users=users,
        items=items,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        timestamps=ts,
        item_meta=meta,
    )
