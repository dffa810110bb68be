"""User ids from requests, read strictly against the served model's own id type.

A model trained on integer user ids accepts a JSON integer in the range of its id
dtype, or a string of ASCII digits (``"123"``); ``str.isdigit()`` is not used
because it also accepts ``"²"`` (``int()`` then fails) and ``"١٢٣"`` (read as 123).
Anything else cannot be a user id of that model and is a 422, not a silent
popularity list. A model trained on string ids takes the id as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BadUserId", "IdSpace", "id_space", "parse_user_id"]

# Optional minus, then ASCII digits only; 20 digits already exceed every int64/uint64.
_DECIMAL = re.compile(r"-?[0-9]{1,20}")


class BadUserId(ValueError):
    """A request's user id cannot be a user id of the served model."""


@dataclass(frozen=True)
class IdSpace:
    """What the served model's user ids are: integers of a dtype, or anything else."""

    integer: bool
    dtype: str
    lo: int = 0
    hi: int = 0


def id_space(model: Any) -> IdSpace:
    dtype = getattr(getattr(model, "user_ids_", None), "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return IdSpace(True, str(dtype), int(info.min), int(info.max))
    return IdSpace(False, str(dtype) if dtype is not None else "unknown")


def _show(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def parse_user_id(raw: int | str, space: IdSpace, where: str) -> int | str:
    """The id to look up for ``raw`` (from the field ``where``); raises BadUserId."""
    if not space.integer:
        return raw
    if isinstance(raw, str):
        if not _DECIMAL.fullmatch(raw):
            raise BadUserId(
                f"{where}={_show(raw)} cannot be a user id of this model: its user ids are integers "
                f"({space.dtype}); send a JSON integer or a string of ASCII digits such as \"123\""
            )
        value = int(raw)
    else:
        value = raw
    if not space.lo <= value <= space.hi:
        raise BadUserId(
            f"{where}={_show(raw)} is outside the range of this model's user ids "
            f"({space.dtype}: {space.lo} to {space.hi})"
        )
    return value
