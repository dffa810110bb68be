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
    alignment : for a table mapped onto another id space (``from_frame(..., like=train)``),
        what happened to its rows: ``rows``, ``unknown_user_rows``, ``unknown_users``,
        ``unknown_item_rows``, ``unknown_items``, ``dropped_rows`` and the two policies;
        None otherwise.
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
        alignment: dict[str, Any] | None = None,
    ) -> None:
        self.users = np.asarray(users, dtype=np.int32)
        self.items = np.asarray(items, dtype=np.int32)
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        n = len(self.users)
        self.weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        self.timestamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        self.item_meta = item_meta
        self.alignment = alignment
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
        like: Interactions | None = None,
        unknown_users: str = "keep",
        unknown_items: str = "drop",
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
        item_meta : optional DataFrame indexed by item id (title, genres, ...); with
            ``like``, that data set's metadata when not given.
        like : map the ids onto this data set's id space instead of building a new one,
            as for a test table that comes already split from its training table::

                train = Interactions.from_frame(pd.read_csv("train.csv"), timestamp="timestamp")
                test = Interactions.from_frame(pd.read_csv("test.csv"), timestamp="timestamp", like=train)
                evaluate(model, train, test)

            The result has exactly ``like``'s items, and ``like``'s users followed by
            any new ones. Rows naming users or items that ``like`` does not know are
            counted in :attr:`alignment` and announced on stderr, never silently lost.
        unknown_users : with ``like``, rows of users it does not know are ``"keep"`` (the
            default: cold users, appended to the user ids, served the popularity
            fallback), ``"drop"`` or ``"error"``.
        unknown_items : with ``like``, rows of items outside its catalogue are ``"drop"``
            (the default: no model can rank them) or ``"error"``.
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
        alignment = None
        if like is not None:
            frame, alignment = _align(frame, user, item, like, unknown_users, unknown_items)
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
        if like is None:
            u_codes, u_ids = pd.factorize(frame[user], sort=True)
            i_codes, i_ids = pd.factorize(frame[item], sort=True)
            user_ids, item_ids = np.asarray(u_ids), np.asarray(i_ids)
        else:
            user_ids, item_ids = _user_space(like, frame[user]), like.item_ids
            u_codes = pd.Index(user_ids).get_indexer(frame[user])
            i_codes = pd.Index(item_ids).get_indexer(frame[item])
            if item_meta is None:
                item_meta = like.item_meta
        return cls(
            users=u_codes,
            items=i_codes,
            user_ids=user_ids,
            item_ids=item_ids,
            weights=frame[weight].to_numpy(np.float32) if weight is not None else None,
            timestamps=frame[timestamp].to_numpy(np.int64) if timestamp is not None else None,
            item_meta=item_meta,
            alignment=alignment,
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

    def active_items(self) -> np.ndarray:
        """External ids of items with at least one interaction here."""
        return self.item_ids[np.unique(self.items)]

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


_UNKNOWN_USERS = ("keep", "drop", "error")
_UNKNOWN_ITEMS = ("drop", "error")


def _lookup(ids: np.ndarray, column: pd.Series, what: str) -> np.ndarray:
    """Positions of ``column`` values in ``ids`` (-1 when absent); refuses ids of another kind."""
    pos = pd.Index(ids).get_indexer(column)
    if len(column) and (pos < 0).all() and len(ids):
        known, given = pd.Index(ids).dtype, column.dtype
        if known.kind != given.kind and not (known.kind in "iuf" and given.kind in "iuf"):
            raise ValueError(
                f"no {what} id of this table is known to the reference data set: its {what} ids are {given} "
                f"(e.g. {_show(column.iloc[0])}), the reference's are {known} (e.g. {_show(ids[0])}); "
                f"read both tables with the same id type, e.g. pd.read_csv(..., dtype={{'{column.name}': str}})"
            )
    return pos


def _align(
    frame: pd.DataFrame, user: str, item: str, like: Interactions, unknown_users: str, unknown_items: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows of ``frame`` mapped onto ``like``'s ids: count, then keep or drop the unknown ones."""
    from .._progress import note

    if unknown_users not in _UNKNOWN_USERS:
        raise ValueError(f"unknown_users={unknown_users!r}; choose one of {', '.join(_UNKNOWN_USERS)}")
    if unknown_items not in _UNKNOWN_ITEMS:
        raise ValueError(f"unknown_items={unknown_items!r}; choose one of {', '.join(_UNKNOWN_ITEMS)}")
    u_new = _lookup(like.user_ids, frame[user], "user") < 0
    i_new = _lookup(like.item_ids, frame[item], "item") < 0
    info: dict[str, Any] = {
        "rows": int(len(frame)),
        "unknown_user_rows": int(u_new.sum()),
        "unknown_users": int(frame[user][u_new].nunique()),
        "unknown_item_rows": int(i_new.sum()),
        "unknown_items": int(frame[item][i_new].nunique()),
        "unknown_users_policy": unknown_users,
        "unknown_items_policy": unknown_items,
    }
    if i_new.any() and unknown_items == "error":
        raise ValueError(
            f"{info['unknown_item_rows']} of {len(frame)} rows name {info['unknown_items']} item(s) outside the "
            f"reference catalogue, e.g. {_show(frame[item][i_new].iloc[0])}; pass unknown_items='drop' to leave them out"
        )
    if u_new.any() and unknown_users == "error":
        raise ValueError(
            f"{info['unknown_user_rows']} of {len(frame)} rows belong to {info['unknown_users']} user(s) the "
            f"reference data set does not know, e.g. {_show(frame[user][u_new].iloc[0])}; pass unknown_users='keep' "
            "(cold users) or 'drop'"
        )
    drop = i_new | (u_new if unknown_users == "drop" else np.zeros(len(frame), bool))
    info["dropped_rows"] = int(drop.sum())
    parts = []
    if i_new.any():
        parts.append(f"{info['unknown_item_rows']:,} row(s) name {info['unknown_items']:,} item(s) outside the "
                     "catalogue: dropped (unknown_items='drop')")
    if u_new.any():
        fate = "kept as cold users" if unknown_users == "keep" else "dropped"
        parts.append(f"{info['unknown_user_rows']:,} row(s) belong to {info['unknown_users']:,} new user(s): "
                     f"{fate} (unknown_users={unknown_users!r})")
    if parts:
        note(f"from_frame(like=...): of {len(frame):,} rows, " + "; ".join(parts))
    if drop.all():
        raise ValueError(
            f"every one of the {len(frame)} rows names an item or user unknown to the reference data set; "
            "check that the table and the reference use the same ids"
        )
    return frame[~drop], info


def _user_space(like: Interactions, users: pd.Series) -> np.ndarray:
    """``like``'s user ids followed by the new ones of ``users`` (sorted)."""
    new = pd.unique(users[pd.Index(like.user_ids).get_indexer(users) < 0])
    if len(new) == 0:
        return like.user_ids
    new_sorted = np.asarray(pd.Index(new).sort_values())
    if new_sorted.dtype.kind == like.user_ids.dtype.kind or like.user_ids.dtype == object:
        return np.concatenate([like.user_ids, new_sorted.astype(like.user_ids.dtype, copy=False)])
    return np.concatenate([like.user_ids.astype(object), new_sorted.astype(object)])


def _show(v: Any) -> str:
    """An id as the user wrote it (``777``, not ``np.int64(777)``)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _as_list(ids: Any) -> list[Any]:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def _to_pandas(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    to_pandas = getattr(df, "to_pandas", None)  # polars and pyarrow tables
    if callable(to_pandas):
        return to_pandas()
    raise TypeError(f"from_frame needs a pandas, polars or pyarrow table, got {type(df).__name__}")
