"""Flow-engine benchmark: reelflow against Metaflow on the same workloads, interleaved.

    python benchmarks/flows/bench_flows.py [--repeat 5] [--skip-metaflow] [--skip-array]
    BENCH_METAFLOW_PATH=/tmp/mf python benchmarks/flows/bench_flows.py   # metaflow from pip --target
    BENCH_BASELINE_SRC=/path/to/old/src python benchmarks/flows/bench_flows.py  # also an older reelflow

Engines: ``reelflow`` (durable blobs: the default), ``reelflow REELFLOW_FSYNC=0``
(no blob flush: what durability costs) and ``metaflow`` (when importable, or found
under ``$BENCH_METAFLOW_PATH``; local metadata and datastore in a temporary folder).
Each repetition runs every workload on every engine, the engine order rotating
from one repetition to the next, so a change of machine load hits all engines
alike. A figure is the median over repetitions with its min-max; the speed-up is
metaflow's median / reelflow's median. The load average is printed before and
after. Workloads (each timed as the whole ``python flow.py run`` command; the
array workload gets a fresh seed per repetition so no engine can skip writing
identical bytes):
  linear10   a 10-step linear flow with trivial steps
  foreach100 a foreach over 100 items plus a join
  array200   a 200 MiB float64 array made in start, passed through 3 steps, read in end
Also: resume of a 5-step flow that failed in step 4, and a cold client read of a
small artifact in a fresh process. Metaflow runs when it is importable (local
metadata and datastore in a temporary folder). ``BENCH_BASELINE_SRC`` names the
``src`` folder of another reelflow checkout (e.g. main before a change), run as a
fourth engine, ``reelflow baseline``, for before/after figures from one session.

Every engine runs from bytecode as an installed package does:
``PYTHONDONTWRITEBYTECODE`` is dropped from the environment, and each engine runs
each flow once before the timed repetitions (writes ``.pyc`` files, creates the
store), so no figure includes compiling sources or creating a store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

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


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int, float]:
    """(seconds, exit code, peak RSS in bytes of the largest process in the tree, CPU seconds:
    user + system time of the command and the descendants it waited for)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    if p.returncode != 0 and env.get("BENCH_FAIL") != "1":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return dt, p.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Engine:
    """One engine's folder, environment and flow files."""

    def __init__(self, name: str, lib: str, root: Path, extra_env: dict[str, str]) -> None:
        self.name, self.lib = name, lib
        self.folder = root / name.replace(" ", "_").replace("=", "")
        self.folder.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # run from .pyc files
        self.env = {**base, "PYTHONUNBUFFERED": "1", **extra_env}
        if lib == "reelflow":
            self.env["REELFLOW_HOME"] = str(self.folder / ".reelflow")
            self.run_args = ["run", "--quiet"]
            self.store = self.folder / ".reelflow"
        else:
            self.env.update({"METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
                             "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(self.folder), "USERNAME": "bench"})
            mf_path = os.environ.get("BENCH_METAFLOW_PATH")
            if mf_path:  # metaflow installed with pip --target: only its runs see it
                self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [mf_path, self.env.get("PYTHONPATH")]))
            self.run_args = ["run"]
            self.store = self.folder / ".metaflow"
        self.paths = {name: write(self.folder, name, tpl, lib) for name, tpl in
                      (("linear10", LINEAR), ("foreach100", FOREACH), ("array200", ARRAY), ("fail4", FAIL4))}

    def run(self, workload: str, rep: int) -> dict[str, float]:
        """Time one workload once; returns its figures (seconds, MiB)."""
        py = sys.executable
        if workload in ("linear10", "foreach100"):
            dt, _, _, cpu = timed([py, str(self.paths[workload]), *self.run_args], self.env, self.folder)
            return {workload: dt, f"{workload}_cpu": cpu}
        if workload == "array200":
            before = dir_size(self.store) if self.store.exists() else 0
            dt, _, peak, _ = timed([py, str(self.paths["array200"]), *self.run_args],
                                {**self.env, "BENCH_SEED": str(rep)}, self.folder)
            return {"array200": dt, "array200_peak_mib": peak / 2**20,
                    "array200_store_mib": (dir_size(self.store) - before) / 2**20}
        if workload == "resume":
            path = str(self.paths["fail4"])
            timed([py, path, *self.run_args], {**self.env, "BENCH_FAIL": "1"}, self.folder)
            dt, _, _, cpu = timed([py, path, "resume", *self.run_args[1:]], self.env, self.folder)
            return {"resume": dt, "resume_cpu": cpu}
        if self.lib == "reelflow":
            code = "from reelflow import Flow; assert Flow('Foreach100').latest_run.data.total == 9900"
        else:
            code = ("from metaflow import Flow, namespace; namespace(None); "
                    "assert Flow('Foreach100').latest_run['join'].task.data.total == 9900")
        dt, _, _, cpu = timed([py, "-c", code], self.env, self.folder)
        return {"client_read": dt, "client_read_cpu": cpu}


def metaflow_available() -> bool:
    env = dict(os.environ)
    if os.environ.get("BENCH_METAFLOW_PATH"):
        env["PYTHONPATH"] = os.environ["BENCH_METAFLOW_PATH"]
    return subprocess.run([sys.executable, "-c", "import metaflow"], env=env, capture_output=True).returncode == 0


