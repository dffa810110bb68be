"""``Interactions``: who watched what (and when), with external ids kept.

Stored in long form (one row per user-item pair: internal indices, weight,
optional timestamp) plus the two id maps; the scipy CSR matrix is built on
demand. Splits of one data set share its id maps, so a model fitted on the
training part scores users and items of the test part by the same indices.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Interactions"]

_DUPLICATES = ("sum", "first", "last", "error")


class Interactions:
    """Users × items interactions with their external ids.

    Build one with :meth:`from_frame` or a reader in :mod:`reelflow.recs.datasets`.

    Attributes
    ----------
    user_ids, item_ids : arrays of external ids; position = internal index.
    users, items : int32 internal indices, one per interaction.
    weights : float32, one per interaction (1.0 when no weight column).
    timestamps : int64 per interaction, or None.
    item_meta : DataFrame indexed by external item id (e.g. title, genres), or None.
    """

    def __init__(
        self,
        *,
        users: np.ndarray,
        items: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        weights: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        item_meta: pd.DataFrame | None = None,
    ) -> None:
        self.users = np.asarray(users, dtype=np.int32)
        self.items = np.asarray(items, dtype=np.int32)
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        n = len(self.users)
        self.weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        self.timestamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        self.item_meta = item_meta
        if len(self.items) != n or len(self.weights) != n or (self.timestamps is not None and len(self.timestamps) != n):
            raise ValueError("users, items, weights and timestamps must have one entry per interaction")

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: Any,
        user: str = "user_id",
        item: str = "item_id",
        timestamp: str | None = None,
        weight: str | None = None,
        *,
        duplicates: str = "sum",
        item_meta: pd.DataFrame | None = None,
    ) -> Interactions:
        """Interactions from a pandas (or polars / pyarrow) table.

        Parameters
        ----------
        df : one row per interaction.
        user, item : id columns (any hashable ids: ints or strings).
        timestamp : optional column of times (numbers or datetimes).
        weight : optional column of weights (e.g. ratings, watch time); 1.0 when absent.
        duplicates : what a repeated (user, item) pair becomes: ``"sum"`` (weights added,
            latest timestamp kept; the default), ``"first"``, ``"last"`` (by timestamp
            when given, else by row order) or ``"error"``.
        item_meta : optional DataFrame indexed by item id (title, genres, ...).
        """
        df = _to_pandas(df)
        if duplicates not in _DUPLICATES:
            raise ValueError(f"duplicates={duplicates!r}; choose one of {', '.join(_DUPLICATES)}")
        cols = [c for c in (user, item, timestamp, weight) if c is not None]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(
                f"column {missing[0]!r} is not in the table (columns: {', '.join(map(str, df.columns))}); "
                f"pass the right name, e.g. from_frame(df, user=..., item=...)"
            )
        if len(df) == 0:
            raise ValueError("the interaction table is empty; there is nothing to learn from")
        for c in cols:
            bad = df[c].isna().to_numpy()
            if bad.any():
                rows = np.flatnonzero(bad)[:5].tolist()
                raise ValueError(
                    f"column {c!r} has {int(bad.sum())} missing values (rows {rows}); drop or fill them first"
                )
        frame = df[cols].copy()
        if timestamp is not None:
            ts = frame[timestamp]
            if pd.api.types.is_datetime64_any_dtype(ts):
                frame[timestamp] = ts.astype("datetime64[s]").astype(np.int64)
        if weight is not None and not pd.api.types.is_numeric_dtype(frame[weight]):
            raise ValueError(f"weight column {weight!r} must be numeric")
        keys = [user, item]
        dup = frame.duplicated(keys, keep=False)
        if dup.any():
            if duplicates == "error":
                first = frame[dup].iloc[0]
                raise ValueError(
                    f"{int(dup.sum())} rows repeat a (user, item) pair, e.g. ({first[user]!r}, {first[item]!r}); "
                    "pass duplicates='sum', 'first' or 'last'"
                )
            order = [timestamp] if timestamp is not None else None
            if order:
                frame = frame.sort_values(order, kind="stable")
            if duplicates == "sum":
                if weight is None:  # a repeated pair counts as often as it occurs
                    frame["__weight"] = np.float32(1.0)
                    weight = "__weight"
                agg = {weight: "sum"}
                if timestamp is not None:
                    agg[timestamp] = "max"
                frame = frame.groupby(keys, sort=False, as_index=False).agg(agg)
            else:
                frame = frame.drop_duplicates(keys, keep=duplicates)
        u_codes, u_ids = pd.factorize(frame[user], sort=True)
        i_codes, i_ids = pd.factorize(frame[item], sort=True)
        return cls(
            users=u_codes,
            items=i_codes,
            user_ids=np.asarray(u_ids),
            item_ids=np.asarray(i_ids),
            weights=frame[weight].to_numpy(np.float32) if weight is not None else None,
            timestamps=frame[timestamp].to_numpy(np.int64) if timestamp is not None else None,
            item_meta=item_meta,
        )

    # -- views --------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def __len__(self) -> int:
        return len(self.users)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """users × items CSR matrix of weights (float32)."""
        m = sp.csr_matrix((self.weights, (self.users, self.items)), shape=self.shape, dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        return m

    @cached_property
    def _user_index(self) -> dict[Hashable, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def _item_index(self) -> dict[Hashable, int]:
        return {v: i for i, v in enumerate(self.item_ids.tolist())}

    def user_index(self, user_ids: Sequence[Hashable] | np.ndarray) -> np.ndarray:
        """Internal indices of external user ids (-1 for unknown users)."""
        idx = self._user_index
        return np.fromiter((idx.get(u, -1) for u in _as_list(user_ids)), dtype=np.int64, count=len(user_ids))

    def item_index(self, item_ids: Sequence[Hashable] | np.ndarray) -> np.ndarray:
        """Internal indices of external item ids (-1 for unknown items)."""
        idx = self._item_index
        return np.fromiter((idx.get(i, -1) for i in _as_list(item_ids)), dtype=np.int64, count=len(item_ids))

    def active_users(self) -> np.ndarray:
        """External ids of users with at least one interaction here."""
        return self.user_ids[np.unique(self.users)]

    def subset(self, mask: np.ndarray) -> Interactions:
        """The interactions selected by a boolean mask, keeping the id maps."""
        return Interactions(
            users=self.users[mask],
            items=self.items[mask],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            weights=self.weights[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            item_meta=self.item_meta,
        )

    def filter(self, *, min_user_interactions: int = 1, min_item_interactions: int = 1) -> Interactions:
        """Drop rare users and items (one pass) and re-index; ids stay external."""
        ic = np.bincount(self.items, minlength=self.n_items)
        uc = np.bincount(self.users, minlength=self.n_users)
        keep = (ic[self.items] >= min_item_interactions) & (uc[self.users] >= min_user_interactions)
        if not keep.any():
            raise ValueError("filtering removed every interaction; lower the minimum counts")
        sub = self.subset(keep)
        u_codes, u_uni = np.unique(sub.users, return_inverse=True)
        i_codes, i_uni = np.unique(sub.items, return_inverse=True)
        return Interactions(
            users=u_uni,
            items=i_uni,
            user_ids=self.user_ids[u_codes],
            item_ids=self.item_ids[i_codes],
            weights=sub.weights,
            timestamps=sub.timestamps,
            item_meta=self.item_meta,
        )

    def to_frame(self) -> pd.DataFrame:
        """Back to a table with external ids."""
        d: dict[str, Any] = {"user_id": self.user_ids[self.users], "item_id": self.item_ids[self.items],
                             "weight": self.weights}
        if self.timestamps is not None:
            d["timestamp"] = self.timestamps
        return pd.DataFrame(d)

    def titles(self, item_ids: Sequence[Hashable] | np.ndarray) -> list[str]:
        """Display titles of items (their id as text when there is no metadata)."""
        ids = _as_list(item_ids)
        if self.item_meta is None or "title" not in self.item_meta.columns:
            return [str(i) for i in ids]
        col = self.item_meta["title"]
        return [str(col.get(i, i)) for i in ids]

    _DERIVED = ("matrix", "_user_index", "_item_index")

    def __getstate__(self) -> dict[str, Any]:
        # Cached derived state is rebuilt on demand: leaving it out keeps artifacts small
        # and makes an Interactions that was only read pickle to the same bytes (same blob).
        return {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}

    def __repr__(self) -> str:
        ts = ", timestamps" if self.timestamps is not None else ""
        return f"Interactions({len(self):,} interactions, {self.n_users:,} users x {self.n_items:,} items{ts})"


def _as_list(ids: Any) -> list[Any]:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def _to_pandas(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    to_pandas = getattr(df, "to_pandas", None)  # polars and pyarrow tables
    if callable(to_pandas):
        return to_pandas()
    raise TypeError(f"from_frame needs a pandas, polars or pyarrow table, got {type(df).__name__}")
