"""Install footprint of each extra: a fresh venv per extra, its size on disk.

    python benchmarks/install/bench_footprint.py [--extras core,recs,serve,all]

Goal (issue #9): the core venv (flows, runtime, store, client, registry) under
120 MB. The size includes pip and setuptools, which every venv has; the empty
venv's size is printed as the baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 2**20


def _venv(base: Path, name: str, spec: str | None) -> tuple[float, float]:
    env_dir = base / name
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = env_dir / "bin" / "pip"
    t0 = time.perf_counter()
    if spec is not None:
        subprocess.run([str(pip), "install", "-q", "--no-cache-dir", spec], check=True)
    return _size_mb(env_dir), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extras", default="core,recs,serve,all")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="reelflow-footprint-") as tmp:
        base = Path(tmp)
        empty, _ = _venv(base, "empty", None)
        print(f"{'install':<28} {'venv MB':>8} {'over empty':>11} {'install s':>10}")
        print(f"{'(empty venv: pip, setuptools)':<28} {empty:8.1f} {0:11.1f} {'-':>10}")
        for extra in args.extras.split(","):
            spec = str(REPO) if extra == "core" else f"{REPO}[{extra}]"
            size, secs = _venv(base, extra, spec)
            label = "reelflow" if extra == "core" else f"reelflow[{extra}]"
            goal = "  goal < 120 MB: " + ("ok" if size < 120 else "MISSED") if extra == "core" else ""
            print(f"{label:<28} {size:8.1f} {size - empty:11.1f} {secs:10.1f}{goal}")


if __name__ == "__main__":
    main()
