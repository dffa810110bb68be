"""Training data from production feedback: everything ``reelflow serve`` logged up to now."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotFoundError
from ._interactions import Interactions

__all__ = ["from_feedback", "read_feedback"]


def read_feedback(model: str, *, until: float | None = None, events: Sequence[str] | None = None,
                  home: str | Path | None = None) -> Any:
    """The feedback rows of ``model`` logged up to ``until`` (default: now) as a pandas DataFrame
    (``request_id, user_id, item_id, event, value, at``), oldest first.

    They are read from where ``reelflow serve`` writes them: the blob store when
    ``REELFLOW_STORE_URL`` is an object store (``s3://...``), else the home (or ``home``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from ..serving._feedback import feedback_location

    fs, base = feedback_location(model, None if home is None else Path(home))
    pattern = "date=*/hour=*/part-*.parquet"
    if fs is None:
        where = str(Path(base) / "feedback")
        parts: list[Any] = sorted(Path(where).glob(pattern))
    else:
        where = fs.unstrip_protocol(f"{base}/feedback")
        parts = sorted(fs.glob(f"{base}/feedback/{pattern}"))
    if not parts:
        raise NotFoundError(f"no feedback for model {model!r} under {where}; serve it with `reelflow serve "
                            f"{model}@ALIAS` and POST /v1/feedback first")
    tables = [pq.read_table(p) if fs is None else pq.read_table(p, filesystem=fs) for p in parts]
    df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    until = time.time() if until is None else until
    df = df[df["at"] <= until]
    if events is not None:
        df = df[df["event"].isin(list(events))]
    return df.sort_values("at", kind="stable").reset_index(drop=True)


def _ids(col: Any) -> Any:
    s = col.astype(str)
    return s.astype("int64") if len(s) and s.str.fullmatch(r"-?\d{1,18}").all() else s


def from_feedback(
    model: str,
    *,
    events: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    until: float | None = None,
    home: str | Path | None = None,
    like: Interactions | None = None,
) -> Interactions:
    """``Interactions`` from the feedback ``reelflow serve`` logged for ``model`` up to ``until`` (now).

    Each (user, item) pair's weight is the sum of ``value * weights[event]`` over its
    feedback rows (``weights`` default 1 for every event; ``events`` keeps only those).
    Ids that are all integers come back as integers, like the ids the model was served with.

    Examples
    --------
    >>> from reelflow.recs.datasets import from_feedback           # doctest: +SKIP
    >>> data = from_feedback("recs", weights={"play": 1.0, "click": 0.3})
    """
    df = read_feedback(model, until=until, events=events, home=home)
    w = df["event"].map(lambda e: 1.0 if weights is None else float(weights.get(e, 0.0)))
    df = df.assign(user_id=_ids(df["user_id"]), item_id=_ids(df["item_id"]), weight=df["value"] * w)
    df = df[df["weight"] != 0]
    if df.empty:
        raise NotFoundError(f"feedback of model {model!r} has no rows with a non-zero weight for events "
                            f"{sorted(weights) if weights else list(events or [])}")
    return Interactions.from_frame(df[["user_id", "item_id", "weight"]], weight="weight", duplicates="sum",
                                   like=like)
