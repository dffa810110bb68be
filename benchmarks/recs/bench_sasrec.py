"""SASRec vs the best tuned classic model under leave-last-out; CPU time per epoch at ML-1M scale.

    python benchmarks/recs/bench_sasrec.py                       # both parts
    python benchmarks/recs/bench_sasrec.py --part small --budget 300
    python benchmarks/recs/bench_sasrec.py --part epoch --threads 2
    python benchmarks/recs/bench_sasrec.py --ml1m /path/to/ml-1m  # the published-figure check, if you have ML-1M

Protocol (the standard SASRec one): each user's last interaction is the test item,
the one before it the validation item; every item is ranked (full catalogue),
items the user has seen are excluded. The classic models (EASE, ItemKNN, ALS) are
tuned on the validation items, then refitted on everything but the test items;
SASRec holds out its own validation items for early stopping inside ``fit``.
Needs the torch extra: ``pip install 'reelflow[torch]'``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from reelflow.recs import ALS, EASE, ItemKNN, SASRec, evaluate, leave_last_out, metric_value, tune
from reelflow.recs.datasets import movielens_small, read_movielens, synthetic

GRIDS = {
    EASE: {"l2": [10.0, 25.0, 50.0, 200.0, 500.0]},
    ItemKNN: {"k": [50, 200], "shrink": [0.0, 20.0]},
    ALS: {"factors": [64, 128], "regularization": [0.01, 0.1], "alpha": [1.0, 5.0], "random_state": [0]},
}


def scores(model, train, test) -> tuple[float, float]:
    r = evaluate(model, train, test, k=10, metrics=("ndcg", "hr"), verbose=False)
    return metric_value(r, "ndcg@10"), metric_value(r, "hr@10")


def compare(data, budget: float, threads: int | None, label: str, **sasrec: object) -> None:
    fit_part, valid, test = leave_last_out(data, valid=True)
    train, _ = leave_last_out(data)
    print(f"{label}: {data}; leave-last-out, full ranking, seen items excluded")
    best = None
    for cls, grid in GRIDS.items():
        t0 = time.perf_counter()
        tuned = tune(cls, grid, fit_part, valid, metric="ndcg@10", verbose=False)
        model = cls(**tuned.best_params).fit(train, verbose=False)
        ndcg, hr = scores(model, train, test)
        print(f"  {cls.__name__:<8} ndcg@10 {ndcg:.4f}  hr@10 {hr:.4f}  (valid {tuned.best_score:.4f}, "
              f"{tuned.best_params}, {time.perf_counter() - t0:.0f} s with tuning)", flush=True)
        if best is None or tuned.best_score > best[0]:
            best = (tuned.best_score, cls.__name__, ndcg, hr)
    assert best is not None
    t0, c0 = time.perf_counter(), time.process_time()
    sas = SASRec(time_budget=budget, threads=threads, random_state=0, **sasrec).fit(train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ndcg, hr = scores(sas, train, test)
    print(f"  SASRec   ndcg@10 {ndcg:.4f}  hr@10 {hr:.4f}  ({sas.epochs_} epochs, best {sas.best_epoch_}, "
          f"{wall:.0f} s wall, {cpu:.0f} s CPU, budget {budget:.0f} s, settings {sasrec or 'defaults'})")
    print(sas.history_.to_string(index=False))
    gain = ndcg / best[2] - 1.0
    print(f"  best tuned classic model (chosen on validation): {best[1]} ndcg@10 {best[2]:.4f}, hr@10 {best[3]:.4f}; "
          f"SASRec {gain:+.0%} ndcg@10: {'BEATS' if ndcg > best[2] else 'does NOT beat'} it\n", flush=True)


def epoch_time(threads: int, fp32: bool) -> None:
    print("ML-1M-shaped synthetic input: 6,040 users x 3,706 items, 1,000,209 interactions (as MovieLens-1M)")
    data = synthetic(n_users=6040, n_items=3706, n_interactions=1_000_209, seed=0)
    for mp in (None, False) if fp32 else (None,):
        t0, c0 = time.perf_counter(), time.process_time()
        m = SASRec(max_epochs=1, patience=None, time_budget=None, threads=threads, mixed_precision=mp,
                   random_state=0).fit(data, verbose=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  one epoch (default SASRec, full-catalogue CE, mixed_precision={mp}): {m.train_seconds_:.0f} s "
              f"training wall-clock on {threads} threads ({wall:.0f} s wall / {cpu:.0f} s CPU for the whole fit); "
              f"{900 / m.train_seconds_:.1f} epochs fit in the default 15-minute budget", flush=True)
    print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("small", "epoch", "all"), default="all")
    ap.add_argument("--budget", type=float, default=300.0, help="SASRec time_budget (seconds) on ml-latest-small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.2, help="SASRec dropout on ml-latest-small")
    ap.add_argument("--fp32", action="store_true", help="also time an epoch without bfloat16 autocast")
    ap.add_argument("--ml1m", type=Path, default=None, help="a MovieLens-1M folder (ratings.dat): the 15-minute check")
    args = ap.parse_args()
    if args.part in ("small", "all"):
        # 610 users make 5 batches of the default 128 a pass: smaller batches give the optimiser more steps
        compare(movielens_small().filter(min_item_interactions=5), args.budget, args.threads,
                "ml-latest-small (items with >= 5 interactions)", batch_size=32, learning_rate=0.002, max_len=100,
                dropout=args.dropout)
    if args.part in ("epoch", "all"):
        epoch_time(args.threads, args.fp32)
    if args.ml1m is not None:
        compare(read_movielens(args.ml1m), 900.0, args.threads, "MovieLens-1M")
    elif not Path("/work/shared/datasets/ml-1m").exists():
        print("MovieLens-1M is not in the shared data sets (../shared/datasets has ml-latest-small only): "
              "the published-figure check needs --ml1m PATH")


if __name__ == "__main__":
    main()
