"""``Runner`` as Metaflow users call it: its keyword arguments, asyncio, and ``NBRunner``."""

from __future__ import annotations

import pytest

FLOW = """
import os
from metaflow import FlowSpec, step, Parameter


class RunnerApiFlow(FlowSpec):
    k = Parameter("k", default=2, type=int)

    @step
    def start(self):
        print("hello from start", self.k)
        self.secret = os.environ.get("RUNNER_SECRET")
        self.cwd = os.getcwd()
        self.next(self.end)

    @step
    def end(self):
        self.result = self.k * 10


if __name__ == "__main__":
    RunnerApiFlow()
"""


def test_runner_takes_metaflows_keywords(engine, tmp_path):
    engine.write("runner_api_flow.py", FLOW)
    elsewhere = tmp_path / f"cwd-{engine.name}"
    elsewhere.mkdir()
    out = engine.client(
        f"""
        from metaflow import Runner
        with Runner("runner_api_flow.py", pylint=False, show_output=False, env={{"RUNNER_SECRET": "s3"}},
                    cwd={str(elsewhere)!r}, profile=None, file_read_timeout=600) as runner:
            res = runner.run(k=4, tags=["a", "b"], max_workers=2)
            emit([res.status, res.returncode, res.run.successful, res.run.data.result])
            emit([res.run["start"].task.data.secret, res.run["start"].task.data.cwd])
            emit("hello from start 4" in res.stdout)
            emit(sorted(t for t in res.run.tags if t in ("a", "b")))
        """
    )
    assert out == [["successful", 0, True, 40], ["s3", str(elsewhere)], True, ["a", "b"]]


def test_async_run_streams_and_waits(engine):
    engine.write("runner_api_flow.py", FLOW)
    out = engine.client(
        """
        import asyncio
        from metaflow import Runner

        async def main():
            async with Runner("runner_api_flow.py", pylint=False) as runner:
                running = await runner.async_run(k=3)
                emit(running.status in ("running", "successful"))
                lines = [line async for _, line in running.stream_log("stdout")]
                await running.wait(timeout=600)
                emit(any("hello from start 3" in line for line in lines))
                emit([running.status, running.run.successful, running.run.data.result])
                again = await runner.async_resume()
                await again.wait()
                emit([again.status, again.run.data.result])

        asyncio.run(main())
        """
    )
    assert out == [True, True, ["successful", True, 30], ["successful", 30]]


NOTEBOOK = '''
from metaflow import FlowSpec, step, Parameter, NBRunner

SCALE = 7  # a name of the cell, used by the flow


class CellFlow(FlowSpec):
    n = Parameter("n", default=1, type=int)

    @step
    def start(self):
        self.value = self.n * SCALE
        self.next(self.end)

    @step
    def end(self):
        pass


run = NBRunner(CellFlow, show_output=False).nbrun(n=6)
emit([run.successful, run.data.value])
left = [p for p in __import__("os").listdir(".") if p.startswith("CellFlow")]
emit(left)
'''


def test_nbrunner_runs_a_flow_defined_in_the_calling_script(engine):
    if engine.name == "metaflow":
        pytest.skip("Metaflow's NBRunner needs a live IPython kernel (it reads the cell from its history)")
    assert engine.client(NOTEBOOK) == [[True, 42], []]


def test_nbrunner_reads_a_cell_kept_in_linecache(engine):
    """A notebook cell has no file: IPython keeps its lines in linecache under a made-up name."""
    if engine.name == "metaflow":
        pytest.skip("Metaflow's NBRunner needs a live IPython kernel (it reads the cell from its history)")
    cell = NOTEBOOK.replace("from metaflow import", "from reelflow import")
    out = engine.client(
        f"""
        import linecache
        cell = {cell!r}
        name = "<ipython-input-7-0123456789ab>"
        linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
        exec(compile(cell, name, "exec"), {{"__name__": "__main__", "emit": emit}})
        """
    )
    assert out == [[True, 42], []]


def test_runner_bad_input(engine, tmp_path):
    if engine.name == "metaflow":
        pytest.skip("the messages are reelflow's own")
    from reelflow import NBRunner, Runner
    from reelflow.errors import ParameterError

    with pytest.raises(ParameterError, match="flow file 'nope.py' does not exist"):
        Runner("nope.py")
    with pytest.raises(ParameterError, match="NBRunner takes a flow class"):
        NBRunner(42)
