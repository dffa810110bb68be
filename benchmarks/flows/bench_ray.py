"""Ray executor benchmark: per-task overhead against Ray itself, and throughput on 1 vs 2 nodes.

    python benchmarks/flows/bench_ray.py [--sizes 100,1000] [--repeat 3] [--skip-metaflow] [--skip-throughput]
    BENCH_METAFLOW_PATH=/tmp/mf python benchmarks/flows/bench_ray.py   # metaflow from pip --target

1. Per-task overhead, foreach of N trivial tasks (N = 100 and 1,000), each engine timed
   as the whole ``python flow.py run`` command, engines interleaved per repetition:
     reelflow ray         ``--executor ray`` on a one-node Ray cluster (``ray start``, this
                          machine's CPUs), store in a local folder + SQLite
     reelflow forkserver  the local default
     metaflow             its local runtime (when importable)
     bare ray.remote      N ``ray.remote`` calls of a trivial function from this script,
                          submitted at once and gathered (Ray's own floor)
   Per-task cost = (t(N=1000) - t(N=100)) / 900: start-up and fixed costs cancel out
   (Metaflow: N = 100 and 300 by default, --metaflow-sizes; its runtime is far slower).
   Goal: reelflow on Ray adds at most 5 ms per task over bare ``ray.remote``.
2. Throughput of a CPU-heavy foreach (64 ridge-regression fits, ~0.1-0.3 s each) on a
   Ray cluster of 1 node vs 2 nodes of this machine, each node given 1 CPU, store on
   PostgreSQL + S3 (moto on 127.0.0.1) as a multi-node cluster requires. On a 2-core
   machine shared with other work, 2 nodes can at best double 1 node's throughput.

Medians over repetitions with min-max; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FOREACH = """
from {lib} import FlowSpec, Parameter, step

class RayBench(FlowSpec):
    n = Parameter("n", default=100)

    @step
    def start(self):
        self.items = list(range(int(self.n)))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.y = self.input + 1
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    RayBench()
"""

FITS = """
from reelflow import FlowSpec, step, resources

