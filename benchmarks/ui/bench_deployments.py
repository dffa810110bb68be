"""Speed of the UI's Deployments pages on a store with many deployments and firings.

Fills the continuous-operation tables directly (N deployments with hourly schedules in
a time zone and an event trigger, half paused, and M firings spread over them), then
times the pages in-process (server time through the ASGI app, no network), median of
``--repeat``, against reading every deployment the way ``reelflow deployments list``
does (``reelflow.operate.list_deployments()``, no pagination) as the baseline::

    python benchmarks/ui/bench_deployments.py [--deployments 10000] [--firings 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def build(home: Path, n: int, m: int) -> None:
    from sqlalchemy import insert

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.store._operate_db import operate_tables

    store = Store(load_config(home))
    store.preflight()
    t = operate_tables(store.metadata)
    now = time.time()
    trig = json.dumps({"cron": "0 * * * *", "timezone": "Europe/Berlin",
                       "events": [{"name": "ratings.arrived", "parameters": {}}], "flows": []})
    with store.metadata.write(flush_blobs=False) as c:
        c.execute(insert(t.deployments), [dict(
            name=f"d{i:06d}", version=1, flow_name="TrainFlow", paused=i % 2, next_slot=now + 3600, last_slot=now,
            event_cursor=0, run_cursor=now, created_at=now, updated_at=now, user="bench") for i in range(n)])
        c.execute(insert(t.versions), [dict(
            name=f"d{i:06d}", version=1, flow_name="TrainFlow", entry="flow.py", code="{}", params="{}",
            param_types="{}", triggers=trig, catchup="latest", max_concurrent=1, on_busy="queue", source=None,
            created_at=now, user="bench") for i in range(n)])
        c.execute(insert(t.firings), [dict(
            deployment=f"d{i % n:06d}", version=1, key=f"event:{i}", params="{}", status="succeeded",
            trigger=json.dumps({"type": "event", "deployment": f"d{i % n:06d}",
                                "event": {"name": "ratings.arrived", "payload": {}, "timestamp": now, "id": i}}),
            run_id=str(i + 1), created_at=now, finished_at=now) for i in range(m)])
    store.metadata.close()


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deployments", type=int, default=10_000)
    ap.add_argument("--firings", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.ui import create_app

    with tempfile.TemporaryDirectory(prefix="reelflow-bench-deploy-") as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        build(home, args.deployments, args.firings)
        print(f"built {args.deployments} deployments, {args.firings} firings in {time.perf_counter() - t0:.1f} s")
        os.environ["REELFLOW_HOME"] = str(home)
        from reelflow.operate import list_deployments

        store = Store(load_config(home))
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            def get(path: str):
                def go() -> None:
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code)
                return go

            get("/deployments")()  # warm up
            base = timed(list_deployments, max(3, args.repeat // 3))
            print(f"\n{'page':<40} {'median ms':>10}  vs baseline")
            for label, path in [("deployments, first page (50)", "/deployments"),
                                ("deployments, last page", f"/deployments?page={-(-args.deployments // 50)}"),
                                ("deployments, name filter", "/deployments?q=d0099"),
                                ("one deployment (next fires, firings)", "/deployments/d000042")]:
                ms = timed(get(path), args.repeat)
                print(f"{label:<40} {ms:>10.1f}  {base / ms:>6.1f}x faster")
            print(f"{'baseline: list_deployments(), all rows':<40} {base:>10.1f}")
        store.metadata.close()


if __name__ == "__main__":
    main()
