"""Contact sheets: rows of (sketch | generated | ground truth) so a person can judge a model at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["contact_sheet"]


def _rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, np.uint8)
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]


def contact_sheet(columns: Sequence[Sequence[np.ndarray]], path: str | Path, *, scale: int = 2,
                  per_row: int = 4, gap: int = 4) -> Path:
    """Write a PNG grid: each entry of ``columns`` is one column kind (e.g. sketches, generated,
    ground truth) of equally many images; sample ``i`` shows its column images side by side, and
    ``per_row`` samples share a row. Returns the path."""
    from PIL import Image

    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError("every column of a contact sheet needs the same number of images")
    h, w = np.asarray(columns[0][0]).shape[:2]
    k = len(columns)
    cell_w = k * w + gap * 2
    rows = (n + per_row - 1) // per_row
    sheet = np.full((rows * (h + gap) + gap, per_row * cell_w + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, per_row)
        y, x = gap + r * (h + gap), gap + c * cell_w
        for j, col in enumerate(columns):
            sheet[y:y + h, x + j * w:x + (j + 1) * w] = _rgb(col[i])
    img = Image.fromarray(sheet)
    if scale > 1:
        img = img.resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.Resampling.NEAREST)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img.save(p)
    return p