def stat(xs: list[float], unit: str = "s") -> str:
    if not xs:
        return "-"
    return f"{np.median(xs):.3f}{unit} ({min(xs):.3f}-{max(xs):.3f})"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-metaflow", action="store_true")
    ap.add_argument("--skip-array", action="store_true", help="leave out the 200 MiB array workload")
    ap.add_argument("--workloads", default="", help="comma-separated subset, e.g. linear10,resume")
    args = ap.parse_args()
    have_mf = not args.skip_metaflow and metaflow_available()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average before: {load()}"
          + ("" if have_mf else "; metaflow not importable (pip install metaflow, or set BENCH_METAFLOW_PATH)"))
    workloads = ["linear10", "foreach100", "array200", "resume", "client_read"]
    if args.skip_array:
        workloads.remove("array200")
    if args.workloads:
        workloads = [w for w in workloads if w in args.workloads.split(",")]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engines = [Engine("reelflow", "reelflow", root, {}),
                   Engine("reelflow FSYNC=0", "reelflow", root, {"REELFLOW_FSYNC": "0"})]
        if os.environ.get("BENCH_BASELINE_SRC"):
            engines.append(Engine("reelflow baseline", "reelflow", root,
                                  {"PYTHONPATH": os.environ["BENCH_BASELINE_SRC"]}))
        if have_mf:
            engines.append(Engine("metaflow", "metaflow", root, {}))
        results = {e.name: {} for e in engines}
        for e in engines:  # warm-up, untimed: bytecode written, store created
            e.run("linear10", 0)
            if "client_read" in workloads and "foreach100" not in workloads:
                e.run("foreach100", 0)  # the run the client reads
        for rep in range(args.repeat):
            for w in workloads:
                shift = (rep + workloads.index(w)) % len(engines)
                for e in engines[shift:] + engines[:shift]:  # rotate the order: load changes hit all alike
                    for k, v in e.run(w, rep).items():
                        results[e.name].setdefault(k, []).append(v)
    print(f"load average after: {load()}")
    rf, r0 = results["reelflow"], results["reelflow FSYNC=0"]
    mf = results.get("metaflow", {})
    base = results.get("reelflow baseline", {})
    goals = {"linear10": (0.25, 12), "foreach100": (1.5, 20), "array200": (2.5, 6), "resume": (0.25, None),
             "client_read": (None, None)}
    print(f"\nmedian (min-max) over {args.repeat} interleaved repetitions; speed-up = metaflow / reelflow medians;"
          " durability cost = reelflow / reelflow FSYNC=0 medians")
    print(f"{'workload':<12} {'reelflow':>24} {'reelflow FSYNC=0':>24} {'metaflow':>24} {'speed-up':>9} "
          f"{'durability':>10}  goal")
    for k in workloads:
        if k not in rf:
            continue
        limit, ratio = goals[k]
        a, m = float(np.median(rf[k])), (float(np.median(mf[k])) if mf.get(k) else None)
        speed = f"{m / a:.1f}x" if m else "-"
        goal = []
        if limit:
            goal.append(f"<= {limit}s {'ok' if a <= limit else 'MISSED'}")
        if ratio and m:
            goal.append(f">= {ratio}x {'ok' if m / a >= ratio else 'MISSED'}")
        print(f"{k:<12} {stat(rf[k]):>24} {stat(r0[k]):>24} {stat(mf.get(k, [])):>24} {speed:>9} "
              f"{a / float(np.median(r0[k])):>9.2f}x  {', '.join(goal)}")
    print("\nCPU seconds (user + system of the process tree; less sensitive to the machine's load), medians:")
    for k in workloads:
        cols = [(name, results[name].get(f"{k}_cpu")) for name in results]
        if any(v for _, v in cols):
            print(f"{k:<12} " + "  ".join(f"{name} {np.median(v):.3f}s" for name, v in cols if v))
    if base:
        print(f"\nbaseline ({os.environ['BENCH_BASELINE_SRC']}), same repetitions; after/before = reelflow / baseline medians")
        for k in workloads:
            if base.get(k):
                b = float(np.median(base[k]))
                print(f"{k:<12} {stat(base[k]):>24}  after/before {float(np.median(rf[k])) / b:.2f}x"
                      + (f"  (baseline speed-up over metaflow {float(np.median(mf[k])) / b:.1f}x)" if mf.get(k) else ""))
    if "array200" in rf:
        print(f"array200 store size: reelflow {rf['array200_store_mib'][0]:.1f} MiB "
              f"({rf['array200_store_mib'][0] / 200:.3f}x the array, goal <= 1.05x)"
              + (f", metaflow {mf['array200_store_mib'][0]:.1f} MiB" if mf.get("array200_store_mib") else ""))
        print(f"array200 peak RSS (largest process): reelflow {max(rf['array200_peak_mib']):.0f} MiB"
              + (f", metaflow {max(mf['array200_peak_mib']):.0f} MiB" if mf.get("array200_peak_mib") else ""))


if __name__ == "__main__":
    main()
