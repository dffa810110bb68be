"""Generation throughput: reelflow's job core vs a plain torch loop doing the same work.

    python benchmarks/generate/bench_throughput.py                # 256 images, 64 px, batches of 16

Both sides generate the same images (same model, seeds, batches) and write each
as a PNG: the plain loop to files in a folder, reelflow's ``run_generation`` into
a store (the input sketch and the output as content-addressed blobs, a request
key and a lineage row per image, progress). The store exists before the timed
rounds, as a job's store does; each round asks for new seeds, so every image is
generated and stored (nothing is skipped), and a sample of the stored images is
checked pixel for pixel against the plain loop's. An untimed first round warms
both sides up; then rounds alternate which side goes first. The figures are the
ratios of the medians and of the best rounds, in wall-clock and in CPU time (CPU
time is what the platform adds, whatever else the machine runs) (goal: reelflow
>= 0.95x the plain loop's images/s).
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
        decode_png,
        make_pairs,
        png_bytes,
        run_generation,
        set_threads,
    )
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import Store

    load0 = os.getloadavg()[0]
    threads = set_threads(args.threads or None)
    sk, bg = make_pairs(max(args.n, 16), seed=0, size=args.size)
    model = Sketch2Background(size=args.size, width=args.width, epochs=1, device="cpu").fit(sk[:16], bg[:16],
                                                                                          verbose=False)
    sketches = sk[:args.n]
    seeds = list(range(args.n * (args.rounds + 1)))

    def round_sketches(r: int) -> np.ndarray:
        """Round r's inputs: the sketches shifted r pixels, so no round finds its inputs stored already."""
        return np.ascontiguousarray(np.roll(sketches, r, axis=2))

    def plain(folder: Path, offset: int, inputs: np.ndarray) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        net = model.net_
        with torch.inference_mode():
            for i in range(0, args.n, args.batch_size):
                xb = torch.from_numpy(inputs[i:i + args.batch_size])
                noise = torch.stack([torch.randn(1, args.size, args.size, generator=torch.Generator().manual_seed(s))
                                     for s in seeds[i + offset:i + offset + args.batch_size]])
                out = net(model._inputs(xb, noise)).mul(255.0).add_(0.5).clamp_(0, 255).byte()
                for j, img in enumerate(out.permute(0, 2, 3, 1).numpy()):
                    (folder / f"{i + j}.png").write_bytes(png_bytes(img))
        return args.n / (time.perf_counter() - t), args.n / (time.process_time() - c)

    from reelflow.store._review_db import review_tables

    resolved = ResolvedModel(model, "bench", "registry", "bench/1", "test")

    def platform(store: Store, offset: int, inputs: np.ndarray) -> tuple[tuple[float, float], list[dict]]:
        items = [GenerationItem(name=str(i), seed=seeds[i + offset], sketch=x) for i, x in enumerate(inputs)]
        t, c = time.perf_counter(), time.process_time()
        rows = run_generation(resolved, items, GenerationSettings(batch_size=args.batch_size, device="cpu"),
                              store=store, verbose=False)
        rate = args.n / (time.perf_counter() - t), args.n / (time.process_time() - c)
        assert len(rows) == args.n and not any(r["reused"] for r in rows)  # every image new: nothing skipped
        return rate, rows

    plain_rates, platform_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # A job runs against an existing store: creating one (its folders, tables) is not part
        # of the figure, so one store serves every round; round r uses seeds r*n.., new images each time.
        os.environ["REELFLOW_HOME"] = str(Path(tmp) / "home")
        store = Store(load_config())
        store.preflight()
        review_tables(store.metadata)
        for r in range(args.rounds + 1):  # round 0 warms both sides up and is not counted
            folder = Path(tmp) / f"plain-{r}"
            folder.mkdir()
            offset, inputs = r * args.n, round_sketches(r)
            if r % 2:  # alternate who goes first, so drifting load favours neither side
                p_rate = plain(folder, offset, inputs)
                q_rate, rows = platform(store, offset, inputs)
            else:
                q_rate, rows = platform(store, offset, inputs)
                p_rate = plain(folder, offset, inputs)
            # same work: the stored images are the plain loop's images, pixel for pixel
            for row in rows[:: max(1, args.n // 8)]:
                want = decode_png((folder / f"{row['input_name']}.png").read_bytes())
                assert np.array_equal(decode_png(store.load(row["key"])), want), row["input_name"]
            if r == 0:
                continue
            plain_rates.append(p_rate)
            platform_rates.append(q_rate)
            print(f"round {r}: plain {p_rate[0]:.1f} images/s ({p_rate[1]:.1f} per CPU-second), "
                  f"reelflow {q_rate[0]:.1f} images/s ({q_rate[1]:.1f} per CPU-second)", flush=True)
        # The platform's own work alone: a "model" that hands back the images it already made, so
        # what remains is PNG + file on one side and everything run_generation does on the other.
        # CPU milliseconds per image; compare with the model's own time per image above.
        made = [decode_png(store.load(r["key"])) for r in rows]

        class Replay:
            size = args.size

            def generate(self, x, *, seeds, device=None):
                return np.stack([made[(s - offset) % args.n] for s in seeds])

        replay = ResolvedModel(Replay(), "replay", "registry", "replay/1", "test")
        own = []
        for k in range(args.rounds):
            items = [GenerationItem(name=str(i), seed=offset + i + (k + 1) * 1_000_000, sketch=x)
                     for i, x in enumerate(round_sketches(args.rounds + 1 + k))]
            c = time.process_time()
            run_generation(replay, items, GenerationSettings(batch_size=args.batch_size, device="cpu"), store=store,
                           verbose=False)
            q_ms = (time.process_time() - c) * 1e3 / args.n
            folder = Path(tmp) / f"replay-{k}"
            folder.mkdir()
            c = time.process_time()
            for i, img in enumerate(made):
                (folder / f"{i}.png").write_bytes(png_bytes(img))
            own.append(((time.process_time() - c) * 1e3 / args.n, q_ms))
        store.metadata.close()
    print(f"\n{args.n} images of {args.size}px, batches of {args.batch_size}, {threads} torch threads, CPU; "
          f"load average before/after {load0:.1f}/{os.getloadavg()[0]:.1f}")
    print("plain torch loop: forward passes under inference_mode, each image encoded as PNG and written to a file")
    print("reelflow run_generation: the same forward passes and PNGs, plus per image a request key, the input "
          "sketch stored as a PNG blob, the output as a content-addressed blob and a lineage row (committed "
          "about once a second, blobs made durable first)")
    for what, j in (("wall clock", 0), ("CPU time (less sensitive to other processes' load)", 1)):
        p = statistics.median(r[j] for r in plain_rates)
        q = statistics.median(r[j] for r in platform_rates)
        pb, qb = max(r[j] for r in plain_rates), max(r[j] for r in platform_rates)
        print(f"{what}: plain torch loop {p:.1f}, reelflow run_generation {q:.1f} images/s (medians): ratio "
              f"{q / p:.3f}; best rounds {pb:.1f} vs {qb:.1f}: ratio {qb / pb:.3f}  (goal >= 0.95)")
    plain_ms = statistics.median(o[0] for o in own)
    extra = statistics.median(o[1] - o[0] for o in own)
    image_ms = 1e3 / statistics.median(r[1] for r in plain_rates)
    print(f"storing alone (a model that replays the images; CPU ms per image, median of {len(own)}): PNG + file "
          f"{plain_ms:.3f}, run_generation {plain_ms + extra:.3f}: the platform adds {extra:.3f} ms to the plain "
          f"loop's {image_ms:.2f} ms per image -> expected ratio {image_ms / (image_ms + extra):.3f} with no overlap")


if __name__ == "__main__":
    main()
