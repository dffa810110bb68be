"""The whole continuous loop in one command: serve -> log -> retrain -> promote -> hot-swap.

    python examples/continuous/run_loop.py [--home DIR]

1. trains the first model by hand (MovieLens, no feedback) -> champion;
2. deploys train_flow.py (code snapshot + @schedule + @trigger);
3. starts ``reelflow serve recs-continuous@champion``;
4. simulates an hour of members (requests + feedback, logged to Parquet);
5. ``reelflow scheduler --once`` retrains on the new feedback; the gate promotes it
   only if ndcg@10 beats the champion; the server hot-swaps to it;
6. a retrain without feedback is no better, and the gate keeps the champion.

Under two minutes on 2 cores; prints what happened at each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def reelflow(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True, cwd=HERE)
    if res.returncode != 0:
        raise SystemExit(f"reelflow {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def served_version(url: str) -> int:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as r:
        return int(json.loads(r.read())["models"][0]["version"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=None, help="store folder (default: a fresh temporary one)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="reelflow-loop-"))
    if args.home and home.exists():
        shutil.rmtree(home)
    os.environ["REELFLOW_HOME"] = str(home)
    os.environ.pop("REELFLOW_METADATA_URL", None)
    sys.path.insert(0, str(HERE))
    from loopdata import MODEL
    from simulate_traffic import simulate

    from reelflow import models

    t0 = time.time()
    step = lambda msg: print(f"[{time.time() - t0:5.1f}s] {msg}", flush=True)  # noqa: E731
    step(f"store: {home}")
    reelflow("run", "train_flow.py", "--use_feedback", "false", "--quiet")
    champ = models.get(f"{MODEL}@champion")
    step(f"1. first model trained by hand: {champ.spec}, ndcg@10={champ.metrics['ndcg@10']:.4f} -> champion")
    step("2. " + reelflow("deploy", "train_flow.py").splitlines()[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "serve", f"{MODEL}@champion", "--port",
                               str(port), "--poll-interval", "0.5"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        end = time.time() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read() if server.stderr else ''}")
            try:
                v = served_version(url)
                break
            except OSError:
                if time.time() > end:
                    raise SystemExit("the server did not come up in 120 s") from None
                time.sleep(0.2)
        step(f"3. serving {MODEL}@champion (version {v}) on {url}")
        counts = simulate(url, hours=1, users_per_hour=200)
        time.sleep(1.5)  # the server flushes its log every second
        parts = list((home / "feedback" / MODEL).rglob("part-*.parquet"))
        step(f"4. one simulated hour: {counts['requests']} requests and {counts['plays'] + counts['clicks']} "
             f"feedback events, logged in {len(parts)} Parquet parts; event ratings.arrived published")
        out = reelflow("scheduler", "--once")
        step("5. scheduler --once:\n      " + "\n      ".join(out.strip().splitlines()))
        new = models.get(f"{MODEL}@champion")
        hist = models.history(MODEL)[-1]
        step(f"   gate: {hist['reason']}")
        if new.version != champ.version:
            end = time.time() + 60
            while served_version(url) != new.version and time.time() < end:
                time.sleep(0.2)
            step(f"   server hot-swapped: now serving version {served_version(url)}")
        from reelflow import events

        events.publish("ratings.arrived", {"hour": 1, "use_feedback": False})
        reelflow("scheduler", "--once")
        hist = models.history(MODEL)[-1]
        step(f"6. retrain without the feedback -> {hist['decision']}: {hist['reason']}")
        step(f"   still serving version {served_version(url)}; champion is {models.get(MODEL + '@champion').spec}")
        print("\nalias history:\n" + reelflow("models", "history", MODEL))
        print("deployment history:\n" + reelflow("deployments", "history", "ContinuousRecsFlow"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    step(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
