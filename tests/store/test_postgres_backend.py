"""The same flows, client, tracking and registry on PostgreSQL (REELFLOW_METADATA_URL).

A throwaway cluster is started by the ``postgres_server`` fixture; these tests skip
when PostgreSQL's server binaries or psycopg are not installed.
"""

import subprocess
import sys

import pytest

from helpers import run_py

from reelflow import Flow, models
from reelflow.runtime import LocalRuntime
from reelflow.store import get_store

FLOW = """
import os
from reelflow import FlowSpec, Parameter, current, step

class PgFlow(FlowSpec):
    n = Parameter("n", default=3)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.sq = self.input ** 2
        current.log_metric("sq", self.sq)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.sq for i in inputs)
        if os.path.exists(os.environ.get("PG_FAIL", "/nonexistent")):
            raise RuntimeError("planned failure")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    PgFlow()
"""


def test_runs_resume_and_client_on_postgres(postgres_url, write_flow, tmp_path):
    assert get_store().metadata.engine.dialect.name == "postgresql"
    path = write_flow(FLOW)
    marker = tmp_path / "fail"
    marker.touch()
    p = run_py(path, "run", "--n", "4", env={"PG_FAIL": str(marker)})
    assert p.returncode == 1 and "planned failure" in p.stderr
    marker.unlink()
    p = run_py(path, "resume", env={"PG_FAIL": str(marker)})
    assert p.returncode == 0, p.stderr
    run = Flow("PgFlow").latest_run
    assert run.successful and run["join"].task.data.total == 14
    assert all(t.origin_pathspec for t in run["work"].tasks())  # cloned by reference
    assert sorted(Flow("PgFlow").runs()[1].metrics.value) == [0, 1, 4, 9]


def test_concurrent_runs_and_registry_on_postgres(postgres_url, write_flow):
    path = write_flow(FLOW)
    procs = [subprocess.Popen([sys.executable, str(path), "run", "--quiet", "--n", "10"], cwd=path.parent)
             for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    runs = Flow("PgFlow").runs()
    assert len(runs) == 3 and all(len(r["work"].tasks()) == 10 for r in runs)
    art = runs[0]["join"].task["total"]
    v = models.register("pg-model", art, alias="champion")
    models.set_alias("pg-model", "champion", models.register("pg-model", {"w": 1}).version)
    assert v.key == art.sha and models.load("pg-model@champion") == {"w": 1}
    assert [h["version"] for h in models.history("pg-model")] == [1, 2]


def test_in_process_runtime_on_postgres(postgres_url, load_flow):
    import os

    src = FLOW.replace("PgFlow", "PgInline").replace(
        "self.items = list(range(self.n))", "self.items = list(range(self.n))\n        self.pid = os.getpid()")
    cls = load_flow(src)
    run_id = LocalRuntime(cls, quiet=True, inprocess=True).run({"n": 3})
    assert get_store().metadata.url.startswith("postgresql")
    run = Flow("PgInline")[run_id]
    assert run.successful
    assert run["start"].task.data.pid == os.getpid()  # the tasks ran in this process
    assert run["join"].task.data.total == 0 + 1 + 4
    assert sorted(m["value"] for m in get_store().metadata.metrics_of([run_id])) == [0.0, 1.0, 4.0]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_registrations_get_distinct_versions(backend, request):
    from concurrent.futures import ThreadPoolExecutor

    if backend == "postgresql":
        request.getfixturevalue("postgres_url")
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda i: models.register("race", {"i": i}).version, range(12)))
    assert sorted(versions) == list(range(1, 13))
