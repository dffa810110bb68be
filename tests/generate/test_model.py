"""Scenes, the Sketch2Background model, metrics and input checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from generate._gen import SIZE, tiny_model

from reelflow.generate import (
    ImageInputError,
    RegionMeanBaseline,
    Sketch2Background,
    evaluate_images,
    make_pairs,
    make_scene,
    png_bytes,
    psnr,
    read_sketch,
    ssim,
)


def test_scenes_are_deterministic_by_seed_and_varied():
    a, b = make_scene(3, SIZE), make_scene(3, SIZE)
    assert np.array_equal(a.background, b.background) and np.array_equal(a.sketch, b.sketch)
    sk, bg = make_pairs(12, seed=1, size=SIZE)
    assert sk.shape == (12, SIZE, SIZE) and bg.shape == (12, SIZE, SIZE, 3)
    assert len({x.tobytes() for x in bg}) == 12
    assert set(np.unique(sk)) <= {0, 255} and (sk == 0).any()  # line art
    moods = {make_scene(s, SIZE).mood for s in range(40)}
    assert len(moods) >= 4
    other, _ = make_pairs(12, seed=2, size=SIZE)
    assert not any(np.array_equal(x, y) for x in sk for y in other)


def test_training_lowers_the_loss():
    sk, bg = make_pairs(48, seed=0, size=SIZE)
    m = Sketch2Background(size=SIZE, width=8, depth=3, epochs=6, batch_size=8, device="cpu").fit(sk, bg, verbose=False)
    losses = [h["loss"] for h in m.history_]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.8


def test_generation_is_deterministic_by_seed():
    m = tiny_model()
    sk, _ = make_pairs(4, seed=9, size=SIZE)
    a = m.generate(sk, seeds=[1, 2, 3, 4])
    b = m.generate(sk, seeds=[1, 2, 3, 4], batch_size=1)  # batching changes nothing
    assert a.dtype == np.uint8 and a.shape == (4, SIZE, SIZE, 3)
    assert np.array_equal(a, b)
    c = m.generate(sk, seeds=[5, 6, 7, 8])
    assert not np.array_equal(a, c)


def test_model_pickles_as_plain_arrays_and_round_trips():
    m = tiny_model()
    data = pickle.dumps(m)
    assert b"torch" not in data  # weights as numpy arrays: loading never unpickles torch objects
    m2 = pickle.loads(data)
    sk, _ = make_pairs(2, seed=4, size=SIZE)
    assert np.array_equal(m.generate(sk, seeds=0), m2.generate(sk, seeds=0))


def test_unfitted_and_bad_inputs_are_clear_errors(tmp_path):
    from reelflow.errors import NotFittedError

    with pytest.raises(NotFittedError, match="fit"):
        Sketch2Background(size=SIZE).generate(np.zeros((1, SIZE, SIZE), np.uint8))
    m = tiny_model(epochs=1, n=8)
    with pytest.raises(ImageInputError, match="32 x 32"):
        m.generate(np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(ImageInputError, match="uint8"):
        m.generate(np.zeros((1, SIZE, SIZE), np.float32))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png is not an image"):
        read_sketch(bad, SIZE)
    rgb = tmp_path / "rgb.png"
    rgb.write_bytes(png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8)))
    with pytest.raises(ImageInputError, match="mode RGB"):
        read_sketch(rgb, SIZE)
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(np.zeros((16, 16), np.uint8)))
    with pytest.raises(ImageInputError, match="16 x 16 pixels"):
        read_sketch(small, SIZE)
    ok = tmp_path / "ok.png"
    sk = make_scene(1, SIZE).sketch
    ok.write_bytes(png_bytes(sk))
    assert np.array_equal(read_sketch(ok, SIZE), sk)


def test_metrics_and_the_baseline():
    sk, bg = make_pairs(24, seed=0, size=SIZE)
    tsk, tbg = make_pairs(8, seed=1, size=SIZE)
    assert psnr(tbg, tbg) > 90 and ssim(tbg, tbg) == pytest.approx(1.0)
    base = RegionMeanBaseline().fit(sk, bg).generate(tsk)
    m = evaluate_images(base, tbg)
    assert 5 < m["psnr"] < 40 and 0 < m["ssim"] < 1 and m["kid"] > 0
    noise = np.random.default_rng(0).integers(0, 256, tbg.shape, dtype=np.uint8)
    worse = evaluate_images(noise, tbg)
    assert worse["psnr"] < m["psnr"] and worse["ssim"] < m["ssim"] and worse["kid"] > m["kid"]
