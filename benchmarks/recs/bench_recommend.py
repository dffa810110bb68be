"""One member's top-10: ``Model.recommend([user], n=10)`` against the same top-10 in bare numpy.

    python benchmarks/recs/bench_recommend.py [--repeat 7] [--calls 300]

This is the serving hot path (``reelflow serve`` answers one member per request).
For every model the reference is what a hand-written numpy server would run for
the same member, with the same inputs and outputs: external user id -> row (one
dict lookup), the model's scores computed directly from its learned arrays
(ALS/BPR ``V @ U[p]``; EASE ``x_u @ B`` as scipy's CSR row slice times the dense
B -- faster than gathering B's rows for a numpy gemv, which on a busy 2-core
machine stalls on OpenBLAS threads; ItemKNN the sum of the seen items'
neighbour rows; MostPopular the popularity vector; SASRec, where torch is
installed, its network run by hand on the member's last ``max_len`` items,
then the last hidden state times the item embeddings), the
member's seen items masked through the CSR ``indptr``/``indices`` slice,
``argpartition`` + a sort of the ten, and row -> external item ids. Both must
return the same items (checked for every member timed).

Timing: ``--repeat`` rounds; in each round, for each model, reelflow and the
reference answer the same ``--calls`` members call by call, alternating which
goes first, so a change of machine load hits both alike. A round's figure is its
median per-call time; printed are the median over rounds with the min-max over
rounds; the ratio is reelflow / reference (goal <= 1.25x). Batch scoring (all members
at once) is timed the same way. Data: ml-latest-small from ../shared/datasets
(items with >= 5 interactions, so EASE fits in seconds), else a synthetic set of
the same shape. Load average and the BLAS library/kernel are printed first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reelflow.recs import ALS, BPR, EASE, ItemKNN, MostPopular, RecommenderBase
from reelflow.recs.datasets import read_movielens, synthetic

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "ml-latest-small"


def environment() -> str:
    """Machine, load average and BLAS (library, kernel, threads) as one printable block."""
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
             f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas":
                lines.append(f"BLAS: {info.get('internal_api')} {info.get('version')}, kernel "
                             f"{info.get('architecture')}, {info.get('num_threads')} threads ({info.get('filepath')})")
    except ImportError:
        lines.append("BLAS: threadpoolctl not installed, kernel unknown")
    return "\n".join(lines)


def bare_numpy(model: RecommenderBase) -> Callable[[Any, int], np.ndarray]:
    """The reference: one member's top-n straight from the model's arrays."""
    X = model.user_items_
    indptr, indices = X.indptr, X.indices
    pos = {u: i for i, u in enumerate(model.user_ids_.tolist())}
    item_ids = model.item_ids_
    name = type(model).__name__
    if name in ("ALS", "BPR"):
        U, V = model.user_factors_, model.item_factors_

        def score(p: int) -> np.ndarray:
            return V @ U[p]  # type: ignore[no-any-return]
    elif name == "EASE":
        W = model.weights_

        def score(p: int) -> np.ndarray:
            return np.asarray(X[p : p + 1] @ W)[0]  # type: ignore[no-any-return]
    elif name == "ItemKNN":
        S = model.similarity_

        def score(p: int) -> np.ndarray:
            seen = indices[indptr[p] : indptr[p + 1]]
            starts, lengths = S.indptr[seen], S.indptr[seen + 1] - S.indptr[seen]
            at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            s = np.zeros(S.shape[1], np.float32)
            np.add.at(s, S.indices[at], S.data[at])  # sum of the seen items' neighbour rows
            return s
    elif name == "MostPopular":
        pop = model.scores_

        def score(p: int) -> np.ndarray:
            return pop.copy()  # type: ignore[no-any-return]
    elif name == "SASRec":
        import torch

        torch.set_num_threads(model.threads or 1)  # what the model's own scoring uses
        net = model._network()
        E = np.ascontiguousarray(model.weights_["item_emb.weight"][1:])
        ptr, seq_items = model.sequence_indptr_, model.sequence_items_
        L = model.max_len

        def score(p: int) -> np.ndarray:
            seq = seq_items[ptr[p] : ptr[p + 1]][-L:]  # stored as embedding rows (item + 1; 0 pads)
            x = np.zeros((1, max(1, len(seq))), np.int64)
            x[0, x.shape[1] - len(seq):] = seq
            with torch.no_grad():
                h = net(torch.from_numpy(x))[0, -1].numpy()
            return E @ h  # type: ignore[no-any-return]
    else:
        raise ValueError(name)

    def top(user: Any, n: int) -> np.ndarray:
        p = pos[user]
        s = score(p)
        s[indices[indptr[p] : indptr[p + 1]]] = -np.inf
        part = np.argpartition(-s, n - 1)[:n]
        return item_ids[part[np.argsort(-s[part], kind="stable")]]  # type: ignore[no-any-return]

    return top


def paired(rf: Callable[[Any], Any], ref: Callable[[Any], Any], users: list[Any], flip: bool) -> tuple[float, float]:
    """Median seconds per call of ``rf`` and ``ref``, timed call by call in alternating order
    on the same members (a load change hits both alike)."""
    a, b = [], []
    for i, u in enumerate(users):
        first, second = ((rf, a), (ref, b)) if (i % 2 == 0) != flip else ((ref, b), (rf, a))
        for fn, out in (first, second):
            t0 = time.perf_counter()
            fn(u)
            out.append(time.perf_counter() - t0)
    return float(np.median(a)), float(np.median(b))


def fmt(xs: list[float], scale: float = 1e6) -> str:
    return f"{np.median(xs) * scale:7.1f} ({min(xs) * scale:.1f}-{max(xs) * scale:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    print(environment())
    if (DATA / "ratings.csv").exists():
        data = read_movielens(DATA).filter(min_item_interactions=5)
        print(f"data: ml-latest-small, items with >= 5 interactions: {data}")
    else:
        data = synthetic(610, 3650, 90_000, seed=0)
        print(f"data: synthetic (shared ml-latest-small missing): {data}")
    models: dict[str, RecommenderBase] = {
        "ALS": ALS(factors=64, iterations=5, random_state=0),
        "BPR": BPR(factors=64, iterations=20, random_state=0),
        "EASE": EASE(l2=500.0),
        "ItemKNN": ItemKNN(k=100),
        "MostPopular": MostPopular(),
    }
    try:
        import torch  # noqa: F401

        from reelflow.recs import SASRec

        models["SASRec"] = SASRec(factors=64, max_epochs=2, max_len=50, random_state=0, threads=1)
    except ImportError:
        print("SASRec skipped: torch is not installed (pip install 'reelflow[torch]')")
    for m in models.values():
        m.fit(data, verbose=False)
    rng = np.random.default_rng(0)  # the same members for every model and round
    users = [data.user_ids[i] for i in rng.integers(0, len(data.user_ids), args.calls)]
    refs = {name: bare_numpy(m) for name, m in models.items()}
    for name, m in models.items():  # identical answers before any timing
        for u in users:
            got = m.recommend([u], 10)[0][0]
            want = refs[name](u, 10)
            if not np.array_equal(got, want):
                raise SystemExit(f"{name}: recommend([{u!r}]) = {got} but bare numpy gives {want}")
    ones: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in models}
    batch: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.repeat):
        for name, m in models.items():
            ref = refs[name]
            rf_t, np_t = ones[name]
            a_s, b_s = paired(lambda u, m=m: m.recommend([u], 10), lambda u, ref=ref: ref(u, 10), users, r % 2 == 1)
            rf_t.append(a_s)
            np_t.append(b_s)
            t0 = time.perf_counter()
            m.recommend(data.user_ids, 10)
            batch[name].append((time.perf_counter() - t0) / len(data.user_ids))
    print(f"\none member's top-10, per call in us: median (min-max) over {args.repeat} rounds "
          f"of {args.calls} paired calls; ratio = reelflow / bare numpy, goal <= 1.25x")
    print(f"{'model':<12} {'reelflow':>22} {'bare numpy':>22} {'ratio':>7}  {'batch (all members), us/member':>32}")
    for name in models:
        rf_t, np_t = ones[name]
        ratio = float(np.median(rf_t) / np.median(np_t))
        print(f"{name:<12} {fmt(rf_t):>22} {fmt(np_t):>22} {ratio:6.2f}x  {fmt(batch[name]):>32}"
              f"  {'ok' if ratio <= 1.25 else 'MISSED'}")
    print(f"identical top-10 for all {len(users)} members of every model: yes")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
