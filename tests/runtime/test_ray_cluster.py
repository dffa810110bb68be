"""Flows on a real three-node Ray cluster on this machine, with the store on PostgreSQL + S3.

The cluster: a head node, a second node with the custom resources ``special`` and
``pool``, a third with ``pool`` only (``ray start``, loopback, 1 CPU each, small
object stores), stopped with ``ray stop --force`` whatever happens. The store:
a throwaway PostgreSQL database and moto's S3 server on 127.0.0.1. Skips when Ray,
PostgreSQL, moto or s3fs is missing.
"""

from __future__ import annotations

import json
import time

import pytest

from reelflow import Run
from reelflow.errors import ExecutorError, RunFailedError
from reelflow.runtime import LocalRuntime

from .conftest import RayCluster, free_port

pytest.importorskip("ray")

AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster()
    try:
        c.start_head(num_cpus=1, env=AWS)
        c.add_node(num_cpus=1, resources=json.dumps({"special": 1, "pool": 1}), env=AWS)
        c.add_node(num_cpus=1, resources=json.dumps({"pool": 1}), env=AWS)
        c.connect()
        import ray

        deadline = time.monotonic() + 120
        while sum(1 for n in ray.nodes() if n["Alive"]) < 3:
            assert time.monotonic() < deadline, "the three Ray nodes never all joined"
            time.sleep(0.5)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def shared_store(cluster, postgres_url, s3_endpoint, monkeypatch, tmp_path):
    """PostgreSQL metadata and S3 blobs, reachable from every node."""
    import s3fs

    from reelflow.store import _stores

    for k, v in AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("REELFLOW_STORE_OPTIONS", json.dumps({"endpoint_url": s3_endpoint, "key": "test",
                                                             "secret": "test"}))
    bucket = f"b{tmp_path.name[-20:].lower().replace('_', '-')}"
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="test", secret="test", skip_instance_cache=True).mkdir(bucket)
    monkeypatch.setenv("REELFLOW_STORE_URL", f"s3://{bucket}/reelflow")
    _stores.clear()
    yield
    _stores.clear()


def _node_with(resource: str) -> str:
    import ray

    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"])


WIDE = """
import ray
from reelflow import FlowSpec, step, resources

class Wide(FlowSpec):
    @step
    def start(self):
        self.items = list(range(200))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.sq = self.input * self.input
        self.node = ray.get_runtime_context().get_node_id()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.sq for i in inputs)
        self.nodes = sorted({i.node for i in inputs})
        self.next(self.special)

    @resources(cpu=1, memory=64, custom={"special": 1})
    @step
    def special(self):
        print("on the special node")
        self.special_node = ray.get_runtime_context().get_node_id()
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_foreach_of_200_on_three_nodes_with_postgres_and_s3(load_flow, shared_store):
    cls = load_flow(WIDE)
    run_id = LocalRuntime(cls, quiet=True, executor="ray", max_num_splits=200).run()
    r = Run(f"Wide/{run_id}")
    assert r.successful and r.data.total == sum(i * i for i in range(200))
    assert len(r["work"].tasks()) == 200
    assert len(r.data.nodes) >= 2  # the foreach spread over the cluster
    assert r["special"].task.data.special_node == _node_with("special")  # the custom resource's node
    assert r["special"].task.stdout == "on the special node\n"
    assert r["special"].task.resources["custom"] == {"special": 1}
    assert r._store.config.store_url.startswith("s3://") and "postgresql" in r._store.config.metadata_url


def test_resume_of_a_ray_run(load_flow, shared_store):
    cls = load_flow("""
        from reelflow import FlowSpec, step, current

        class Again(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2, 3]
                self.next(self.work, foreach="items")

            @step
            def work(self):
                self.double = 2 * self.input
                self.next(self.join)

            @step
            def join(self, inputs):
                self.total = sum(i.double for i in inputs)
                self.next(self.end)

            @step
            def end(self):
                if current.origin_run_id is None:
                    raise RuntimeError("fails until resumed")
    """)
    with pytest.raises(RunFailedError, match="fails until resumed"):
        LocalRuntime(cls, quiet=True, executor="ray").run()
    resumed = LocalRuntime(cls, quiet=True, executor="ray").resume()
    r = Run(f"Again/{resumed}")
    assert r.successful and r.data.total == 12
    assert all(t.origin_pathspec for t in r["work"].tasks())  # the foreach was reused, not rerun
    assert r["end"].task.origin_pathspec is None


def test_a_multinode_cluster_refuses_a_local_store(load_flow, cluster):
    cls = load_flow("""
        class Local(FlowSpec):
            @step
            def start(self):
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    with pytest.raises(ExecutorError, match=r"3 nodes but the store keeps blobs in the local folder .* and "
                                            r"metadata in SQLite.*REELFLOW_STORE_URL"):
        LocalRuntime(cls, quiet=True, executor="ray").run()
    from reelflow.store import get_store

    assert get_store().metadata.list_runs("Local") == []  # refused before a run was recorded


def test_a_node_killed_mid_task_is_retried_on_another(load_flow, shared_store):
    # Last in this module: it takes a node away. Both "pool" nodes can run the step; the
    # first attempt kills its own node's raylet, the retry runs on the other node.
    cls = load_flow("""
        import os, signal, time
        import ray
        from reelflow import FlowSpec, step, resources, retry, current

        def raylet_of_this_node():
            pid = os.getppid()
            while pid > 1:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"raylet" in f.read():
                        return pid
                with open(f"/proc/{pid}/stat") as f:
                    pid = int(f.read().rsplit(")", 1)[1].split()[1])
            raise RuntimeError("no raylet above this worker")

        class Doomed(FlowSpec):
            @step
            def start(self):
                self.next(self.fragile)

            @retry(times=1, minutes_between_retries=0)
            @resources(cpu=1, memory=64, custom={"pool": 1})
            @step
            def fragile(self):
                self.node = ray.get_runtime_context().get_node_id()
                if current.retry_count == 0:
                    os.kill(raylet_of_this_node(), signal.SIGKILL)
                    time.sleep(120)
                self.next(self.end)

            @step
            def end(self):
                pass
    """)
    t0 = time.monotonic()
    run_id = LocalRuntime(cls, quiet=True, executor="ray").run()
    r = Run(f"Doomed/{run_id}")
    assert r.successful and time.monotonic() - t0 < 110
    task = r["fragile"].task
    assert task.current_attempt == 1
    import ray

    deadline = time.monotonic() + 120  # the cluster notices a dead node after its health checks fail
    while not (dead := {n["NodeID"] for n in ray.nodes() if not n["Alive"]}):
        assert time.monotonic() < deadline, "the killed node was never reported dead"
        time.sleep(0.5)
    assert len(dead) == 1 and task.data.node not in dead  # the retry ran on the other node