class Fits(FlowSpec):
    @step
    def start(self):
        self.seeds = list(range(64))
        self.next(self.fit, foreach="seeds")

    @resources(cpu=1, memory=256)
    @step
    def fit(self):
        import numpy as np
        rng = np.random.default_rng(self.input)
        x = rng.normal(size=(1500, 300))
        y = x @ rng.normal(size=300) + rng.normal(size=1500)
        best = None
        for lam in (0.01, 0.1, 1.0, 10.0):
            for _ in range(3):
                w = np.linalg.solve(x.T @ x + lam * np.eye(300), x.T @ y)
            err = float(np.mean((x @ w - y) ** 2))
            best = err if best is None else min(best, err)
        self.err = best
        self.next(self.join)

    @step
    def join(self, inputs):
        self.mean_err = sum(i.err for i in inputs) / len(inputs)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Fits()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RAY = str(Path(sys.executable).parent / "ray")
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Cluster:
    """``ray start`` nodes on 127.0.0.1, stopped with ``ray stop --force``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="rf-bray-", dir="/tmp")
        self.env = {**RAY_ENV, **env}

    def start(self, nodes: int, cpus_per_node: int) -> Cluster:
        common = [f"--num-cpus={cpus_per_node}", "--node-ip-address=127.0.0.1", "--object-store-memory=100000000",
                  "--disable-usage-stats"]
        subprocess.run([RAY, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--temp-dir={self.tmp}", *common], check=True, capture_output=True, env=self.env)
        for _ in range(nodes - 1):
            subprocess.run([RAY, "start", f"--address={self.address}", *common], check=True, capture_output=True,
                           env=self.env)
        return self

    def stop(self) -> None:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=self.env)
        shutil.rmtree(self.tmp, ignore_errors=True)


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return dt


def bare_ray(address: str, n: int) -> float:
    """Seconds for ``n`` trivial ``ray.remote`` calls, submitted at once and gathered."""
    code = textwrap.dedent(f"""
        import time, logging, ray
        ray.init(address={address!r}, logging_level=logging.WARNING, log_to_driver=False)
        @ray.remote(max_retries=0)
        def f(x):
            return x + 1
        ray.get([f.remote(i) for i in range(64)])  # workers up, function exported
        t0 = time.perf_counter()
        assert sum(ray.get([f.remote(i) for i in range({n})])) == {n * (n + 1) // 2}
        print(time.perf_counter() - t0)
    """)
    p = subprocess.run([sys.executable, "-c", code], env=RAY_ENV, capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def stat(xs: list[float], scale: float = 1.0, unit: str = "s") -> str:
    xs = [x * scale for x in xs]
    return f"{statistics.median(xs):8.3f} {unit} ({min(xs):.3f}-{max(xs):.3f})"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def overhead(args: argparse.Namespace, root: Path, have_mf: bool) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    mf_sizes = [int(s) for s in args.metaflow_sizes.split(",")]
    cluster = Cluster({}).start(nodes=1, cpus_per_node=os.cpu_count() or 1)
    try:
        engines: dict[str, tuple[Path, list[str], dict[str, str]]] = {}
        for name, lib, extra in (("reelflow ray", "reelflow", ["--executor", "ray"]),
                                 ("reelflow forkserver", "reelflow", []), ("metaflow", "metaflow", [])):
            if lib == "metaflow" and not have_mf:
                continue
            folder = root / name.replace(" ", "_")
            folder.mkdir()
            path = folder / "flow.py"
            path.write_text(FOREACH.format(lib=lib))
            env = {**RAY_ENV, "PYTHONUNBUFFERED": "1"}
            if lib == "reelflow":
                env["REELFLOW_HOME"] = str(folder / ".reelflow")
                if "ray" in name:
                    env["RAY_ADDRESS"] = cluster.address
                cmd = [sys.executable, str(path), "run", "--quiet", *extra]
            else:
                env.update({"METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
                            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(folder), "USERNAME": "bench"})
                if os.environ.get("BENCH_METAFLOW_PATH"):
                    env["PYTHONPATH"] = os.environ["BENCH_METAFLOW_PATH"]
                cmd = [sys.executable, str(path), "run"]
            engines[name] = (folder, cmd, env)
        times: dict[tuple[str, int], list[float]] = {}
        names = [*engines, "bare ray.remote"]
        for rep in range(args.repeat):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                for n in (mf_sizes if name == "metaflow" else sizes):
                    if name == "bare ray.remote":
                        dt = bare_ray(cluster.address, n)
                    else:
                        folder, cmd, env = engines[name]
                        dt = timed([*cmd, "--n", str(n), "--max-num-splits", str(n)], env, folder)
                    times.setdefault((name, n), []).append(dt)
                    print(f"  rep {rep} {name:20s} N={n:5d} {dt:7.2f} s", flush=True)
        print(f"\nforeach of N trivial tasks, whole command (median, min-max over {args.repeat} reps):")
        per_task: dict[str, list[float]] = {}
        for name in names:
            ns = mf_sizes if name == "metaflow" else sizes
            small, big = min(ns), max(ns)
            row = "  ".join(f"N={n}: {stat(times[(name, n)])}" for n in ns)
            per_task[name] = [(b - s) / (big - small) for b, s in zip(times[(name, big)], times[(name, small)])]
            print(f"  {name:20s} {row}   per task {stat(per_task[name], 1000, 'ms')}")
        ray_pt = statistics.median(per_task["reelflow ray"]) * 1000
        bare_pt = statistics.median(per_task["bare ray.remote"]) * 1000
        print(f"\nreelflow on Ray adds {ray_pt - bare_pt:.2f} ms per task over bare ray.remote "
              f"({ray_pt:.2f} vs {bare_pt:.2f} ms); goal <= 5 ms: {'met' if ray_pt - bare_pt <= 5 else 'NOT met'}")
        fs = statistics.median(per_task["reelflow forkserver"]) * 1000
        print(f"reelflow forkserver {fs:.2f} ms per task" + (
            f"; metaflow local {statistics.median(per_task['metaflow']) * 1000:.2f} ms per task" if have_mf else ""))
    finally:
        cluster.stop()


def _postgres(base: Path) -> tuple[str, list[str]]:
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        raise SystemExit("the throughput part needs PostgreSQL's initdb (or --skip-throughput)")
    bindir = Path(initdb).resolve().parent
    base.chmod(0o777)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    data = base / "pg"
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "pg.log"), "-o",
                    f"-k {base} -c listen_addresses='' -p {port} -F", "start"], check=True, capture_output=True)
    stop = [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
    return f"postgresql+psycopg://postgres@/postgres?host={base}&port={port}", stop


def throughput(args: argparse.Namespace, root: Path) -> None:
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request

    base = Path(tempfile.mkdtemp(prefix="rf-bpg-", dir="/tmp"))
    pg_url, pg_stop = _postgres(base)
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{s3_port}"
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    s3fs.S3FileSystem(endpoint_url=endpoint, key="test", secret="test").mkdir("bench")
    folder = root / "fits"
    folder.mkdir()
    (folder / "flow.py").write_text(FITS)
    env = {**RAY_ENV, **aws, "REELFLOW_HOME": str(folder / ".reelflow"), "REELFLOW_METADATA_URL": pg_url,
           "REELFLOW_STORE_URL": "s3://bench/reelflow",
           "REELFLOW_STORE_OPTIONS": json.dumps({"endpoint_url": endpoint, "key": "test", "secret": "test"})}
    times: dict[int, list[float]] = {1: [], 2: []}
    try:
        for rep in range(args.repeat):
            for nodes in ((1, 2) if rep % 2 == 0 else (2, 1)):
                cluster = Cluster(aws).start(nodes=nodes, cpus_per_node=1)
                try:
                    dt = timed([sys.executable, "flow.py", "run", "--quiet", "--executor", "ray"],
                               {**env, "RAY_ADDRESS": cluster.address}, folder)
                finally:
                    cluster.stop()
                times[nodes].append(dt)
                print(f"  rep {rep} {nodes} node(s) {dt:7.2f} s ({64 / dt:.2f} fits/s)", flush=True)
    finally:
        moto.stop()
        subprocess.run(pg_stop, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"\n64 ridge fits, whole run: 1 node {stat(times[1])}  2 nodes {stat(times[2])}")
    print(f"throughput 1 node {64 / one:.2f} fits/s, 2 nodes {64 / two:.2f} fits/s: ratio {one / two:.2f}x "
          f"(this machine has {os.cpu_count()} cores, shared; 2.0x is the ceiling)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--metaflow-sizes", default="100,300",
                    help="Metaflow's sizes (its local runtime needs ~1 s per task on a loaded 2-core machine)")
    ap.add_argument("--skip-metaflow", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ)
    if os.environ.get("BENCH_METAFLOW_PATH"):
        env["PYTHONPATH"] = os.environ["BENCH_METAFLOW_PATH"]
    have_mf = not args.skip_metaflow and subprocess.run([sys.executable, "-c", "import metaflow"], env=env,
                                                        capture_output=True).returncode == 0
    print(f"load average before: {load()}; {os.cpu_count()} CPUs"
          + ("" if have_mf else "; metaflow not importable (pip install metaflow, or set BENCH_METAFLOW_PATH)"))
    with tempfile.TemporaryDirectory(prefix="rf-bench-ray-") as tmp:
        if not args.skip_overhead:
            overhead(args, Path(tmp), have_mf)
        if not args.skip_throughput:
            throughput(args, Path(tmp))
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
