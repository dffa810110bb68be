"""``FlowName/latest`` in a pathspec names the newest run of the current namespace."""

from __future__ import annotations

import warnings

import pytest

from reelflow import Run, Step, namespace
from reelflow.errors import NotFoundError

SRC = """
class Latest(FlowSpec):
    n = Parameter("n", default=1)

    @step
    def start(self):
        self.x = self.n
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Latest()
"""


def test_latest_resolves_to_the_newest_run(write_flow):
    from helpers import run_py

    path = write_flow(SRC)
    assert run_py(path, "run", "--n", "1", "--quiet").returncode == 0
    assert run_py(path, "run", "--n", "2", "--quiet").returncode == 0
    run = Run("Latest/latest")
    assert run.data.x == 2
    assert run.pathspec == f"Latest/{run.id}" and run.id != "latest"
    assert Step("Latest/latest/start").task.data.x == 2


def test_latest_outside_the_namespace_explains_itself(write_flow):
    from helpers import run_py

    assert run_py(write_flow(SRC), "run", "--quiet").returncode == 0
    namespace("user:somebody-else")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NotFoundError, match=r"no run in the namespace 'user:somebody-else'.*namespace\(None\)"):
            Run("Latest/latest")
