"""Generation throughput: reelflow's job core vs a plain torch loop doing the same work.

    python benchmarks/generate/bench_throughput.py                # 256 images, 64 px, batches of 16

Both sides generate the same images (same model, seeds, batches) and write each
as a PNG: the plain loop to files in a folder, reelflow's ``run_generation`` into
a fresh store (content-addressed blobs, a request key and a lineage row per
image, progress). Rounds alternate between the two; the figures are the ratios of
the medians and of the best rounds, in wall-clock and in CPU time (CPU time is what
the platform adds, whatever else the machine runs) (goal: reelflow >= 0.95x the plain loop's images/s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch

    from reelflow.config import load_config
    from reelflow.generate import (
        GenerationItem,
        GenerationSettings,
        Sketch2Background,
        make_pairs,
        png_bytes,
        run_generation,
        set_threads,
    )
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import Store

    threads = set_threads(args.threads or None)
    sk, bg = make_pairs(max(args.n, 16), seed=0, size=args.size)
    model = Sketch2Background(size=args.size, width=args.width, epochs=1, device="cpu").fit(sk[:16], bg[:16],
                                                                                          verbose=False)
    sketches = sk[:args.n]
    seeds = list(range(args.n))

    def plain(folder: Path) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        net = model.net_
        with torch.inference_mode():
            for i in range(0, args.n, args.batch_size):
                xb = torch.from_numpy(sketches[i:i + args.batch_size])
                noise = torch.stack([torch.randn(1, args.size, args.size, generator=torch.Generator().manual_seed(s))
                                     for s in seeds[i:i + args.batch_size]])
                out = net(model._inputs(xb, noise)).mul(255.0).add_(0.5).clamp_(0, 255).byte()
                for j, img in enumerate(out.permute(0, 2, 3, 1).numpy()):
                    (folder / f"{i + j}.png").write_bytes(png_bytes(img))
        return args.n / (time.perf_counter() - t), args.n / (time.process_time() - c)

    def platform(home: Path) -> tuple[float, float]:
        os.environ["REELFLOW_HOME"] = str(home)
        store = Store(load_config())
        store.preflight()  # a job runs against an existing store: creating one is not part of the figure
        from reelflow.store._review_db import review_tables

        review_tables(store.metadata)
        items = [GenerationItem(name=str(i), seed=s, sketch=x) for i, (s, x) in enumerate(zip(seeds, sketches))]
        resolved = ResolvedModel(model, "bench", "registry", "bench/1", "test")
        t, c = time.perf_counter(), time.process_time()
        rows = run_generation(resolved, items, GenerationSettings(batch_size=args.batch_size, device="cpu"),
                              store=store, verbose=False)
        rate = args.n / (time.perf_counter() - t), args.n / (time.process_time() - c)
        assert len(rows) == args.n and not any(r["reused"] for r in rows)
        store.metadata.close()
        return rate

    plain_rates, platform_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            folder = Path(tmp) / f"plain-{r}"
            folder.mkdir()
            plain_rates.append(plain(folder))
            platform_rates.append(platform(Path(tmp) / f"home-{r}"))
            print(f"round {r}: plain {plain_rates[-1][0]:.1f} images/s ({plain_rates[-1][1]:.1f} per CPU-second), "
                  f"reelflow {platform_rates[-1][0]:.1f} images/s ({platform_rates[-1][1]:.1f} per CPU-second)",
                  flush=True)
    print(f"\n{args.n} images of {args.size}px, batches of {args.batch_size}, {threads} torch threads, CPU")
    for what, j in (("wall clock", 0), ("CPU time (insensitive to other processes' load)", 1)):
        p = statistics.median(r[j] for r in plain_rates)
        q = statistics.median(r[j] for r in platform_rates)
        pb, qb = max(r[j] for r in plain_rates), max(r[j] for r in platform_rates)
        print(f"{what}: plain torch loop {p:.1f}, reelflow run_generation {q:.1f} images/s (medians): ratio "
              f"{q / p:.3f}; best rounds {pb:.1f} vs {qb:.1f}: ratio {qb / pb:.3f}  (goal >= 0.95)")
    del np


if __name__ == "__main__":
    main()
