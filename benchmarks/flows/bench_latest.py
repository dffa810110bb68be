"""Finding the newest runs at 1, 1,000 and 100,000 runs of a flow.

    python benchmarks/flows/bench_latest.py [--repeat 15] [--sizes 1,1000,100000]

For each size a fresh store is filled directly through the store API (one
``MetadataStore.write()`` transaction inserting run rows; every 10th run
failed, runs alternate between two users), then timed, in a warm process:
  latest_run              Flow("F").latest_run in the caller's namespace
  latest_successful_run   Flow("F").latest_successful_run
  runs list --limit 20    find_runs("F", limit=20), what the CLI command reads
  load every run (old)    MetadataStore.list_runs("F"): what latest_run did before
Each figure is the median with min-max over --repeat rounds, the operations
interleaved within a round. The claim checked: the first three stay flat from
1 to 100,000 runs (ratio of the 100,000-run median to the 1-run median).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def fill(home: Path, n: int) -> None:
    from sqlalchemy import insert

    from reelflow.store import get_store
    from reelflow.store import _schema as s

    md = get_store().metadata
    now = time.time()
    rows = [{"flow_name": "F", "user": "bob" if i % 2 else "alice", "status": "failed" if i % 10 == 9 else "succeeded",
             "created_at": now - n + i, "finished_at": now - n + i + 0.5, "tags": "[]",
             "system_tags": json.dumps([f"user:{'bob' if i % 2 else 'alice'}"]), "graph": "{}", "params": "{}"}
            for i in range(n)]
    with md.write() as conn:
        for lo in range(0, n, 10_000):
            conn.execute(insert(s.runs), rows[lo : lo + 10_000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sizes", default="1,1000,100000")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; SQLite store")
    results: dict[int, dict[str, list[float]]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["REELFLOW_HOME"] = str(Path(tmp) / "home")
            from reelflow import store as store_mod

            store_mod._stores.clear()
            fill(Path(tmp), n)
            from reelflow import Flow, namespace
            from reelflow.client import find_runs
            from reelflow.store import get_store

            namespace("user:alice")
            md = get_store().metadata
            ops: dict[str, Callable[[], Any]] = {
                "latest_run": lambda: Flow("F").latest_run,
                "latest_successful_run": lambda: Flow("F").latest_successful_run,
                "runs list --limit 20": lambda: find_runs("F", limit=20),
                "load every run (old)": lambda: md.list_runs("F"),
            }
            assert Flow("F").latest_run is not None and len(find_runs("F", limit=20)) == min(20, (n + 1) // 2)
            times: dict[str, list[float]] = {k: [] for k in ops}
            for r in range(args.repeat):
                order = list(ops.items())
                for name, fn in order if r % 2 == 0 else order[::-1]:
                    if name.endswith("(old)") and n > 10_000 and r >= 3:
                        continue  # seconds per call: three rounds are enough
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            results[n] = times
            md.close()
            store_mod._stores.clear()
    names = list(next(iter(results.values())))
    print(f"\nper call, ms: median (min-max) over {args.repeat} interleaved rounds")
    print(f"{'operation':<24}" + "".join(f"{f'{n:,} runs':>24}" for n in sizes) + "   growth (largest / 1 run)")
    for name in names:
        cells = "".join(f"{np.median(results[n][name]) * 1e3:9.2f} ({min(results[n][name]) * 1e3:.2f}-"
                        f"{max(results[n][name]) * 1e3:.2f})".rjust(24) for n in sizes)
        growth = np.median(results[sizes[-1]][name]) / np.median(results[sizes[0]][name])
        print(f"{name:<24}{cells}   {growth:.1f}x")


if __name__ == "__main__":
    main()
