"""Scheduler: time from an event to its run starting, with 1,000 deployments and 10,000 events; idle CPU.

    python benchmarks/operate/bench_scheduler.py [--deployments 1000] [--events 10000] [--samples 30] [--only-default]

In a fresh store (embedded default: SQLite in REELFLOW_HOME): 10,000 events of the
deployments' event names are published first (the table's history), then 1,000
deployments are made, each with an hourly ``@schedule`` and its own
``@trigger(event="ratings.<i>")``. A long-running ``reelflow scheduler`` (default
poll interval 0.5 s) is started, twice: first with ``REELFLOW_RUN_SERVER=0`` (each
run a fresh interpreter, as before the run server: the baseline), then with the
default (each run forked from the scheduler's warm run server). The scheduler's
CPU while idle is read from /proc over 10 s. Then, ``--samples`` times, one event
is published for one deployment and the benchmark waits for its run; printed per
measure, median and p99: event -> firing started (the scheduler claimed it and
started the run's process) and event -> run recorded (the run's row exists: the
run has loaded its flow and recorded itself), and the before/after ratio. Goal of
issue #10: median under 1 s on the embedded default; scheduler CPU while idle ~0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FLOW = '''
from reelflow import FlowSpec, schedule, step, trigger

@schedule(hourly=True)
@trigger(event="ratings.0")
class BenchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
'''


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deployments", type=int, default=1000)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--only-default", action="store_true", help="Skip the fresh-interpreter baseline.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["REELFLOW_HOME"] = str(Path(tmp) / "home")
        from reelflow import events
        from reelflow.operate import deploy
        from reelflow.operate._deploy import _tables
        from reelflow.store import get_store

        t0 = time.perf_counter()
        for i in range(args.events):
            events.publish(f"ratings.{i % args.deployments}", {"i": i})
        print(f"published {args.events} events in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        folder = Path(tmp) / "flows"
        for i in range(args.deployments):
            d = folder / f"d{i}"
            d.mkdir(parents=True)
            (d / "bench_flow.py").write_text(FLOW.replace('"ratings.0"', f'"ratings.{i}"'))
            deploy(d / "bench_flow.py", name=f"bench-{i}")
        print(f"deployed {args.deployments} flows (hourly schedule + one event each) in "
              f"{time.perf_counter() - t0:.1f} s")
        store = get_store()
        sch = _tables(store)
        results = {}
        for label, extra in (("fresh interpreter per run (REELFLOW_RUN_SERVER=0, before)", {"REELFLOW_RUN_SERVER": "0"}),
                             ("forked from the warm run server (default, after)", {})):
            if args.only_default and extra:
                continue
            print(f"\n== runs started as: {label}")
            results[label] = _measure(args, tmp, store, sch, extra, idle=not extra)
        if len(results) == 2:
            (_, (_, before)), (_, (_, after)) = results.items()
            print(f"\nevent -> run recorded, median: {np.median(before):.3f} s before -> {np.median(after):.3f} s "
                  f"after ({np.median(before) / np.median(after):.2f}x faster)")
        to_fire, to_run = list(results.values())[-1]
        print(f"goal (issue #10): median under 1 s -> {'met' if np.median(to_run) < 1 else 'not met'} for run "
              f"recorded, {'met' if np.median(to_fire) < 1 else 'not met'} for firing started")


def _measure(args: argparse.Namespace, tmp: str, store: object, sch: object, extra: dict[str, str],
             idle: bool) -> tuple[list[float], list[float]]:
    from sqlalchemy import select

    from reelflow import events
    from reelflow.store import _schema as s

    md = store.metadata  # type: ignore[attr-defined]
    fi = sch.firings  # type: ignore[attr-defined]
    log_path = Path(tmp) / "scheduler.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "scheduler"], stdout=log,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **extra})
    try:
        time.sleep(8)  # start-up: the first look at every deployment
        if idle:
            c0, w0 = _cpu(proc.pid), time.monotonic()
            time.sleep(10)
            cpu = (_cpu(proc.pid) - c0) / (time.monotonic() - w0)
            print(f"scheduler CPU while idle: {cpu * 100:.2f}% of one core "
                  f"(poll interval 0.5 s, {args.deployments} deployments, {args.events} events in the table)")
        to_fire, to_run = [], []
        rng = np.random.default_rng(0)
        for k in range(args.samples):
            target = int(rng.integers(0, args.deployments))
            t_pub = time.time()
            eid = events.publish(f"ratings.{target}", {"sample": k})
            fired = run_at = None
            end = time.monotonic() + 60
            while time.monotonic() < end and (fired is None or run_at is None):
                with md.read() as conn:
                    row = conn.execute(select(fi.c.started_at, fi.c.run_id).where(fi.c.key == f"event:{eid}")).first()
                    if row is not None and row[0] is not None:
                        fired = row[0]
                    if row is not None and row[1] is not None:
                        run_at = conn.execute(select(s.runs.c.created_at).where(s.runs.c.id == int(row[1]))).scalar()
                time.sleep(0.01)
            if fired is None or run_at is None:
                dead = proc.poll() is not None
                raise SystemExit(f"event {eid} did not start a run within 60 s (scheduler "
                                 f"{'exited ' + str(proc.returncode) if dead else 'running'}): "
                                 + log_path.read_text()[-3000:])
            to_fire.append(fired - t_pub)
            to_run.append(run_at - t_pub)
            time.sleep(1.0 + float(rng.uniform(0, 0.5)))  # the run finishes; the next publish lands at a random phase of the poll
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        log.close()
    for name, xs in (("event -> firing started (process spawned)", to_fire),
                     ("event -> run recorded (its row exists)", to_run)):
        a = np.array(xs)
        print(f"{name:<48} median {np.median(a):.3f} s   p99 {np.percentile(a, 99):.3f} s   "
              f"max {a.max():.3f} s  (n={len(a)})")
    return to_fire, to_run

if __name__ == "__main__":
    main()
