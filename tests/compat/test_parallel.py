"""``@parallel`` gangs: ``self.next(self.train, num_parallel=N)`` runs N tasks together, as Metaflow does locally."""

from __future__ import annotations

import pytest

GANG = """
import os, time
from metaflow import FlowSpec, step, current, parallel, retry, Parameter


class GangFlow(FlowSpec):
    meet = Parameter("meet", default="")
    fail_once = Parameter("fail_once", default=False, type=bool)

    @step
    def start(self):
        self.base = 10
        self.next(self.train, num_parallel=3)

    @retry(times=1, minutes_between_retries=0)
    @parallel
    @step
    def train(self):
        p = current.parallel
        with open(os.path.join(self.meet, "attempts"), "a") as f:
            f.write(f"{p.node_index}:{current.retry_count}\\n")
        # a rendezvous: every member waits for the others, as torch.distributed does
        mine = os.path.join(self.meet, f"{current.retry_count}-{p.node_index}")
        open(mine, "w").close()
        deadline = time.time() + 240
        while sum(n.startswith(f"{current.retry_count}-") for n in os.listdir(self.meet)) < p.num_nodes:
            assert time.time() < deadline, "the gang did not start together"
            time.sleep(0.05)
        if self.fail_once and p.node_index == 1 and current.retry_count == 0:
            raise RuntimeError("node 1 breaks")
        self.node = [p.node_index, p.num_nodes, p.main_ip, p.control_task_id is not None]
        self.seen = [self.input, self.index]
        self.value = self.base + p.node_index
        self.next(self.join)

    @step
    def join(self, inputs):
        self.nodes = sorted(i.node for i in inputs)
        self.seen = sorted(i.seen for i in inputs)
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GangFlow()
"""

CLIENT = """
from metaflow import Flow, namespace
namespace(None)
run = Flow("GangFlow").latest_run
emit([run.successful, run.data.total, run.data.nodes, run.data.seen])
emit(len(list(run["train"])))
"""


def test_gang_starts_together_and_joins(engine, tmp_path):
    path = engine.write("gang_flow.py", GANG)
    meet = tmp_path / "meet"
    meet.mkdir()
    engine.run(path, "run", "--meet", str(meet), "--max-workers", "1")  # a gang starts whole even so
    out = engine.client(CLIENT)
    nodes = [[i, 3, "127.0.0.1", True] for i in range(3)]
    assert out == [[True, 33, nodes, [[0, 0], [1, 1], [2, 2]]], 3]


def test_a_failed_member_retries_the_whole_gang(engine, tmp_path):
    path = engine.write("gang_flow.py", GANG)
    meet = tmp_path / "meet"
    meet.mkdir()
    engine.run(path, "run", "--meet", str(meet), "--fail_once", "true")
    attempts = sorted((meet / "attempts").read_text().split())
    assert attempts == ["0:0", "0:1", "1:0", "1:1", "2:0", "2:1"]  # every member ran twice
    assert engine.client(CLIENT)[0][:2] == [True, 33]


@pytest.mark.parametrize("src, needle", [
    ("self.next(self.train, num_parallel=2)", "step 'train' has no @parallel decorator"),
    ("self.next(self.train)", "reaches it without num_parallel="),
])
def test_gang_graph_errors(engine, src, needle):
    if engine.name == "metaflow":
        pytest.skip("the messages are reelflow's own")
    body = f"""
    from metaflow import FlowSpec, step, parallel


    class BadGang(FlowSpec):
        @step
        def start(self):
            {src}

        {'@parallel' if 'without' in needle else ''}
        @step
        def train(self):
            self.next(self.join)

        @step
        def join(self, inputs):
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        BadGang()
    """
    p = engine.run(engine.write("bad_gang.py", body), "run", check=False)
    assert p.returncode != 0 and needle in p.stderr, p.stderr


def test_gang_on_ray_starts_in_one_placement_group(engine, tmp_path):
    """On Ray the gang is one placement group: all members start or none; a failure retries it whole."""
    if engine.name == "metaflow":
        pytest.skip("Metaflow runs @parallel on its cloud backends, not on Ray")
    pytest.importorskip("ray")
    path = engine.write("gang_flow.py", GANG)
    meet = tmp_path / "meet"
    meet.mkdir()
    engine.run(path, "run", "--meet", str(meet), "--fail_once", "true", "--max-workers", "1",
               "--with", "ray:num_cpus=3")
    assert sorted((meet / "attempts").read_text().split()) == ["0:0", "0:1", "1:0", "1:1", "2:0", "2:1"]
    out = engine.client(CLIENT)
    assert out[0][:2] == [True, 33] and out[1] == 3
    ips = {n[2] for n in out[0][2]}
    assert [n[:2] for n in out[0][2]] == [[0, 3], [1, 3], [2, 3]] and len(ips) == 1 and ips != {""}


def test_a_gang_bigger_than_the_ray_cluster_is_refused():
    pytest.importorskip("ray")
    from reelflow.errors import ExecutorError
    from reelflow.runtime._ray_gang import RayGangs
    from reelflow.runtime._task import TaskSpec

    specs = [TaskSpec(flow_name="G", run_id="1", step_name="train", task_id=2 + i, attempt=0, task_key="k",
                      input_paths=[], base_refs={}, params=frozenset(), user="u", tags=frozenset(),
                      parallel={"node_index": i, "num_nodes": 3, "main_ip": "127.0.0.1", "control_task_id": "2"})
             for i in range(3)]
    with pytest.raises(ExecutorError, match=r"gang of 3 tasks needs 3 x \(cpu=1\) at once .* CPU=2 in all"):
        RayGangs().reserve(specs, {"num_cpus": 1}, [{"CPU": 2.0}])
