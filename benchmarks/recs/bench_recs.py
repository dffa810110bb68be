"""Recommender benchmark: quality and speed of reelflow.recs against direct references.

    python benchmarks/recs/bench_recs.py [--quick]

Part 1 (quality, ../shared/datasets/ml-latest-small; every rating an interaction):
  leave-last-out and temporal splits, full-ranking HR@10, NDCG@10, Recall@20 and
  fit time of every reelflow model, next to `implicit`'s ALS run directly and the
  plain numpy EASE of Steck's paper with the same hyper-parameters, evaluated by the
  same code. Then each reelflow model tuned on a validation period carved from
  train, against every untuned reference.
Part 2 (speed, ML-1M shape from the synthetic generator: 6,040 x 3,706, ~1M
  interactions): EASE fit vs the numpy reference, ALS (64 factors, 15 iterations)
  vs implicit alone, and scoring + top-10 for all users.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from reelflow.recs import ALS, BPR, EASE, ItemKNN, MostPopular, RecommenderBase, evaluate, leave_last_out
from reelflow.recs import temporal_split, tune
from reelflow.recs.datasets import read_movielens, synthetic

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "ml-latest-small"
ALS_PARAMS = {"factors": 64, "iterations": 15, "regularization": 0.05, "alpha": 1.0}
EASE_L2 = 500.0


class Fixed(RecommenderBase):
    """Wraps a reference's learned matrices so the same evaluation code scores it."""

    def __init__(self, *, kind: str = "factors", a: np.ndarray | None = None, b: np.ndarray | None = None) -> None:
        self.kind = kind
        self.a = a
        self.b = b

    def _fit(self, X: sp.csr_matrix) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        if self.kind == "factors":
            return (self.a[users] @ self.b.T).astype(np.float32)  # type: ignore[index,union-attr]
        return np.asarray(self.user_items_[users] @ self.b, dtype=np.float32)


def numpy_ease(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """Steck (2019)'s reference implementation, as published."""
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices(G.shape[0])] += l2
    P = np.linalg.inv(G)
    B = P / (-np.diag(P))
    B[np.diag_indices(G.shape[0])] = 0.0
    return B


