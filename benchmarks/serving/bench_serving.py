"""Serving benchmark: `reelflow serve` against bare FastAPI apps serving the same model.

    python benchmarks/serving/bench_serving.py [--requests 3000] [--concurrency 8,32] [--pin] [--feedback-off]

Two references, same route and JSON, same uvicorn settings:
  bare numpy FastAPI   the top-10 computed directly with numpy from the model's
                       arrays (``V @ U[p]``, seen items masked through the CSR
                       ``indptr``/``indices`` slice, ``argpartition``, sort ten):
                       the floor any server of this model can reach. Goal of
                       issue #16: reelflow >= 0.9x its throughput, p99 <= 1.2x,
                       at 8 and 32 connections.
  bare FastAPI         the same app calling ``model.recommend`` (what a user
                       would write around reelflow's model).

Load comes from `wrk` when installed (apt-get install wrk; bounded in time), else
from httpx/asyncio (bounded in requests). A recommender (ALS, 64 factors) is fitted on data of ML-1M shape (synthetic
generator, 6,040 users x 3,706 items) and registered. Then, in this one run:
`reelflow serve bench@champion` and a bare FastAPI + uvicorn app that loads the
same model and calls its `recommend` directly, each driven with the same bounded
load on 127.0.0.1 (httpx/asyncio, fixed concurrency, warm-up excluded). Prints
p50/p99 latency, requests/s, the ratios, and reelflow's time from start to ready.

Last, the responsiveness check of issue #8: three clients (in their own process)
send the largest request the API allows (1000 users x k=100) while this process
times `/healthz` every 50 ms. Printed: /healthz p50 and max under that load (the
issue saw 11-17 s when scoring ran on the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

BARE_APP = textwrap.dedent('''
    import sys
    from fastapi import FastAPI
    from pydantic import BaseModel
    import uvicorn
    from reelflow import models

    model = models.load("bench@champion")
    app = FastAPI()

    class Req(BaseModel):
        user_id: int | str
        k: int = 10
        exclude_seen: bool = True

    @app.post("/v1/models/bench/recommend")
    async def recommend(req: Req):
        ids, scores = model.recommend([req.user_id], n=req.k, exclude_seen=req.exclude_seen)
        return {"items": [{"item_id": i, "score": s} for i, s in zip(ids[0].tolist(), scores[0].tolist())]}

    @app.get("/readyz")
    async def ready():
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
''')


BARE_NUMPY_APP = textwrap.dedent('''
    import sys
    import numpy as np
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel
    import uvicorn
    from reelflow import models

    m = models.load("bench@champion")
    U, V = m.user_factors_, m.item_factors_
    indptr, indices = m.user_items_.indptr, m.user_items_.indices
    pos = {u: i for i, u in enumerate(m.user_ids_.tolist())}
    item_ids = m.item_ids_
    app = FastAPI()

    class Req(BaseModel):
        user_id: int | str
        k: int = 10
        exclude_seen: bool = True

    @app.post("/v1/models/bench/recommend")
    async def recommend(req: Req):
        p = pos.get(req.user_id)
        if p is None:
            raise HTTPException(404, "unknown user")
        s = V @ U[p]
        if req.exclude_seen:
            s[indices[indptr[p]:indptr[p + 1]]] = -np.inf
        part = np.argpartition(-s, req.k - 1)[:req.k]
        part = part[np.argsort(-s[part], kind="stable")]
        return {"items": [{"item_id": i, "score": v} for i, v in zip(item_ids[part].tolist(), s[part].tolist())]}

    @app.get("/readyz")
    async def ready():
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
''')


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60, path: str = "/readyz") -> float:  # type: ignore[type-arg]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.TransportError:
            time.sleep(0.01)
    raise SystemExit(f"{url} not ready after {timeout}s")


async def drive(url: str, n: int, concurrency: int, n_users: int) -> tuple[list[float], float, int]:
    rng = np.random.default_rng(0)
    users = rng.integers(0, n_users, n).tolist()
    latencies: list[float] = []
    errors = 0
    queue = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal errors
            for i in queue:
                t = time.perf_counter()
                r = await client.post("/v1/models/bench/recommend", json={"user_id": users[i], "k": 10})
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return latencies, elapsed, errors


WRK_SCRIPT = textwrap.dedent('''
    math.randomseed(1)
    request = function()
        local body = string.format('BODY', math.random(0, MAX_USER))
        return wrk.format("POST", "PATH", {["Content-Type"] = "application/json"}, body)
    end
''')
REQUESTS = {  # path and JSON body (Lua format string) per server kind
    "reelflow": ("/v1/models/bench/recommend", '{"user_id": %d, "k": 10}'),
    "mlflow": ("/invocations", '{"dataframe_split": {"columns": ["user_id"], "data": [[%d]]}}'),
}

HEAVY_CLIENTS = textwrap.dedent('''
    import json, sys, threading, time
    import httpx

    url, clients, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    body = {"user_ids": list(range(1000)), "k": 100}
    took, statuses = [], []

    def client():
        with httpx.Client(timeout=600) as c:
            for _ in range(each):
                t = time.perf_counter()
                statuses.append(c.post(url + "/v1/models/bench/recommend", json=body).status_code)
                took.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"took": took, "statuses": statuses}))
''')


def measure_heavy(url: str, clients: int = 3, each: int = 4) -> dict[str, float]:
    """/healthz latency while ``clients`` send the largest allowed requests (bounded: clients x each)."""
    import json

    heavy = subprocess.Popen([sys.executable, "-c", HEAVY_CLIENTS, url, str(clients), str(each)],
                             stdout=subprocess.PIPE, text=True)
    health: list[float] = []
    try:
        with httpx.Client(timeout=120) as probe:
            while heavy.poll() is None:
                t = time.perf_counter()
                probe.get(f"{url}/healthz")
                health.append(time.perf_counter() - t)
                time.sleep(0.05)
        out = json.loads(heavy.communicate(timeout=600)[0])
    finally:
        if heavy.poll() is None:
            heavy.kill()
            heavy.wait()
    ms = np.array(health) * 1e3
    res = {"health_p50": float(np.percentile(ms, 50)), "health_max": float(ms.max()),
           "heavy_median_s": float(np.median(out["took"])), "heavy_ok": sum(s == 200 for s in out["statuses"])}
    print(f"  /healthz while {clients} clients send {clients * each} requests of 1000 users x k=100 "
          f"({res['heavy_ok']} answered 200, median {res['heavy_median_s']:.2f} s): "
          f"p50 {res['health_p50']:.1f} ms, max {res['health_max']:.1f} ms over {len(health)} probes")
    return res


MLFLOW_MODEL = textwrap.dedent('''
    import sys
    import mlflow.pyfunc

    class Recommender(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            from reelflow.recs import RecommenderBase
            self.model = RecommenderBase.load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            ids, scores = self.model.recommend(model_input["user_id"].tolist(), n=10)
            return [{"items": [{"item_id": int(i), "score": float(s)} for i, s in zip(r, sc)]}
                    for r, sc in zip(ids, scores)]

    mlflow.pyfunc.save_model(sys.argv[2], python_model=Recommender(), artifacts={"model": sys.argv[1]})
''')


def _ms(text: str) -> float:
    value = float(text.rstrip("usm"))
    return value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s") and not text.endswith("ms") else value


# --pin: servers on one core, the load generator on another, so that neither steals the
# other's core at random (the main source of p99 noise on a 2-core machine).
PIN: dict[str, set[int]] = {}


def _pinned(role: str) -> object:
    """preexec_fn that pins a child to this role's cores (no-op when not pinning)."""
    cores = PIN.get(role)
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its child processes (Linux /proc)."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def measure_wrk(name: str, url: str, seconds: int, concurrency: int, n_users: int, tmp: Path,
                kind: str = "reelflow", pid: int | None = None) -> dict[str, float]:
    """Load from wrk (C, one thread): the load generator takes less of the 2 cores than Python would."""
    import re

    path, body = REQUESTS[kind]
    script = tmp / f"post-{kind}.lua"
    script.write_text(WRK_SCRIPT.replace("MAX_USER", str(n_users - 1)).replace("PATH", path).replace("BODY", body))
    subprocess.run(["wrk", "-t1", f"-c{concurrency}", "-d1s", "-s", str(script), url], capture_output=True,
                   preexec_fn=_pinned("load"))  # type: ignore[arg-type]  # warm-up
    cpu0 = _tree_cpu(pid) if pid is not None and Path("/proc").is_dir() else None
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True,
                         preexec_fn=_pinned("load")).stdout  # type: ignore[arg-type]
    cpu = _tree_cpu(pid) - cpu0 if cpu0 is not None and pid is not None else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = 1e6 * cpu / max(total, 1)
    print(f"  {name:<22} {rps:>8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   errors {errors} ({total} requests)"
          f"   server CPU {cpu_us:4.0f} us/request")
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "cpu_us": cpu_us}


