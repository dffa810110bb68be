"""Procedural background scenes and their line-art sketches, deterministic by seed.

Each scene is painted layer by layer (sky, sun or moon, clouds, hills, water,
trees, buildings) under one of several lighting/palette moods; every layer also
writes a region label, and the sketch is the label map's boundaries drawn as dark
lines on paper, the way a layout artist draws a background before it is painted.
So any number of (sketch, background) pairs exist offline, and the data set is a
pure function of (seed, size): nothing to download, nothing to licence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["make_scene", "make_pairs", "Scene", "MOODS"]

# mood -> (sky top, sky horizon, light tint, ambient brightness)
MOODS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float], float]] = {
    "day": ((0.25, 0.50, 0.90), (0.70, 0.85, 1.00), (1.00, 1.00, 0.95), 1.00),
    "sunset": ((0.35, 0.25, 0.55), (1.00, 0.60, 0.30), (1.00, 0.75, 0.55), 0.85),
    "dusk": ((0.10, 0.12, 0.35), (0.55, 0.40, 0.60), (0.75, 0.70, 0.90), 0.60),
    "night": ((0.02, 0.03, 0.12), (0.10, 0.15, 0.30), (0.55, 0.60, 0.85), 0.40),
    "overcast": ((0.55, 0.58, 0.62), (0.78, 0.80, 0.82), (0.90, 0.92, 0.95), 0.80),
}
_MOOD_NAMES = tuple(MOODS)


@dataclass(frozen=True)
class Scene:
    """One generated scene: ``sketch`` (H, W) uint8 line art (0 ink, 255 paper),
    ``background`` (H, W, 3) uint8 RGB, ``labels`` (H, W) int region ids, and the
    ``mood`` it was lit with."""

    sketch: np.ndarray
    background: np.ndarray
    labels: np.ndarray
    mood: str
    seed: int


class _Canvas:
    def __init__(self, size: int, rng: np.random.Generator, mood: str) -> None:
        self.size = size
        self.rng = rng
        self.mood = mood
        self.rgb = np.zeros((size, size, 3))
        self.labels = np.zeros((size, size), np.int32)
        self.next_label = 1
        yy, xx = np.mgrid[0:size, 0:size]
        self.y = yy / (size - 1)  # 0 top .. 1 bottom
        self.x = xx / (size - 1)
        _, _, tint, ambient = MOODS[mood]
        self.light = np.asarray(tint) * ambient

    def paint(self, mask: np.ndarray, colour: np.ndarray) -> None:
        """Fill ``mask`` with ``colour`` (an RGB triple or an (H, W, 3) field) as a new region."""
        if not mask.any():
            return
        field = np.broadcast_to(colour, self.rgb.shape)
        self.rgb[mask] = field[mask]
        self.labels[mask] = self.next_label
        self.next_label += 1

    def lit(self, rgb: tuple[float, float, float] | np.ndarray, shade: float = 1.0) -> np.ndarray:
        return np.clip(np.asarray(rgb) * self.light * shade, 0.0, 1.0)


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(rgb) + rng.uniform(-amount, amount, 3), 0.0, 1.0)


def _sky(c: _Canvas) -> float:
    top, horizon, _, _ = MOODS[c.mood]
    horizon_y = c.rng.uniform(0.40, 0.62)
    t = np.clip(c.y / horizon_y, 0.0, 1.0)[..., None]
    grad = np.asarray(top) * (1 - t) + np.asarray(horizon) * t
    c.paint(np.ones_like(c.labels, bool), grad)
    # the sun (day, sunset, overcast) or the moon (dusk, night)
    cx, cy, r = c.rng.uniform(0.15, 0.85), c.rng.uniform(0.08, horizon_y * 0.6), c.rng.uniform(0.05, 0.10)
    disc = (c.x - cx) ** 2 + (c.y - cy) ** 2 < r * r
    body = (1.0, 0.92, 0.55) if c.mood in ("day", "sunset") else (0.92, 0.92, 0.85)
    if c.mood != "overcast":
        c.paint(disc, np.asarray(body))
    for _ in range(int(c.rng.integers(0, 4))):  # clouds: flattened ellipses
        ex, ey = c.rng.uniform(0.0, 1.0), c.rng.uniform(0.05, horizon_y * 0.7)
        ax, ay = c.rng.uniform(0.08, 0.22), c.rng.uniform(0.025, 0.06)
        cloud = ((c.x - ex) / ax) ** 2 + ((c.y - ey) / ay) ** 2 < 1.0
        c.paint(cloud, c.lit((0.95, 0.95, 0.97), 0.95))
    return horizon_y


def _hills(c: _Canvas, horizon_y: float) -> np.ndarray:
    """Paint 1-3 ridge layers, far to near; returns each column's ground line (y)."""
    ground = np.full(c.size, 2.0)
    n = int(c.rng.integers(1, 4))
    base_greens = [(0.45, 0.60, 0.45), (0.30, 0.55, 0.25), (0.20, 0.42, 0.15)]
    xs = c.x[0]
    for i in range(n):
        level = horizon_y + (i + 0.3) * (1.0 - horizon_y) / (n + 1.5)
        amp = c.rng.uniform(0.03, 0.12)
        f1, f2 = c.rng.uniform(1.0, 3.0), c.rng.uniform(3.0, 6.0)
        p1, p2 = c.rng.uniform(0, 2 * np.pi, 2)
        ridge = level - amp * (np.sin(2 * np.pi * f1 * xs + p1) * 0.7 + np.sin(2 * np.pi * f2 * xs + p2) * 0.3)
        mask = c.y >= ridge[None, :]
        green = _jitter(c.rng, base_greens[min(i + 3 - n, 2)], 0.06)
        shade = (0.75 + 0.25 * (1.0 - (c.y - ridge[None, :]).clip(0, 0.5) * 2))[..., None]  # lit crest
        c.paint(mask, c.lit(green) * shade)
        ground = np.minimum(ground, ridge)
    return ground


