"""Ray clusters on this machine for the runtime tests (skipped when Ray is not installed).

``ray start`` daemonizes: its processes are not this test process's children, so
every fixture ends them with ``ray stop --force`` whatever the outcome. Nothing
listens beyond 127.0.0.1 where Ray lets us choose, object stores are small, and
the dashboard is off.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

OBJECT_STORE = str(80 * 2**20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


def ray_cmd(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([ray_cli(), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args[:2])} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def stop_ray() -> None:
    subprocess.run([ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


class RayCluster:
    """A cluster started with ``ray start``: a head node plus optional worker nodes."""

    def __init__(self) -> None:
        # A loopback-only test cluster: no token to hand to the drivers and the CLI runs
        # of a test (Ray >= 2.5x turns token authentication on by default).
        self._saved_auth = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's socket paths must stay short: a temp dir right under /tmp.
        self.temp_dir = tempfile.mkdtemp(prefix="rf-ray-", dir="/tmp")

    def start_head(self, num_cpus: int, resources: str | None = None, env: dict[str, str] | None = None) -> None:
        args = ["start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={num_cpus}",
                "--include-dashboard=false", f"--object-store-memory={OBJECT_STORE}", f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0"]
        if resources:
            args.append(f"--resources={resources}")
        ray_cmd(*args, env=env)

    def add_node(self, num_cpus: int, resources: str | None = None, env: dict[str, str] | None = None) -> None:
        args = ["start", f"--address={self.address}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                f"--object-store-memory={OBJECT_STORE}", "--disable-usage-stats",
                "--min-worker-port=0", "--max-worker-port=0"]
        if resources:
            args.append(f"--resources={resources}")
        ray_cmd(*args, env=env)

    def connect(self) -> None:
        import ray

        ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)

    def stop(self) -> None:
        try:
            import ray

            ray.shutdown()
        finally:
            stop_ray()
            self._kill_leftovers()
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            if self._saved_auth is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = self._saved_auth


    def _kill_leftovers(self) -> None:
        """Any process of this cluster that ``ray stop`` missed (its command line names our temp dir)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if self.temp_dir.encode() in cmd:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def ray_single() -> Iterator[RayCluster]:
    """A one-node Ray cluster (2 CPUs) this process is connected to, for the executor suite."""
    pytest.importorskip("ray")
    cluster = RayCluster()
    try:
        cluster.start_head(num_cpus=2)
        cluster.connect()
        yield cluster
    finally:
        cluster.stop()
