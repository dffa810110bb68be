"""Image input checks and PNG encoding: every bad input is one message naming it and the fix."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReelflowError

__all__ = ["ImageInputError", "as_sketch_batch", "read_sketch", "png_bytes", "decode_png", "PNG_MAGIC"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageInputError(ReelflowError, ValueError):
    """An input image is not an image, or has the wrong size or mode."""


def as_sketch_batch(sketches: Any, size: int, *, what: str = "sketches") -> np.ndarray:
    """Check ``sketches`` is (n, size, size) uint8 (or one (size, size) sketch) and return it as (n, size, size)."""
    x = np.asarray(sketches)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (size, size):
        raise ImageInputError(f"{what} must be grayscale images of {size} x {size} pixels (n, {size}, {size}), "
                              f"got shape {x.shape}; resize them or use a model trained at that size")
    if x.dtype != np.uint8:
        raise ImageInputError(f"{what} must be uint8 (0 ink .. 255 paper), got {x.dtype}")
    return np.ascontiguousarray(x) if x.flags.writeable else x.copy()


def _open(data: bytes, name: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageInputError(f"{name} is not an image PIL can read ({exc.__class__.__name__}); "
                              "give a PNG or JPEG sketch") from None
    return img


def read_sketch(source: str | Path | bytes, size: int, *, name: str | None = None) -> np.ndarray:
    """One sketch (size, size) uint8 from a file path or encoded bytes.

    The image must be ``size`` x ``size`` and grayscale (mode ``L``, or ``1``/``LA``
    line art); an RGB image is refused rather than silently converted, because a
    colour picture is not a sketch.
    """
    if isinstance(source, bytes):
        data, label = source, name or "the image"
    else:
        p = Path(source)
        label = name or str(p)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ImageInputError(f"cannot read sketch {label}: {exc.strerror or exc}") from None
    img = _open(data, label)
    if img.mode not in ("L", "1", "LA", "I;16", "P"):
        raise ImageInputError(f"{label} has mode {img.mode}; a sketch is a grayscale image (mode L): "
                              "convert it, e.g. PIL Image.convert('L')")
    if img.size != (size, size):
        raise ImageInputError(f"{label} is {img.size[0]} x {img.size[1]} pixels; this model takes "
                              f"{size} x {size} sketches: resize it first")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def png_bytes(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """Deterministic PNG bytes of an (H, W) or (H, W, 3) uint8 image; ``text`` goes into tEXt chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for k, v in sorted(text.items()):
            info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", pnginfo=info, compress_level=1)  # fast; sketches and renders still shrink ~3-10x
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of PNG bytes as a uint8 array."""
    return np.asarray(_open(data, "the PNG"))