def implicit_als(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        m = AlternatingLeastSquares(random_state=0, **ALS_PARAMS)
        m.fit(X, show_progress=False)
    return m.user_factors, m.item_factors


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def scores(model: RecommenderBase, train, test) -> dict[str, float]:  # type: ignore[no-untyped-def]
    r = evaluate(model, train, test, k=(10, 20), metrics=("hr", "ndcg", "recall")).set_index(["metric", "k"]).value
    return {"HR@10": r[("hr", 10)], "NDCG@10": r[("ndcg", 10)], "Recall@20": r[("recall", 20)]}


def row(name: str, s: dict[str, float], fit: float) -> str:
    return f"  {name:<26} {s['HR@10']:>7.4f} {s['NDCG@10']:>8.4f} {s['Recall@20']:>9.4f} {fit:>8.2f}s"


def part1(quick: bool) -> None:
    if not (DATA / "ratings.csv").exists():
        print(f"part 1 skipped: {DATA} is missing (the shared MovieLens data)")
        return
    data = read_movielens(DATA)
    print(f"Part 1: ml-latest-small {data}, full ranking")
    splits = {"leave-last-out": leave_last_out(data), "temporal 80/20": temporal_split(data, 0.2)}
    for split_name, (train, test) in splits.items():
        print(f"\n{split_name}:  {'model':<24} {'HR@10':>7} {'NDCG@10':>8} {'Recall@20':>9} {'fit':>9}")
        X = train.matrix
        refs: dict[str, dict[str, float]] = {}
        (uf, itf), t_als_ref = timed(implicit_als, X)
        refs["implicit ALS (direct)"] = scores(Fixed(kind="factors", a=uf, b=itf).fit(train), train, test)
        print(row("implicit ALS (direct)", refs["implicit ALS (direct)"], t_als_ref))
        if not quick:
            B, t_ease_ref = timed(numpy_ease, X, EASE_L2)
            refs["numpy EASE (reference)"] = scores(Fixed(kind="ease", b=B.astype(np.float32)).fit(train), train, test)
            print(row("numpy EASE (reference)", refs["numpy EASE (reference)"], t_ease_ref))
        models = {"MostPopular": MostPopular(), "ItemKNN": ItemKNN(k=100, shrink=10.0), "EASE": EASE(l2=EASE_L2),
                  "ALS": ALS(**ALS_PARAMS), "BPR": BPR(factors=64, iterations=100, learning_rate=0.05)}
        for name, m in models.items():
            _, t = timed(m.fit, train)
            print(row(f"reelflow {name}", scores(m, train, test), t))
        if split_name.startswith("temporal"):
            inner, valid = temporal_split(train, 0.15)
        else:
            inner, valid = leave_last_out(train)
        grids = {"EASE": (EASE, {"l2": [100.0, 300.0, 1000.0, 3000.0]}),
                 "ALS": (ALS, {"factors": [32, 64, 128], "regularization": [0.01, 0.1], "alpha": [1.0, 4.0]}),
                 "ItemKNN": (ItemKNN, {"k": [50, 200, 500], "shrink": [0.0, 20.0]})}
        best_name, best_s, best_valid = "", None, -1.0
        for name, (cls, grid) in grids.items():
            if quick and name == "EASE":
                continue
            res = tune(cls, grid, inner, valid, metric="ndcg@10")
            m = cls(**res.best_params)
            _, fit_s = timed(m.fit, train)
            s = scores(m, train, test)
            print(row(f"tuned {name}", s, fit_s) + f"  {res.best_params}")
            if res.best_score > best_valid:
                best_name, best_s, best_valid = name, s, res.best_score
        assert best_s is not None
        beaten = all(best_s["NDCG@10"] > r["NDCG@10"] for r in refs.values())
        print(f"  best tuned model (chosen on validation): {best_name}, test NDCG@10 {best_s['NDCG@10']:.4f} -> "
              f"{'beats' if beaten else 'does NOT beat'} every untuned reference")


def part2() -> None:
    print("\nPart 2: ML-1M shape (synthetic generator, 6,040 x 3,706)")
    data = synthetic(6040, 3706, 1_000_000, seed=0)
    X = data.matrix
    print(f"  {data}")
    reps = 3
    t_ref = min(timed(numpy_ease, X, EASE_L2)[1] for _ in range(reps))
    t_rf = min(timed(EASE(l2=EASE_L2).fit, data)[1] for _ in range(reps))
    print(f"  EASE fit: reelflow {t_rf:.2f}s vs numpy reference {t_ref:.2f}s -> {t_rf / t_ref:.2f}x (goal <= 1.1x)")
    t_ref = min(timed(implicit_als, X)[1] for _ in range(reps))
    t_rf = min(timed(ALS(**{**ALS_PARAMS, "factors": 64, "iterations": 15}).fit, data)[1] for _ in range(reps))
    print(f"  ALS fit (64 factors, 15 it.): reelflow {t_rf:.2f}s vs implicit alone {t_ref:.2f}s -> "
          f"{t_rf / t_ref:.2f}x (goal <= 1.1x)")
    train, test = leave_last_out(data)
    for name, m in (("EASE", EASE(l2=EASE_L2).fit(data)), ("ALS", ALS(**ALS_PARAMS).fit(data))):
        users = data.user_ids
        _, t = timed(m.recommend, users, 10)
        print(f"  {name} scoring + top-10 for all {len(users):,} users: {t:.3f}s = {t / len(users) * 1e3:.4f} ms/user "
              "(goal <= 0.1 ms/user)")
        m.fit(train)
        report, t = timed(evaluate, m, train, test)
        print(f"  {name} full-ranking evaluate() of all {report.attrs['n_users']:,} users (k=10,20; 8 metrics): {t:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the slow numpy EASE reference on 9.7k items")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    part1(args.quick)
    part2()


if __name__ == "__main__":
    main()
