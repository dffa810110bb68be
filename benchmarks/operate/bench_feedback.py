"""Serving with feedback logging on vs off: the request path must not pay for the log.

    python benchmarks/operate/bench_feedback.py [--requests 3000] [--concurrency 8,32] [--rounds 3]

Registers an ALS model (synthetic data, 64 factors), then starts `reelflow serve`
twice on 127.0.0.1 -- REELFLOW_SERVE_FEEDBACK=1 (every response logged to Parquet,
flushed each second by a background thread) and =0 -- and drives both with the same
bounded httpx/asyncio load (the driver of benchmarks/serving/bench_serving.py),
rounds interleaved so machine noise hits both alike. Prints requests/s and p50/p99
per setting and the ratios. Goal of issue #10: throughput >= 0.9x of logging off,
p99 <= 1.2x. Also reports how many served rows reached the Parquet table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from bench_serving import free_port, measure, wait_ready  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", default="8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["REELFLOW_HOME"] = str(home)
        from reelflow import models
        from reelflow.recs import ALS
        from reelflow.recs.datasets import synthetic

        data = synthetic(args.users, args.items, 300_000, seed=0)
        models.register("bench", ALS(factors=64, iterations=5).fit(data), alias="champion")
        levels = [int(c) for c in args.concurrency.split(",")]
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; model ALS on {data}")
        servers = {}
        try:
            for name, flag in (("logging off", "0"), ("logging on", "1")):
                port = free_port()
                env = {**os.environ, "REELFLOW_SERVE_FEEDBACK": flag}
                proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "serve", "bench@champion", "--port",
                                         str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
                url = f"http://127.0.0.1:{port}"
                servers[name] = (url, proc)
                wait_ready(url, proc)
            results: dict[tuple[str, int], list[dict[str, float]]] = {}
            for r in range(args.rounds):
                for c in levels:
                    print(f"round {r + 1}, concurrency {c}")
                    for name, (url, _) in servers.items():
                        results.setdefault((name, c), []).append(measure(name, url, args.requests, c, args.users))
        finally:
            for _, proc in servers.values():
                proc.terminate()
                proc.wait(60)
        print("\nmedian over rounds")
        for c in levels:
            med = {n: {k: float(np.median([x[k] for x in results[(n, c)]])) for k in ("rps", "p50", "p99")}
                   for n in servers}
            on, off = med["logging on"], med["logging off"]
            print(f"concurrency {c:>3}: off {off['rps']:.0f} req/s p99 {off['p99']:.2f} ms | on {on['rps']:.0f} req/s "
                  f"p99 {on['p99']:.2f} ms | throughput {on['rps'] / off['rps']:.2f}x (goal >= 0.9x), "
                  f"p99 {on['p99'] / off['p99']:.2f}x (goal <= 1.2x)")
        import pyarrow.parquet as pq

        parts = sorted((home / "feedback" / "bench" / "served").rglob("part-*.parquet"))
        rows = sum(pq.read_metadata(p).num_rows for p in parts)
        print(f"served rows logged: {rows} in {len(parts)} Parquet parts (the 'on' server answered every request)")


if __name__ == "__main__":
    main()
