"""Step caching: a 5-step flow re-run after one step changed, with and without ``--cache``.

    python benchmarks/flows/bench_cache.py [--repeat 3] [--rows 50000]

The flow (written to a temporary folder, its own store) does real work in every step:
``start`` draws a data set (rows x 64 floats), ``features`` builds random-feature
expansions of it, ``train`` fits a ridge regression on them, ``evaluate`` scores it
on a held-out part, ``end`` reports. One warm-up run with ``--cache`` fills the
cache. Then, per round, ``evaluate`` is changed (a new constant in its source) and
the flow is run twice, in alternating order:

  uncached   python flow.py run           every step runs
  cached     python flow.py run --cache   start, features, train are clones of the
                                          warm-up's tasks; evaluate and end run

Figures: median wall time of each over the rounds (whole processes, start-up
included), the ratio uncached / cached, and that both give the same answer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = '''
import numpy as np
from reelflow import FlowSpec, Parameter, cache, step

SALT = {salt}


def expand(x, seed, width=512):
    w = np.random.default_rng(seed).normal(size=(x.shape[1], width)) / np.sqrt(x.shape[1])
    return np.tanh(x @ w)


class CacheBenchFlow(FlowSpec):
    rows = Parameter("rows", default={rows})

    @step
    def start(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(self.rows, 64)).astype(np.float32)
        self.y = (np.sin(self.x[:, :8]).sum(1) + 0.1 * rng.normal(size=self.rows)).astype(np.float32)
        self.order = np.argsort(rng.random(self.rows))  # a shuffle by sorting: some work
        self.next(self.features)

    @step
    def features(self):
        self.f = np.concatenate([expand(self.x, s) for s in range(3)], axis=1).astype(np.float32)
        self.next(self.train)

    @step
    def train(self):
        n = int(0.8 * len(self.f))
        a = self.f[:n].astype(np.float64)
        self.coef = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ self.y[:n])
        self.n_train = n
        self.next(self.evaluate)

    @step
    def evaluate(self):
        pred = self.f[self.n_train:] @ self.coef
        err = pred - self.y[self.n_train:]
        self.rmse = float(np.sqrt(np.mean(err ** 2))) + SALT * 1e-9  # the change: a new output
        self.next(self.end)

    @step
    def end(self):
        print("rmse", round(self.rmse, 6))


if __name__ == "__main__":
    CacheBenchFlow()
'''


def run(path: Path, *args: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(path), "run", *args], capture_output=True, text=True,
                       cwd=path.parent, env={**os.environ, "REELFLOW_PROGRESS": "0"})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_cache: the flow failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    from reelflow import Run

    run_id = p.stdout.split("Run CacheBenchFlow/", 1)[1].split()[0]
    return wall, Run(f"CacheBenchFlow/{run_id}").data.rmse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"{args.rows:,} rows; {args.repeat} round(s)")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["REELFLOW_HOME"] = str(Path(tmp) / "home")
        path = Path(tmp) / "cache_bench_flow.py"
        path.write_text(FLOW.format(salt=0, rows=args.rows))
        warm, _ = run(path, "--cache")
        print(f"warm-up run with --cache (fills the cache): {warm:.2f} s")
        times: dict[str, list[float]] = {"uncached": [], "cached": []}
        for i in range(1, args.repeat + 1):
            path.write_text(FLOW.format(salt=i, rows=args.rows))  # evaluate changed
            order = [("uncached", ()), ("cached", ("--cache",))]
            answers = {}
            for name, extra in (order if i % 2 else order[::-1]):
                wall, answers[name] = run(path, *extra)
                times[name].append(wall)
            if answers["cached"] != answers["uncached"]:
                sys.exit(f"bench_cache: cached and uncached runs disagree: {answers}")
            print(f"round {i}: uncached {times['uncached'][-1]:.2f} s, cached {times['cached'][-1]:.2f} s, "
                  f"same answer (rmse {answers['cached']:.6f})")
    u, c = statistics.median(times["uncached"]), statistics.median(times["cached"])
    print(f"\nre-run after changing 1 of 5 steps (median of {args.repeat}):")
    print(f"  uncached (every step runs)         {u:6.2f} s  (min {min(times['uncached']):.2f}, max {max(times['uncached']):.2f})")
    print(f"  --cache (3 steps cloned, 2 run)    {c:6.2f} s  (min {min(times['cached']):.2f}, max {max(times['cached']):.2f})")
    print(f"  ratio uncached / cached            {u / c:6.2f}x")


if __name__ == "__main__":
    main()
