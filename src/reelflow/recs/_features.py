"""Item features from metadata: genres, release year, title words and tags, as one sparse matrix.

Each block is a bag of tokens weighted by idf and scaled to unit length per item,
then multiplied by its block weight, so a block's weight is its share of an
item-item cosine similarity whatever its vocabulary size.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["item_features", "FEATURE_BLOCKS"]

FEATURE_BLOCKS = ("genres", "year", "title", "tags")
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_WORD = re.compile(r"[^\W\d_]{3,}")
_NO_GENRE = {"", "(no genres listed)"}


def _split(v: object) -> list[str]:
    if not isinstance(v, str):
        return []
    return [t.strip().lower() for t in v.split("|") if t.strip().lower() not in _NO_GENRE]


def _year(meta: pd.DataFrame) -> list[list[str]]:
    """Five-year buckets of a ``year`` column, else of the ``(1995)`` at the end of a title."""
    if "year" in meta.columns:
        years = pd.to_numeric(meta["year"], errors="coerce").to_numpy(float)
    elif "title" in meta.columns:
        years = np.array([float(m.group(1)) if isinstance(t, str) and (m := _YEAR.search(t)) else np.nan
                          for t in meta["title"]])
    else:
        return [[] for _ in range(len(meta))]
    return [[] if np.isnan(y) else [f"{int(y) // 5 * 5}s"] for y in years]


def _title(meta: pd.DataFrame) -> list[list[str]]:
    if "title" not in meta.columns:
        return [[] for _ in range(len(meta))]
    return [_WORD.findall(_YEAR.sub("", t).lower()) if isinstance(t, str) else [] for t in meta["title"]]


def _block(tokens: Sequence[list[str]], min_df: int) -> sp.csr_matrix:
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for r, toks in enumerate(tokens):
        for t in set(toks):
            cols.append(vocab.setdefault(t, len(vocab)))
            rows.append(r)
    n = len(tokens)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, len(vocab)))
    df = np.asarray(m.sum(axis=0)).ravel()
    keep = df >= min_df
    m = m[:, keep]
    idf = np.log((1.0 + n) / (1.0 + df[keep])).astype(np.float32) + np.float32(1.0)
    m = (m @ sp.diags(idf)).tocsr()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sp.diags((1.0 / norms).astype(np.float32)) @ m).tocsr().astype(np.float32)


def item_features(
    meta: pd.DataFrame | None,
    item_ids: Sequence[Hashable] | np.ndarray,
    weights: Mapping[str, float],
    *,
    min_df: int = 2,
) -> sp.csr_matrix:
    """Items × features (float32 CSR) from ``meta`` (indexed by item id), rows in ``item_ids`` order.

    ``weights`` maps a block of :data:`FEATURE_BLOCKS` to its weight (0 leaves it
    out). Genres and tags are ``|``-separated text columns; the year is a ``year``
    column or the ``(1995)`` ending a title; title words are its words of three or
    more letters. Tokens on fewer than ``min_df`` items are dropped (genres and
    years always kept). Items without metadata get an empty row.
    """
    n = len(item_ids)
    if meta is None or n == 0:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    m = meta.reindex(pd.Index(np.asarray(item_ids)))
    blocks: list[sp.csr_matrix] = []
    for name in FEATURE_BLOCKS:
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        if name == "year":
            tokens, df = _year(m), 1
        elif name == "title":
            tokens, df = _title(m), min_df
        elif name in m.columns:
            tokens, df = [_split(v) for v in m[name]], (1 if name == "genres" else min_df)
        else:
            continue
        b = _block(tokens, df)
        if b.shape[1]:
            blocks.append(b * np.float32(w))
    if not blocks:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    return sp.hstack(blocks, format="csr", dtype=np.float32)
