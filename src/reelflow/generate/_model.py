"""The sketch-to-background model: a pix2pix-style conditional U-Net trained here.

The generator is pix2pix's U-Net (Isola et al. 2017): strided-conv encoder,
transposed-conv decoder, skip connections at every scale, so line positions
reach the output at full resolution. Its input is the sketch, two coordinate
channels (where in the frame a pixel is: sky above, water below) and one noise
channel drawn from the request's seed (pix2pix draws its noise as dropout; an
explicit channel makes a seed reproduce an image exactly). It is trained with an
L1 loss, which is what PSNR/SSIM reward and what converges within minutes on two
CPU cores; pix2pix's adversarial term sharpens texture but needs far longer.

The model follows the scikit-learn estimator contract (keyword-only
``__init__``, ``fit`` returns ``self``, learned state ends in ``_``) and pickles
as plain arrays, so it is stored and registered like any reelflow model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._progress import progress
from ..errors import NotFittedError
from ..estimator import BaseEstimator
from ._images import as_sketch_batch

__all__ = ["Sketch2Background", "pick_device"]


def pick_device(device: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when a GPU is visible to torch, else ``"cpu"``; otherwise ``device``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _build(width: int, depth: int) -> Any:
    import torch
    from torch import nn

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [min(width * 2 ** i, width * 8) for i in range(depth)]
            self.down = nn.ModuleList()
            cin = 4  # sketch, y, x, noise
            for i, c in enumerate(chans):
                layers: list[nn.Module] = [nn.Conv2d(cin, c, 4, 2, 1)]
                if i > 0:
                    layers.append(nn.GroupNorm(min(8, c), c))
                layers.append(nn.LeakyReLU(0.2))
                self.down.append(nn.Sequential(*layers))
                cin = c
            self.up = nn.ModuleList()
            for i in reversed(range(depth)):
                cout = chans[i - 1] if i > 0 else width
                cin_up = chans[i] if i == depth - 1 else chans[i] * 2
                self.up.append(nn.Sequential(nn.ConvTranspose2d(cin_up, cout, 4, 2, 1),
                                             nn.GroupNorm(min(8, cout), cout), nn.ReLU()))
            self.out = nn.Conv2d(width + 4, 3, 3, 1, 1)

        def forward(self, x: Any) -> Any:
            skips = []
            h = x
            for d in self.down:
                h = d(h)
                skips.append(h)
            for i, u in enumerate(self.up):
                if i > 0:
                    h = torch.cat([h, skips[-1 - i]], 1)
                h = u(h)
            return torch.sigmoid(self.out(torch.cat([h, x], 1)))

    return UNet()


class Sketch2Background(BaseEstimator):
    """Turns line-art sketches (H, W) uint8 into RGB backgrounds (H, W, 3) uint8.

    Parameters
    ----------
    size : int
        Image side in pixels (a multiple of ``2 ** depth``); inputs of another
        size or mode are refused with a message naming them.
    width, depth : int
        Channels of the first U-Net level (doubling per level, capped at 8x) and
        number of levels.
    epochs, batch_size, learning_rate : training schedule (Adam).
    noise : float
        Scale of the seeded noise channel.
    time_budget : float or None
        Stop after the epoch that passes this many seconds.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    random_state : int
        Seed of the initial weights and the batch order.
    """

    def __init__(self, *, size: int = 64, width: int = 32, depth: int = 4, epochs: int = 20, batch_size: int = 16,
                 learning_rate: float = 2e-3, noise: float = 0.1, time_budget: float | None = None,
                 device: str = "auto", random_state: int = 0) -> None:
        self.size = size
        self.width = width
        self.depth = depth
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.noise = noise
        self.time_budget = time_budget
        self.device = device
        self.random_state = random_state

    # -- training ---------------------------------------------------------------------------
    def fit(self, sketches: Any, backgrounds: Any, *,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None,
            verbose: bool | None = None) -> Sketch2Background:
        """Train on (n, H, W) sketches and (n, H, W, 3) backgrounds; returns ``self``.

        ``on_epoch(epoch, {"loss": ...})`` is called after every epoch (the training
        flow logs it as a metric and checkpoints there). A fitted model continues
        from its weights (fine-tuning on new approved pairs).
        """
        import torch

        if self.size % (2 ** self.depth):
            raise ValueError(f"size={self.size} must be a multiple of 2**depth={2 ** self.depth}")
        x = as_sketch_batch(sketches, self.size, what="sketches")
        y = np.asarray(backgrounds)
        if y.shape != (len(x), self.size, self.size, 3) or y.dtype != np.uint8:
            raise ValueError(f"backgrounds must be uint8 of shape ({len(x)}, {self.size}, {self.size}, 3), "
                             f"got {y.dtype} {y.shape}")
        if len(x) == 0:
            raise ValueError("fit needs at least one (sketch, background) pair")
        dev = pick_device(self.device)
        torch.manual_seed(self.random_state)
        if not hasattr(self, "net_"):
            self.net_ = _build(self.width, self.depth)
            self.history_: list[dict[str, float]] = []
        net = self.net_.to(dev).train()
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, betas=(0.5, 0.999))
        xt = torch.from_numpy(x).to(dev)
        yt = torch.from_numpy(y).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
        gen = torch.Generator().manual_seed(self.random_state)
        n = len(xt)
        start = time.perf_counter()
        with progress(total=self.epochs, desc="Sketch2Background fit", unit="epoch", verbose=verbose) as bar:
            for epoch in range(self.epochs):
                order = torch.randperm(n, generator=gen).to(dev)
                total = 0.0
                for i in range(0, n, self.batch_size):
                    idx = order[i:i + self.batch_size]
                    flip = torch.rand(1, generator=gen).item() < 0.5  # mirrored scenes are scenes too
                    xb, yb = xt[idx], yt[idx]
                    if flip:
                        xb, yb = xb.flip(-1), yb.flip(-1)
                    inp = self._inputs(xb, torch.randn(len(idx), 1, self.size, self.size, generator=gen).to(dev))
                    loss = torch.nn.functional.l1_loss(net(inp), yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                row = {"loss": total / n, "seconds": time.perf_counter() - start}
                self.history_.append(row)
                if on_epoch is not None:
                    on_epoch(len(self.history_) - 1, row)
                bar.update()
                if self.time_budget is not None and row["seconds"] >= self.time_budget:
                    break
        self.net_ = net.cpu().eval()
        self.n_trained_ = getattr(self, "n_trained_", 0) + n
        return self

    def _inputs(self, sketch: Any, noise: Any) -> Any:
        import torch

        b = sketch.shape[0]
        s = sketch.float().div(127.5).sub(1.0).unsqueeze(1)
        ramp = torch.linspace(-1.0, 1.0, self.size, device=s.device)
        yy = ramp.view(1, 1, -1, 1).expand(b, 1, self.size, self.size)
        xx = ramp.view(1, 1, 1, -1).expand(b, 1, self.size, self.size)
        return torch.cat([s, yy, xx, noise * self.noise], 1)

    # -- inference --------------------------------------------------------------------------
    def generate(self, sketches: Any, *, seeds: Sequence[int] | int = 0, batch_size: int = 32,
                 device: str | None = None) -> np.ndarray:
        """Backgrounds (n, H, W, 3) uint8 for (n, H, W) uint8 sketches; image ``i`` draws its
        noise from ``seeds[i]`` (an int: ``seeds + i``), so a seed reproduces an image exactly."""
        import torch

        if not hasattr(self, "net_"):
            raise NotFittedError("this Sketch2Background is not fitted yet; call fit(sketches, backgrounds) first")
        x = as_sketch_batch(sketches, self.size, what="sketches")
        seed_list = [int(seeds) + i for i in range(len(x))] if isinstance(seeds, (int, np.integer)) \
            else [int(s) for s in seeds]
        if len(seed_list) != len(x):
            raise ValueError(f"got {len(seed_list)} seeds for {len(x)} sketches; give one seed per sketch")
        dev = pick_device(device or self.device)
        net = self.net_.to(dev).eval()
        out = np.empty((len(x), self.size, self.size, 3), np.uint8)
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i:i + batch_size]).to(dev)
                noise = torch.stack([torch.randn(1, self.size, self.size, generator=torch.Generator().manual_seed(s))
                                     for s in seed_list[i:i + batch_size]]).to(dev)
                img = net(self._inputs(xb, noise))
                out[i:i + len(xb)] = img.mul(255.0).add_(0.5).clamp_(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        """What lineage records about this model."""
        return {"kind": "sketch2background", "architecture": f"pix2pix U-Net width={self.width} depth={self.depth}",
                "size": self.size, "licence": "trained by reelflow on procedural scenes (no third-party data)"}

    # -- persistence: plain arrays, no torch objects in the pickle ----------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        net = state.pop("net_", None)
        if net is not None:
            state["weights_"] = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("weights_", None)
        self.__dict__.update(state)
        if weights is not None:
            import torch

            net = _build(self.width, self.depth)
            net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
            self.net_ = net.eval()
