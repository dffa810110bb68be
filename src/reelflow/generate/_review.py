"""Review of generated outputs: list, show, approve, reject; every decision a row with who and when."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ReelflowError

__all__ = ["list_outputs", "get_output", "approve", "reject"]


def _tables(store: Any | None) -> Any:
    from ..store import get_store
    from ..store._review_db import review_tables

    st = store if store is not None else get_store(create=False)
    return st, review_tables(st.metadata)


def list_outputs(*, status: str | None = None, model: str | None = None, limit: int | None = 50,
                 store: Any | None = None) -> list[dict[str, Any]]:
    """Generated outputs, newest first, each with ``status`` (pending / approved / rejected)."""
    if status not in (None, "pending", "approved", "rejected"):
        raise ReelflowError(f"status {status!r}: use pending, approved or rejected")
    return _tables(store)[1].outputs(status=status, model=model, limit=limit)


def get_output(output_id: int, *, store: Any | None = None) -> dict[str, Any]:
    """One output: blob key, lineage, status and every decision on it."""
    return _tables(store)[1].output(int(output_id))


def approve(output_id: int, *, reason: str | None = None, user: str | None = None, image: Any = None,
            store: Any | None = None) -> dict[str, Any]:
    """Approve an output (it joins the next training set); returns the output with its new status.

    ``image`` (a path, PNG bytes or an (H, W, 3) uint8 array) is an artist's retouched
    version: it is stored beside the output and used in its place for training and arms.
    It must have the output's size and be RGB.
    """
    st, t = _tables(store)
    image_key = None
    if image is not None:
        image_key = st.save(_retouched_png(image, t.output(int(output_id)), st)).key
    t.decide(int(output_id), "approved", user=user or st.config.user, at=time.time(), reason=reason,
             image_key=image_key)
    return t.output(int(output_id))


def _retouched_png(image: Any, row: dict[str, Any], store: Any) -> bytes:
    from pathlib import Path

    import numpy as np

    from ._images import ImageInputError, decode_png, png_bytes

    if isinstance(image, (str, Path)):
        try:
            image = Path(image).read_bytes()
        except OSError as exc:
            raise ImageInputError(f"cannot read the retouched image {image}: {exc.strerror or exc}") from None
    pixels = decode_png(image) if isinstance(image, bytes) else np.asarray(image)
    original = decode_png(store.load(row["key"], what=f"generated output {row['id']}"))
    if pixels.dtype != np.uint8 or pixels.shape != original.shape:
        raise ImageInputError(f"the retouched image of output {row['id']} is {pixels.dtype} {pixels.shape}; it must "
                              f"be an RGB image of the output's size {original.shape[1]} x {original.shape[0]}")
    return png_bytes(pixels)


def reject(output_id: int, *, reason: str, user: str | None = None, store: Any | None = None) -> dict[str, Any]:
    """Reject an output; ``reason`` is required (what was wrong, for the artist and the next model)."""
    if not reason or not reason.strip():
        raise ReelflowError(f"rejecting output {output_id} needs a reason: --reason 'what is wrong'")
    st, t = _tables(store)
    t.decide(int(output_id), "rejected", user=user or st.config.user, at=time.time(), reason=reason.strip())
    return t.output(int(output_id))
