"""Flow-engine benchmark: reelflow against Metaflow on the same workloads, same run.

    python benchmarks/flows/bench_flows.py [--repeat 3] [--skip-metaflow]

Workloads (each timed as the whole ``python flow.py run`` command, best of N for
both engines; the array workload gets a fresh seed per repetition so no engine
can skip writing identical bytes):
  linear10   a 10-step linear flow with trivial steps
  foreach100 a foreach over 100 items plus a join
  array200   a 200 MiB float64 array made in start, passed through 3 steps, read in end
Also: resume of a 5-step flow that failed in step 4, and a cold client read of a
small artifact in a fresh process. Metaflow runs when it is importable (local
metadata and datastore in a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LINEAR = """
from {lib} import FlowSpec, step

class Linear10(FlowSpec):
    @step
    def start(self):
        self.x = 0
        self.next(self.s1)
{middle}
    @step
    def s8(self):
        self.x += 1
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Linear10()
"""

FOREACH = """
from {lib} import FlowSpec, step

class Foreach100(FlowSpec):
    @step
    def start(self):
        self.items = list(range(100))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.y = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Foreach100()
"""

ARRAY = """
import os
import numpy as np
from {lib} import FlowSpec, step

class Array200(FlowSpec):
    @step
    def start(self):
        seed = int(os.environ.get("BENCH_SEED", "0"))  # fresh bytes each repetition: no dedupe
        self.arr = np.random.default_rng(seed).random(200 * 1024 * 1024 // 8)
        self.next(self.a)

    @step
    def a(self):
        self.next(self.b)

    @step
    def b(self):
        self.next(self.c)

    @step
    def c(self):
        self.next(self.end)

    @step
    def end(self):
        self.total = float(self.arr[:10].sum())

if __name__ == "__main__":
    Array200()
"""

FAIL4 = """
import os
from {lib} import FlowSpec, step

class Fail4(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.s2)

    @step
    def s2(self):
        self.next(self.s3)

    @step
    def s3(self):
        self.next(self.s4)

    @step
    def s4(self):
        if os.environ.get("BENCH_FAIL") == "1":
            raise RuntimeError("planned failure")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Fail4()
"""


def _linear_middle() -> str:
    out = []
    for i in range(1, 8):
        out.append(f"""
    @step
    def s{i}(self):
        self.x += 1
        self.next(self.s{i + 1})
""")
    return "".join(out)


def write(folder: Path, name: str, template: str, lib: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(template.format(lib=lib, middle=_linear_middle())))
    return path


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in bytes of the largest process in the tree)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode != 0 and "BENCH_FAIL" not in env:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    peak = max(usage.ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
    return dt, p.returncode, peak


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_engine(lib: str, root: Path, repeat: int) -> dict[str, float]:
    folder = root / lib
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if lib == "reelflow":
        env["REELFLOW_HOME"] = str(folder / ".reelflow")
        run_args = ["run", "--quiet"]
    else:
        env.update({"METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
                    "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(folder), "USERNAME": "bench"})
        run_args = ["run"]
    res: dict[str, float] = {}
    for name, tpl in (("linear10", LINEAR), ("foreach100", FOREACH)):
        path = write(folder, name, tpl, lib)
        res[name] = min(timed([sys.executable, str(path), *run_args], env, folder)[0] for _ in range(repeat))
    path = write(folder, "array200", ARRAY, lib)
    store = folder / (".reelflow" if lib == "reelflow" else ".metaflow")
    before = dir_size(store) if store.exists() else 0
    times, peaks = [], []
    for i in range(repeat):
        dt, _, peak = timed([sys.executable, str(path), *run_args], {**env, "BENCH_SEED": str(i)}, folder)
        times.append(dt)
        peaks.append(peak)
        if i == 0:
            res["array200_store_mib"] = (dir_size(store) - before) / 2**20
    res["array200"] = min(times)
    res["array200_peak_mib"] = max(peaks) / 2**20
    path = write(folder, "fail4", FAIL4, lib)
    timed([sys.executable, str(path), *run_args], {**env, "BENCH_FAIL": "1"}, folder)
    res["resume"] = timed([sys.executable, str(path), "resume", *run_args[1:]], env, folder)[0]
    if lib == "reelflow":
        code = "from reelflow import Flow; assert Flow('Foreach100').latest_run.data.total == 9900"
    else:
        code = "from metaflow import Flow, namespace; namespace(None); assert Flow('Foreach100').latest_run['join'].task.data.total == 9900"
    res["client_read"] = min(timed([sys.executable, "-c", code], env, folder)[0] for _ in range(repeat))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-metaflow", action="store_true")
    args = ap.parse_args()
    try:
        import metaflow  # noqa: F401

        have_mf = not args.skip_metaflow
    except ImportError:
        have_mf = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rf = bench_engine("reelflow", root, args.repeat)
        mf = bench_engine("metaflow", root, args.repeat) if have_mf else {}
    goals = {"linear10": (0.4, 10), "foreach100": (1.5, 20), "array200": (2.5, 6), "resume": (0.3, None),
             "client_read": (None, None)}
    print(f"{'workload':<14} {'reelflow':>10} {'metaflow':>10} {'speed-up':>9}  goal")
    for k, (limit, ratio) in goals.items():
        m = mf.get(k)
        speed = f"{m / rf[k]:.1f}x" if m else "-"
        goal = []
        if limit:
            goal.append(f"<= {limit}s {'ok' if rf[k] <= limit else 'MISSED'}")
        if ratio and m:
            goal.append(f">= {ratio}x {'ok' if m / rf[k] >= ratio else 'MISSED'}")
        print(f"{k:<14} {rf[k]:>9.3f}s {(f'{m:.3f}s' if m else '-'):>10} {speed:>9}  {', '.join(goal)}")
    print(f"array200 store size: reelflow {rf['array200_store_mib']:.1f} MiB "
          f"({rf['array200_store_mib'] / 200:.3f}x the array, goal <= 1.05x)"
          + (f", metaflow {mf['array200_store_mib']:.1f} MiB" if mf else ""))
    print(f"array200 peak RSS (largest process): reelflow {rf['array200_peak_mib']:.0f} MiB"
          + (f", metaflow {mf['array200_peak_mib']:.0f} MiB" if mf else ""))


if __name__ == "__main__":
    main()
