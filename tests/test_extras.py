"""The core works without the toolkits' dependencies; a missing extra names its install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

# Makes the numerical stack unimportable in a child interpreter, the way a lean
# install (`pip install reelflow`, no extras) looks to the code.
_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"numpy", "scipy", "pandas", "implicit", "sklearn", "threadpoolctl", "fastapi", "uvicorn",
               "prometheus_client", "tqdm"}
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, _Block())
    """
)


def _run_lean(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "lean_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_core_runs_a_flow_and_reads_it_back_without_the_toolkits(tmp_path):
    (tmp_path / "lean_flow.py").write_text(textwrap.dedent(
        """
        from reelflow import FlowSpec, current, step

        class LeanFlow(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2, 3]
                self.next(self.square, foreach="xs")

            @step
            def square(self):
                self.y = self.input ** 2
                current.log_metric("y", self.y)
                self.next(self.join)

            @step
            def join(self, inputs):
                self.total = sum(i.y for i in inputs)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            LeanFlow()
        """
    ))
    out = _run_lean(tmp_path, """
        import sys
        from reelflow import Flow, Runner, models
        run = Runner("lean_flow.py").run().run
        assert run.successful, run
        assert Flow("LeanFlow").latest_run.data.total == 14
        models.register("lean", {"total": 14})
        assert "numpy" not in sys.modules and "pandas" not in sys.modules
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.parametrize(("module", "extra"), [("reelflow.recs", "recs"), ("reelflow.content.bandits", "content"),
                                               ("reelflow.serving", "serve")])
def test_a_missing_extra_names_the_install(tmp_path, module, extra):
    out = _run_lean(tmp_path, f"""
        from reelflow.errors import MissingExtraError
        try:
            import {module}
        except MissingExtraError as exc:
            print("MSG", exc)
        else:
            raise SystemExit("imported without its extra")
    """)
    assert out.returncode == 0, out.stderr
    assert f"pip install 'reelflow[{extra}]'" in out.stdout
    assert "numpy" in out.stdout


def test_cli_without_the_recs_extra_is_one_line(tmp_path):
    out = _run_lean(tmp_path, """
        import sys
        from reelflow.cli import main
        sys.argv = ["reelflow", "demo"]
        main()
    """)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "pip install 'reelflow[recs]'" in out.stderr


def test_user_facing_extras_do_not_pull_the_s3_test_stack():
    """botocore pins python-dateutil<3: only the s3 and test extras may bring it in."""
    reqs = metadata.requires("reelflow") or []
    leaky = [r for r in reqs if any(x in r for x in ("s3fs", "boto", "moto"))]
    for req in leaky:
        assert 'extra == "s3"' in req or 'extra == "test"' in req, req
    core = [r for r in reqs if "extra ==" not in r]
    assert not any(name in r for r in core for name in ("numpy", "pandas", "scipy", "fastapi")), core
