"""Shared helpers of the generation tests: tiny models that train in seconds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("PIL")


SIZE = 32


def tiny_model(epochs: int = 2, n: int = 32, seed: int = 0):
    from reelflow.generate import Sketch2Background, make_pairs

    sk, bg = make_pairs(n, seed=seed, size=SIZE)
    return Sketch2Background(size=SIZE, width=8, depth=3, epochs=epochs, batch_size=8, device="cpu",
                             random_state=seed).fit(sk, bg, verbose=False)


def write_sketches(folder, n: int, seed: int = 5, start: int = 0):
    from reelflow.generate import make_pairs, png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    sk, bg = make_pairs(n, seed=seed, size=SIZE)
    for i, s in enumerate(sk):
        (folder / f"sketch-{start + i:03d}.png").write_bytes(png_bytes(s))
    return sk, bg


def flaky_model(epochs: int = 1, n: int = 8):
    """A tiny model whose generate fails on the seed named in the file $REELFLOW_TEST_FAIL_SEED_FILE
    while that file exists: a task killed part-way, reproducibly."""
    from reelflow.generate import make_pairs

    sk, bg = make_pairs(n, seed=0, size=SIZE)
    return FlakySketch2Background(size=SIZE, width=8, depth=3, epochs=epochs, batch_size=8, device="cpu").fit(
        sk, bg, verbose=False)


def _flaky_class():
    import os

    from reelflow.generate import Sketch2Background

    class FlakySketch2Background(Sketch2Background):
        def generate(self, sketches, *, seeds=0, **kw):
            marker = os.environ.get("REELFLOW_TEST_FAIL_SEED_FILE")
            if marker and os.path.exists(marker):
                bad = int(open(marker).read())
                if bad in ([int(seeds)] if isinstance(seeds, int) else list(seeds)):
                    raise RuntimeError(f"injected failure on seed {bad}")
            return super().generate(sketches, seeds=seeds, **kw)

    FlakySketch2Background.__module__ = __name__
    FlakySketch2Background.__qualname__ = "FlakySketch2Background"
    return FlakySketch2Background


FlakySketch2Background = _flaky_class()