def measure(name: str, url: str, n: int, concurrency: int, n_users: int) -> dict[str, float]:
    asyncio.run(drive(url, 200, concurrency, n_users))  # warm-up
    lat, elapsed, errors = asyncio.run(drive(url, n, concurrency, n_users))
    ms = np.array(lat) * 1e3
    res = {"rps": n / elapsed, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "errors": errors}
    print(f"  {name:<22} {res['rps']:>8.0f} req/s   p50 {res['p50']:6.2f} ms   p99 {res['p99']:6.2f} ms   errors {errors}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", default="8,32", help="comma-separated connection counts")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4, help="wrk: seconds per round (bounded in time)")
    ap.add_argument("--httpx", action="store_true", help="use the Python load generator even if wrk exists")
    ap.add_argument("--mlflow-python", default=None,
                    help="an interpreter with mlflow and reelflow installed, to include `mlflow models serve`")
    ap.add_argument("--pin", action="store_true",
                    help="pin the servers to one core and wrk to another (Linux, 2+ cores): less p99 noise")
    ap.add_argument("--feedback-off", action="store_true",
                    help="also run reelflow serve with REELFLOW_SERVE_FEEDBACK=0: what its request log costs")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.pin and len(cores) >= 2:
        PIN.update(server={cores[0]}, load={cores[1]})
        print(f"pinned: servers on core {cores[0]}, load generator on core {cores[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "REELFLOW_HOME": str(Path(tmp) / "home")}
        os.environ.update(env)
        from reelflow import models
        from reelflow.recs import ALS
        from reelflow.recs.datasets import synthetic

        data = synthetic(6040, 3706, 1_000_000, seed=0)
        models.register("bench", ALS(factors=64, iterations=15).fit(data), alias="champion")
        bare_file = Path(tmp) / "bare_app.py"
        bare_file.write_text(BARE_APP)
        numpy_file = Path(tmp) / "bare_numpy_app.py"
        numpy_file.write_text(BARE_NUMPY_APP)
        levels = [int(c) for c in str(args.concurrency).split(",")]
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
        print(f"model: ALS on {data}; {args.requests} requests per round at concurrency {levels}, 127.0.0.1")
        use_wrk = shutil.which("wrk") is not None and not args.httpx
        print("load generator:", "wrk (Debian package)" if use_wrk else "httpx/asyncio (install wrk for a lighter one)")
        servers = {}
        try:
            names = ["bare numpy FastAPI", "bare FastAPI", "reelflow serve"]
            if args.feedback_off:
                names.append("reelflow, log off")
            for name in names:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                if name.startswith("bare"):
                    cmd = [sys.executable, str(numpy_file if "numpy" in name else bare_file), str(port)]
                else:
                    cmd = [sys.executable, "-m", "reelflow.cli", "serve", "bench@champion", "--port", str(port),
                           *os.environ.get("BENCH_SERVE_ARGS", "").split()]
                server_env = {**env, "REELFLOW_SERVE_FEEDBACK": "0"} if name.endswith("log off") else env
                proc = subprocess.Popen(cmd, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, preexec_fn=_pinned("server"))  # type: ignore[arg-type]
                servers[name] = (url, proc, wait_ready(url, proc))
            mlflow_python = args.mlflow_python or (sys.executable if _importable("mlflow") else None)
            if mlflow_python and use_wrk:
                model_file = Path(tmp) / "bench.rfmodel"
                models.load("bench@champion").save(model_file)
                subprocess.run([mlflow_python, "-c", MLFLOW_MODEL, str(model_file), str(Path(tmp) / "mlflow_model")],
                               env=env, check=True, capture_output=True)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                cmd = [mlflow_python, "-m", "mlflow", "models", "serve", "-m", str(Path(tmp) / "mlflow_model"),
                       "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
                ml_env = {**env, "PATH": f"{Path(mlflow_python).parent}{os.pathsep}{env.get('PATH', '')}"}
                proc = subprocess.Popen(cmd, env=ml_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=_pinned("server"))  # type: ignore[arg-type]
                servers["mlflow models serve"] = (url, proc, wait_ready(url, proc, timeout=120, path="/ping"))
            rounds: dict[tuple[str, int], list[dict[str, float]]] = {(n, c): [] for n in servers for c in levels}
            for r in range(args.rounds):  # interleaved, order rotating, so drift hits all alike
                print(f" round {r + 1}")
                names = list(servers)
                names = names[r % len(names):] + names[:r % len(names)]
                for conc in levels:
                    for name in names:
                        url = servers[name][0]
                        label = f"{name} @{conc}"
                        if use_wrk:
                            kind = "mlflow" if name.startswith("mlflow") else "reelflow"
                            rounds[name, conc].append(measure_wrk(label, url, args.seconds, conc, data.n_users,
                                                                  Path(tmp), kind, servers[name][1].pid))
                        else:
                            rounds[name, conc].append(measure(label, url, args.requests, conc, data.n_users))
            print("\n responsiveness under heavy requests (reelflow serve):")
            measure_heavy(servers["reelflow serve"][0])
        finally:
            for _, proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
        print(f"\n load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f" medians (min-max) over {args.rounds} interleaved rounds:")
        med: dict[tuple[str, int], dict[str, float]] = {}
        for (n, c), rs in rounds.items():
            med[n, c] = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
            lo_hi = {k: (min(x[k] for x in rs), max(x[k] for x in rs)) for k in ("rps", "p99")}
            print(f"  {n:<20} @{c:<3} {med[n, c]['rps']:>6.0f} req/s ({lo_hi['rps'][0]:.0f}-{lo_hi['rps'][1]:.0f})   "
                  f"p50 {med[n, c]['p50']:6.2f} ms   p99 {med[n, c]['p99']:6.2f} ms "
                  f"({lo_hi['p99'][0]:.2f}-{lo_hi['p99'][1]:.2f})")
        for c in levels:
            rf, ref, bare = med["reelflow serve", c], med["bare numpy FastAPI", c], med["bare FastAPI", c]
            print(f"\n  @{c} connections, reelflow serve / bare numpy FastAPI (medians): throughput "
                  f"{rf['rps'] / ref['rps']:.2f}x (goal >= 0.9x {'ok' if rf['rps'] >= 0.9 * ref['rps'] else 'MISSED'}), "
                  f"p99 {rf['p99'] / ref['p99']:.2f}x (goal <= 1.2x {'ok' if rf['p99'] <= 1.2 * ref['p99'] else 'MISSED'})")
            if "cpu_us" in rf:
                print(f"  @{c} connections, server CPU per request (load-insensitive): reelflow {rf['cpu_us']:.0f} us, "
                      f"bare numpy {ref['cpu_us']:.0f} us: {rf['cpu_us'] / ref['cpu_us']:.2f}x")
            print(f"  @{c} connections, reelflow serve / bare FastAPI calling recommend: throughput "
                  f"{rf['rps'] / bare['rps']:.2f}x, p99 {rf['p99'] / bare['p99']:.2f}x")
            if ("reelflow, log off", c) in med:
                off = med["reelflow, log off", c]
                print(f"  @{c} connections, reelflow serve with / without its feedback log: throughput "
                      f"{rf['rps'] / off['rps']:.2f}x, p99 {rf['p99'] / off['p99']:.2f}x, server CPU per request "
                      f"{rf['cpu_us'] / off['cpu_us']:.2f}x" if "cpu_us" in rf else "")
        results = {n: med[n, levels[0]] for n in servers}
        for n in results:
            results[n]["ready"] = servers[n][2]
        rf, bare = results["reelflow serve"], results["bare FastAPI"]
        print(f"  reelflow start to ready:        {rf['ready']:.2f}s (goal <= 1.5 s; bare app {bare['ready']:.2f}s)")
        if "mlflow models serve" in results:
            ml = results["mlflow models serve"]
            print(f"  reelflow vs mlflow models serve: {rf['rps'] / ml['rps']:.1f}x the throughput, "
                  f"p99 {rf['p99']:.1f} vs {ml['p99']:.1f} ms; mlflow ready after {ml['ready']:.1f}s")
        else:
            print("  mlflow not run (give --mlflow-python, or install mlflow here; needs wrk): the issue quotes "
                  "363 req/s, p99 48 ms")


if __name__ == "__main__":
    main()
