"""Image quality against ground truth: PSNR, SSIM, a KID-style distance, and the naive baseline.

- ``psnr``: peak signal-to-noise ratio in dB over 8-bit RGB (higher is better).
- ``ssim``: structural similarity (Wang et al. 2004) with an 11-pixel Gaussian
  window on luma, the standard constants (higher is better, 1 is identical).
- ``kid``: the Kernel Inception Distance's estimator (Bińkowski et al. 2018: an
  unbiased MMD² with the cubic polynomial kernel) computed on features of a
  **fixed, randomly initialised convolutional network** (seeded, three conv +
  ReLU + pooling levels, pooled to 192 numbers), because Inception weights are
  not available offline. Random-conv features are a known stand-in for learned
  ones in distribution tests (they respond to colour, edges and texture
  statistics), but the numbers are *not* comparable with published KID/FID
  values; compare models with each other only. Lower is better, 0 is the same
  distribution.
- ``region_mean_baseline``: the naive model to beat. It colours each closed
  region of a sketch with the mean colour that the training backgrounds have
  over that region's pixels, i.e. what a flat fill from average colours gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["psnr", "ssim", "kid", "evaluate_images", "RegionMeanBaseline"]


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-image PSNR (dB) of uint8 images (n, H, W, 3)."""
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} differ in shape")
    mse = ((p - t) ** 2).reshape(len(p), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))


def _gauss(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    from scipy.ndimage import convolve1d

    out = convolve1d(img, g, axis=-1, mode="reflect")
    return convolve1d(out, g, axis=-2, mode="reflect")


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM on luma (BT.601) of uint8 images (n, H, W, 3)."""
    w = np.array([0.299, 0.587, 0.114])
    x = np.asarray(pred, np.float64) @ w
    y = np.asarray(truth, np.float64) @ w
    g = _gauss()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def _features(images: np.ndarray, seed: int = 1234) -> np.ndarray:
    """Fixed random-conv features (n, 192): 3 levels of 3x3 conv + ReLU + 2x2 mean pooling,
    then mean and standard deviation of each channel over the image."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)
    feats = []
    cin = 3
    with torch.inference_mode():
        for cout in (32, 32, 32):
            wt = torch.randn(cout, cin, 3, 3, generator=gen) / np.sqrt(cin * 9)
            x = torch.relu(torch.nn.functional.conv2d(x, wt, padding=1))
            feats += [x.mean((2, 3)), x.std((2, 3))]
            x = torch.nn.functional.avg_pool2d(x, 2)
            cin = cout
    return torch.cat(feats, 1).numpy().astype(np.float64)


def kid(pred: np.ndarray, truth: np.ndarray) -> float:
    """Unbiased MMD² (cubic polynomial kernel) between random-conv features of two image sets."""
    fx, fy = _features(pred), _features(truth)
    d = fx.shape[1]
    kxx = (fx @ fx.T / d + 1) ** 3
    kyy = (fy @ fy.T / d + 1) ** 3
    kxy = (fx @ fy.T / d + 1) ** 3
    m, n = len(fx), len(fy)
    if m < 2 or n < 2:
        raise ValueError("kid needs at least two images in each set")
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean()) * 1000.0


def evaluate_images(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``{"psnr": dB, "ssim": ..., "kid": x1000}`` of generated images against ground truth."""
    return {"psnr": psnr(pred, truth), "ssim": ssim(pred, truth), "kid": kid(pred, truth)}


class RegionMeanBaseline:
    """Flat-fill each closed region of the sketch with the training set's mean colour there.

    ``fit`` keeps the per-pixel mean training background; ``generate`` labels the
    sketch's regions (4-connected paper pixels; ink pixels take their left/upper
    neighbour's region) and paints each with that mean averaged over the region.
    """

    def fit(self, sketches: Any, backgrounds: Any) -> RegionMeanBaseline:
        self.mean_ = np.asarray(backgrounds, np.float64).mean(axis=0)
        return self

    def generate(self, sketches: Any, **_: Any) -> np.ndarray:
        from scipy.ndimage import label

        x = np.asarray(sketches)
        out = np.empty(x.shape + (3,), np.uint8)
        for i, sk in enumerate(x):
            labels, n = label(sk > 127)
            flat = labels.ravel()
            counts = np.bincount(flat, minlength=n + 1).astype(np.float64)
            img = np.empty(self.mean_.shape)
            for c in range(3):
                sums = np.bincount(flat, weights=self.mean_[..., c].ravel(), minlength=n + 1)
                means = sums / np.maximum(counts, 1)
                means[0] = 0.0
                img[..., c] = means[labels]
            ink = labels == 0  # lines: the mean colour under them
            img[ink] = self.mean_[ink]
            out[i] = (img + 0.5).clip(0, 255).astype(np.uint8)
        return out
