"""Sketch-to-background quality: Sketch2Background vs the region-mean baseline on held-out scenes.

    python benchmarks/generate/bench_train.py                      # the issue's goal: <= 15 min on 2 cores
    python benchmarks/generate/bench_train.py --budget 120 --n-train 512   # a quick look

Trains on procedural pairs (seed 0) for at most ``--budget`` seconds of training,
then prints PSNR / SSIM / KID (random-conv features; see reelflow.generate._metrics)
of the model and of the baseline on ``--n-test`` held-out scenes (seed 10000), the
training time, the device, and whether the model beats the baseline on every metric.
``--contact-sheet PATH`` writes sketch | generated | ground truth rows.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--budget", type=float, default=840.0, help="seconds of training at most")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the CPUs this process may use)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--contact-sheet", default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from reelflow.generate import (
        RegionMeanBaseline,
        Sketch2Background,
        contact_sheet,
        evaluate_images,
        make_pairs,
        pick_device,
        set_threads,
    )

    threads = set_threads(args.threads or None)
    t = time.perf_counter()
    sk, bg = make_pairs(args.n_train, seed=0, size=args.size)
    tsk, tbg = make_pairs(args.n_test, seed=10_000, size=args.size)
    print(f"data: {args.n_train} training + {args.n_test} held-out pairs at {args.size}px "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    base = RegionMeanBaseline().fit(sk, bg)
    bm = evaluate_images(base.generate(tsk), tbg)
    device = pick_device(args.device)
    model = Sketch2Background(size=args.size, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                              time_budget=args.budget, device=device)

    def on_epoch(epoch: int, row: dict) -> None:
        if epoch % 5 == 0:
            print(f"epoch {epoch}: loss {row['loss']:.4f} at {row['seconds']:.0f} s", flush=True)

    t = time.perf_counter()
    model.fit(sk, bg, on_epoch=on_epoch, verbose=False)
    train_s = time.perf_counter() - t
    gen = model.generate(tsk, seeds=0, device=device)
    mm = evaluate_images(gen, tbg)
    wins = mm["psnr"] > bm["psnr"] and mm["ssim"] > bm["ssim"] and mm["kid"] < bm["kid"]
    print(f"\ndevice {device}, {threads} threads, {len(model.history_)} epochs, training {train_s:.0f} s "
          f"(budget {args.budget:.0f} s), CPUs available {len(os.sched_getaffinity(0))}")
    print(f"{'metric':<8}{'model':>10}{'baseline':>10}")
    for k, better in (("psnr", "higher"), ("ssim", "higher"), ("kid", "lower")):
        print(f"{k:<8}{mm[k]:>10.4f}{bm[k]:>10.4f}   ({better} is better)")
    print(f"beats the region-mean baseline on every metric: {'yes' if wins else 'NO'}")
    if args.contact_sheet:
        p = contact_sheet([tsk[:16], gen[:16], tbg[:16]], args.contact_sheet)
        print(f"contact sheet: {p}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": mm, "baseline": bm, "train_seconds": train_s, "epochs": len(model.history_),
                       "device": device, "threads": threads, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