def _water(c: _Canvas) -> float | None:
    if c.rng.random() < 0.45:
        return None
    top = c.rng.uniform(0.72, 0.85)
    mask = c.y >= top
    horizon = np.asarray(MOODS[c.mood][1])
    t = ((c.y - top) / (1.0 - top + 1e-9)).clip(0, 1)[..., None]
    colour = (0.55 * horizon + 0.45 * np.asarray((0.10, 0.30, 0.55))) * (1 - 0.4 * t)
    c.paint(mask, c.lit(colour, 1.0))
    return top


def _trees(c: _Canvas, ground: np.ndarray, water_top: float | None) -> None:
    for _ in range(int(c.rng.integers(0, 6))):
        col = int(c.rng.integers(2, c.size - 2))
        base = float(ground[col]) + c.rng.uniform(0.02, 0.10)
        if base > 0.98 or (water_top is not None and base > water_top):
            continue
        h, w = c.rng.uniform(0.10, 0.22), c.rng.uniform(0.04, 0.08)
        cx = c.x[0, col]
        trunk = (np.abs(c.x - cx) < w * 0.18) & (c.y > base - h * 0.35) & (c.y <= base)
        c.paint(trunk, c.lit((0.35, 0.22, 0.12)))
        if c.rng.random() < 0.5:  # conifer: a triangle
            crown = (c.y > base - h) & (c.y < base - h * 0.25) & (
                np.abs(c.x - cx) < w * (c.y - (base - h)) / (h * 0.75))
        else:  # broadleaf: a disc
            crown = (c.x - cx) ** 2 + (c.y - (base - h * 0.6)) ** 2 < (w * 0.9) ** 2
        c.paint(crown, c.lit(_jitter(c.rng, (0.15, 0.40, 0.12), 0.05)))


def _buildings(c: _Canvas, ground: np.ndarray) -> None:
    if c.rng.random() < 0.4:
        return
    night = c.mood in ("dusk", "night")
    for _ in range(int(c.rng.integers(1, 4))):
        x0 = c.rng.uniform(0.0, 0.85)
        w = c.rng.uniform(0.08, 0.18)
        cols = slice(int(x0 * (c.size - 1)), int(min(1.0, x0 + w) * (c.size - 1)) + 1)
        base = float(np.max(ground[cols])) + 0.02
        h = c.rng.uniform(0.12, 0.30)
        body = (c.x >= x0) & (c.x <= x0 + w) & (c.y >= base - h) & (c.y <= min(base, 1.0))
        c.paint(body, c.lit(_jitter(c.rng, (0.70, 0.62, 0.55), 0.12)))
        roof = (c.y < base - h) & (c.y > base - h - w * 0.5) & (
            np.abs(c.x - (x0 + w / 2)) < (c.y - (base - h - w * 0.5)))
        c.paint(roof, c.lit((0.55, 0.20, 0.15)))
        win = body & ((c.x - x0) % (w / 3) > w / 9) & ((c.y - (base - h)) % (h / 4) > h / 10) & (
            c.y < base - h / 8)
        c.paint(win, np.asarray((1.0, 0.85, 0.40)) if night else c.lit((0.30, 0.40, 0.55)))


def _sketch(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return np.where(edge, 0, 255).astype(np.uint8)


def make_scene(seed: int, size: int = 64) -> Scene:
    """The scene of ``seed`` at ``size`` x ``size`` pixels (same seed, same scene).

    Examples
    --------
    >>> s = make_scene(7, size=32)
    >>> s.sketch.shape, s.background.shape, s.background.dtype.name
    ((32, 32), (32, 32, 3), 'uint8')
    """
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size={size!r}: a scene is at least 16 x 16 pixels")
    rng = np.random.default_rng([int(seed), int(size)])
    mood = _MOOD_NAMES[int(rng.integers(len(_MOOD_NAMES)))]
    c = _Canvas(int(size), rng, mood)
    horizon_y = _sky(c)
    ground = _hills(c, horizon_y)
    water_top = _water(c)
    _trees(c, ground, water_top)
    _buildings(c, ground)
    background = (c.rgb * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return Scene(_sketch(c.labels), background, c.labels, mood, int(seed))


def make_pairs(n: int, *, seed: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (sketch, background) pairs: arrays (n, H, W) uint8 and (n, H, W, 3) uint8.

    Scene ``i`` uses seed ``seed * 1_000_003 + i``, so disjoint ``seed`` values give
    disjoint training and held-out sets.
    """
    if n < 0:
        raise ValueError(f"n={n}: the number of pairs cannot be negative")
    scenes = [make_scene(seed * 1_000_003 + i, size) for i in range(n)]
    sketches = np.stack([s.sketch for s in scenes]) if scenes else np.zeros((0, size, size), np.uint8)
    backs = np.stack([s.background for s in scenes]) if scenes else np.zeros((0, size, size, 3), np.uint8)
    return sketches, backs
