"""Recommender benchmark: quality and speed of reelflow.recs against direct references.

    python benchmarks/recs/bench_recs.py [--quick]

Part 1 (quality, ../shared/datasets/ml-latest-small; every rating an interaction):
  leave-last-out and temporal splits, full-ranking HR@10, NDCG@10, Recall@20 and
  fit time of every reelflow model, next to `implicit`'s ALS run directly and the
  plain numpy EASE of Steck's paper with the same hyper-parameters, evaluated by the
  same code. Then each reelflow model tuned on a validation period carved from
  train, against every untuned reference.
Part 2 (speed, ML-1M shape from the synthetic generator: 6,040 x 3,706, ~1M
  interactions, seed 0): EASE fit vs the same Cholesky written directly with scipy
  (the like-for-like comparison) and vs Steck's numpy ``inv`` reference, ALS (64
  factors, 15 iterations) vs implicit alone, and scoring + top-10 for all users.
  Timing: reelflow and its reference alternate within each of ``--repeat`` rounds;
  each figure is the median with min-max over rounds, each ratio reelflow's median
  / the reference's median. The load average and the BLAS library, kernel and
  thread count (threadpoolctl) are printed first: absolute times depend on them.
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


def scipy_ease(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """The closed form reelflow uses (float32 Cholesky: potrf + potri), written directly with scipy."""
    from scipy.linalg import lapack

    G = np.asarray((X.T @ X).todense(), dtype=np.float32)
    G[np.diag_indices_from(G)] += np.float32(l2)
    c, _ = lapack.spotrf(G, lower=False, overwrite_a=True, clean=False)
    P, _ = lapack.spotri(c, lower=False, overwrite_c=True)
    P = np.triu(P) + np.triu(P, 1).T
    B = P / (-np.diag(P))
    B[np.diag_indices_from(B)] = 0.0
    return B


def interleaved(reps: int, **fns) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """Seconds of each zero-argument function, alternating order in each of ``reps`` rounds."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            out[k].append(timed(fns[k])[1])
    return out


def med(xs: list[float]) -> str:
    return f"{np.median(xs):.2f}s ({min(xs):.2f}-{max(xs):.2f})"


def environment() -> str:
    import os

    from threadpoolctl import threadpool_info

    lines = [f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
             + " ".join(f"{x:.2f}" for x in os.getloadavg())]
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            lines.append(f"BLAS: {info.get('internal_api')} {info.get('version')}, kernel {info.get('architecture')}, "
                         f"{info.get('num_threads')} threads ({Path(str(info.get('filepath'))).name})")
    return "\n".join(lines)


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


def part2(reps: int = 5) -> None:
    print(f"\nPart 2: ML-1M shape (synthetic generator, 6,040 x 3,706, seed 0); median (min-max) over {reps} "
          "interleaved rounds")
    data = synthetic(6040, 3706, 1_000_000, seed=0)
    X = data.matrix
    print(f"  {data}")
    t = interleaved(reps, rf=lambda: EASE(l2=EASE_L2).fit(data, verbose=False), scipy=lambda: scipy_ease(X, EASE_L2),
                    numpy=lambda: numpy_ease(X, EASE_L2))
    print(f"  EASE fit: reelflow {med(t['rf'])} vs the same Cholesky in scipy {med(t['scipy'])} -> "
          f"{np.median(t['rf']) / np.median(t['scipy']):.2f}x (goal <= 1.1x); vs Steck's numpy inv (float64) "
          f"{med(t['numpy'])} -> {np.median(t['rf']) / np.median(t['numpy']):.2f}x")
    t = interleaved(reps, rf=lambda: ALS(**ALS_PARAMS).fit(data, verbose=False), ref=lambda: implicit_als(X))
    print(f"  ALS fit (64 factors, 15 it.): reelflow {med(t['rf'])} vs implicit alone {med(t['ref'])} -> "
          f"{np.median(t['rf']) / np.median(t['ref']):.2f}x (goal <= 1.1x)")
    train, test = leave_last_out(data)
    for name, m in (("EASE", EASE(l2=EASE_L2).fit(data)), ("ALS", ALS(**ALS_PARAMS).fit(data))):
        users = data.user_ids
        ts = [timed(m.recommend, users, 10)[1] for _ in range(reps)]
        t = float(np.median(ts))
        print(f"  {name} scoring + top-10 for all {len(users):,} users: {med(ts)} = {t / len(users) * 1e3:.4f} ms/user "
              "(goal <= 0.1 ms/user)")
        m.fit(train)
        report, t = timed(evaluate, m, train, test)
        print(f"  {name} full-ranking evaluate() of all {report.attrs['n_users']:,} users (k=10,20; 8 metrics): {t:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the slow numpy EASE reference on 9.7k items")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds of each part-2 timing")
    ap.add_argument("--part", type=int, choices=(1, 2), default=None, help="run only this part")
    args = ap.parse_args()
    print(environment())
    if args.part in (None, 1):
        part1(args.quick)
    if args.part in (None, 2):
        part2(args.repeat)


if __name__ == "__main__":
    main()
