"""Speed of the web UI on a big store (issue #11's figures).

Builds a store through the store API: 10,000 runs (with tags, parameters and
metrics), one run of 1,000 tasks with artifacts, and one task with a 200 MB
stdout log. Then times the pages in-process (server time: the request through the
ASGI app, no network):

- runs list of 10,000 runs: goal < 300 ms (first page, a deep page, filtered pages)
- a run page with 1,000 tasks: goal < 1 s
- a 200 MB log: the task page and a log window read one chunk, not the whole log
  (peak Python memory while serving it is printed)

    python benchmarks/ui/bench_ui.py [--runs 10000] [--tasks 1000] [--log-mb 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path


def build(home: Path, n_runs: int, n_tasks: int, log_mb: int) -> dict[str, str]:
    from reelflow.config import load_config
    from reelflow.runtime._logs import LogSink
    from reelflow.store import ArtifactRef, Store, TaskRecord

    store = Store(load_config(home))
    md = store.metadata
    graph = {"start": {"type": "start", "next": ["train"]}, "train": {"type": "foreach", "next": ["end"]},
             "end": {"type": "end", "next": []}}
    t0 = time.perf_counter()
    flows = ["RecsDemoFlow", "ArtworkFlow", "TrainFlow", "EvalFlow"]
    for i in range(n_runs):
        rid = md.create_run(flows[i % 4], user=f"user{i % 7}", tags=[f"team{i % 5}", "nightly" if i % 2 else "adhoc"],
                            graph=graph, params={"alpha": {"repr": repr(i / n_runs)}})
        md.finish_run(rid, "failed" if i % 10 == 0 else "succeeded")
        if i % 50 == 0:  # a few metric points per run, as tasks record them
            rec = TaskRecord("start", 1, 0, "succeeded", "start", time.time(), time.time(),
                             metrics=[("ndcg@10", (i % 100) / 100, None, time.time())])
            md.record_task(rid, rec, {})
    print(f"built {n_runs} runs in {time.perf_counter() - t0:.1f} s")

    big = md.create_run("FanOutFlow", user="bench", graph=graph)
    ref = store.save({"weights": list(range(100))})
    start = time.time()
    items = [(TaskRecord("start", 1, 0, "succeeded", "start", start, start + 0.1), {"model": ref})]
    for t in range(2, n_tasks + 2):
        arts = {"model": ref, "score": ArtifactRef(ref.key, 8, "float")}
        items.append((TaskRecord("train", t, 0, "succeeded", f"train/{t}", start + 0.1 + t * 0.01,
                                 start + 0.5 + t * 0.01, split_index=t - 2), arts))
    items.append((TaskRecord("end", n_tasks + 2, 0, "succeeded", "end", start + 30, start + 31), {}))
    md.record_tasks(big, items)
    md.finish_run(big, "succeeded")

    logrun = md.create_run("LogFlow", user="bench", graph={"start": {"type": "end", "next": []}})
    sink = LogSink(store)
    line = b"epoch 00000 loss 0.123456 " + b"x" * 70 + b"\n"
    block = line * (1 << 14)  # ~1.6 MB
    written = 0
    while written < log_mb << 20:
        sink.write(block)
        written += len(block)
    key = sink.close()
    md.record_task(logrun, TaskRecord("start", 1, 0, "succeeded", "start", start, start + 1, stdout_key=key), {})
    md.finish_run(logrun, "succeeded")
    print(f"built the store in {time.perf_counter() - t0:.1f} s ({written / 2**20:.0f} MB log)")
    return {"big": big, "log": logrun}


def timed(client, path: str, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(times) * 1000, max(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=1_000)
    ap.add_argument("--log-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from reelflow.config import load_config
    from reelflow.store import Store
    from reelflow.ui import create_app

    with tempfile.TemporaryDirectory(prefix="reelflow-bench-ui-") as tmp:
        home = Path(tmp) / "home"
        ids = build(home, args.runs, args.tasks, args.log_mb)
        store = Store(load_config(home))
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            client.get("/")  # warm up: templates compiled, connection open
            rows = [
                ("runs list, first page", "/", 300),
                ("runs list, page 150", "/?page=150", 300),
                ("runs list, flow + status + tag", "/?flow=TrainFlow&status=failed&tag=team2", 300),
                ("runs list, user + last 24 h", "/?user=user3&since=24", 300),
                (f"run page, {args.tasks} tasks", f"/runs/FanOutFlow/{ids['big']}", 1000),
                (f"task page, {args.log_mb} MB log", f"/runs/LogFlow/{ids['log']}/start/1", 1000),
                ("log window at 150 MB", f"/runs/LogFlow/{ids['log']}/start/1/logs/stdout?offset={150 << 20}",
                 1000),
            ]
            print(f"\n{'page':<34} {'median ms':>10} {'max ms':>9} {'goal ms':>8}  verdict")
            for label, path, goal in rows:
                med, worst = timed(client, path, args.repeat)
                print(f"{label:<34} {med:>10.1f} {worst:>9.1f} {goal:>8}  {'ok' if med < goal else 'SLOWER'}")
            med, _ = timed(client, "/?where=metrics.ndcg%4010+%3E+0.5", 3)
            print(f"{'runs list, metric expression':<34} {med:>10.1f} {'':>9} {'-':>8}  "
                  "(checks final metrics of every SQL match)")
            tracemalloc.start()
            client.get(f"/runs/LogFlow/{ids['log']}/start/1/logs/stdout?offset={190 << 20}")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"\npeak Python memory serving a window of the {args.log_mb} MB log: {peak / 2**20:.1f} MB "
                  f"(the log is read chunk by chunk, never whole)")
        store.metadata.close()


if __name__ == "__main__":
    main()
