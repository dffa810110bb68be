"""@project: branches as separate namespaces of runs, registry aliases and deployments; @pypi/@conda ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

FLOW = """
from metaflow import FlowSpec, step, project, current


@project(name="recs")
class ProjectCompatFlow(FlowSpec):
    @step
    def start(self):
        self.info = [current.project_name, current.branch_name, current.project_flow_name,
                     current.is_production, current.is_user_branch]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ProjectCompatFlow()
"""


def test_branches_name_runs_and_current_as_metaflow_does(engine):
    path = engine.write("project_flow.py", FLOW)
    engine.run(path, "run")
    engine.run(path, "--branch", "new_ease", "run")
    engine.run(path, "--production", "run")
    out = engine.client(
        f"""
        from metaflow import Flow, Runner, namespace
        with Runner({str(path)!r}, show_output=False, cwd={str(path.parent)!r}, production=True,
                    branch="canary").run() as running:  # top-level options, as Metaflow's Runner takes them
            assert running.status == "successful", running.stderr
        namespace(None)
        runs = sorted(Flow("ProjectCompatFlow"), key=lambda r: r.created_at)
        for r in runs:
            emit([r.data.info, sorted(t for t in r.system_tags if t.startswith("project"))])
        emit(len(list(Flow("ProjectCompatFlow").runs("project_branch:prod"))))
        """
    )
    user = engine.env()["USER"]
    expect = [(f"user.{user}", False, True), ("test.new_ease", False, False), ("prod", True, False),
              ("prod.canary", True, False)]
    assert out[:4] == [
        [["recs", b, f"recs.{b}.ProjectCompatFlow", prod, mine], ["project:recs", f"project_branch:{b}"]]
        for b, prod, mine in expect
    ]
    assert out[4] == 1


def test_bad_project_names_and_branches_are_refused(engine):
    bad = engine.write("bad_project.py", FLOW.replace('name="recs"', 'name="Recs-1"'))
    res = engine.run(bad, "run", check=False)
    assert res.returncode != 0 and "lowercase" in (res.stdout + res.stderr)
    path = engine.write("project_flow.py", FLOW)
    res = engine.run(path, "--branch", "No-Way", "run", check=False)
    assert res.returncode != 0 and "lowercase" in (res.stdout + res.stderr)


# -- reelflow only from here: the registry, deployments and environment decorators ----------------

PYPI = """
from reelflow import FlowSpec, step, pypi, conda, pypi_base


@pypi_base(python="3.11", packages={"pandas": "2.2.2"})
class EnvFlow(FlowSpec):
    @pypi(packages={"scikit-learn": "1.5.0"})
    @step
    def start(self):
        self.x = 1
        self.next(self.end)

    @conda(libraries={"numpy": "1.26"})
    @step
    def end(self):
        pass


if __name__ == "__main__":
    EnvFlow()
"""


def _py(path, *args, env=None, cwd=None):
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REELFLOW_PROGRESS": "0", **(env or {})}, cwd=cwd or path.parent)
    assert proc.returncode == 0, f"{path.name} {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REELFLOW_PROGRESS": "0"})
    assert proc.returncode == 0, f"reelflow {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_pypi_and_conda_are_accepted_with_one_warning(tmp_path):
    path = tmp_path / "env_flow.py"
    path.write_text(PYPI)
    proc = _py(path, "--environment=pypi", "run")
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "--environment=pypi" in warnings[0] and "@pypi_base" in warnings[0] and "start, end" in warnings[0]
    assert "ignored" in warnings[0]
    from reelflow import Flow, namespace

    namespace(None)
    assert Flow("EnvFlow").latest_run.successful


REGISTRY = """
from reelflow import FlowSpec, Parameter, step, project, current, models, namespaced_event_name


@project(name="recs")
class PromoteFlow(FlowSpec):
    quality = Parameter("quality", default=0.5)

    @step
    def start(self):
        # what production's alias is, as this branch sees it before it moves its own
        self.seen_before = models.get("ranker@champion").version if models.alias_version("ranker", "champion") else None
        v = models.register("ranker", {"q": self.quality}, alias="champion", metrics={"q": self.quality})
        self.version = v.version
        self.seen_after = models.get("ranker@champion").version
        self.event_name = namespaced_event_name("ranker_ready")  # what this branch would publish
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    PromoteFlow()
"""


def test_a_branch_moves_its_own_aliases_and_never_production(tmp_path):
    from reelflow import models

    path = tmp_path / "promote.py"
    path.write_text(REGISTRY)
    _py(path, "--production", "run", "--quality", "0.9")
    assert models.get("ranker@champion").version == 1
    _py(path, "--branch", "new_ease", "run", "--quality", "0.1")
    _py(path, "run", "--quality", "0.2")  # the user's branch
    user = models.get("ranker/1").user
    # production's alias did not move; each branch has its own, under <project>.<branch>/<alias>
    assert models.get("ranker@champion").version == 1
    assert models.get("ranker@recs.test.new_ease/champion").version == 2
    assert models.get(f"ranker@recs.user.{user}/champion").version == 3
    assert models.alias_version("ranker", "recs.test.new_ease/champion") == 2
    hist = [(h["alias"], h["version"]) for h in models.history("ranker")]
    assert hist == [("champion", 1), ("recs.test.new_ease/champion", 2), (f"recs.user.{user}/champion", 3)]
    from reelflow import Flow, namespace

    namespace(None)
    by_branch = {r.data.version: (r.data.seen_before, r.data.seen_after) for r in Flow("PromoteFlow")}
    # a branch reads production's alias until it sets its own, then its own
    assert by_branch == {1: (None, 1), 2: (1, 2), 3: (1, 3)}
    assert sorted(r.data.event_name for r in Flow("PromoteFlow")) == [
        "recs.prod.ranker_ready", "recs.test.new_ease.ranker_ready", f"recs.user.{user}.ranker_ready"]
    with pytest.raises(Exception, match="not valid"):
        models.set_alias("ranker", "bad prefix/champion", 1)


UPSTREAM = """
from reelflow import FlowSpec, step, project, current, trigger, namespaced_event_name, events


@project(name="recs")
@trigger(event=namespaced_event_name("ratings_ready"))
class UpFlow(FlowSpec):
    @step
    def start(self):
        self.branch = current.branch_name
        self.next(self.end)

    @step
    def end(self):
        pass
"""

DOWNSTREAM = """
from reelflow import FlowSpec, step, project, current, trigger_on_finish


@project(name="recs")
@trigger_on_finish(flow="UpFlow")
class DownFlow(FlowSpec):
    @step
    def start(self):
        self.branch = current.branch_name
        self.upstream = current.trigger.run.pathspec
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_deployed_branches_fire_on_their_own_events_and_upstream_runs(tmp_path):
    pytest.importorskip("croniter")
    from reelflow import Flow, events, namespace
    from reelflow.operate import list_deployments

    d = tmp_path / "flows"
    d.mkdir()
    (d / "up.py").write_text(textwrap.dedent(UPSTREAM))
    (d / "down.py").write_text(textwrap.dedent(DOWNSTREAM))
    for f in ("up.py", "down.py"):
        _cli("deploy", str(d / f), "--production")
        _cli("deploy", str(d / f), "--branch", "new_ease")
    deps = {x.name: x for x in list_deployments()}
    assert set(deps) == {"recs.prod.UpFlow", "recs.test.new_ease.UpFlow", "recs.prod.DownFlow",
                         "recs.test.new_ease.DownFlow"}
    assert [e["name"] for e in deps["recs.test.new_ease.UpFlow"].triggers["events"]] == [
        "recs.test.new_ease.ratings_ready"]
    # the branch's event starts the branch's upstream, whose finish starts only the branch's downstream
    events.publish("recs.test.new_ease.ratings_ready", {})
    _cli("scheduler", "--once")
    namespace(None)
    ups, downs = list(Flow("UpFlow")), list(Flow("DownFlow"))
    assert [r.data.branch for r in ups] == ["test.new_ease"]
    assert [(r.data.branch, r.data.upstream) for r in downs] == [("test.new_ease", ups[0].pathspec)]
    assert "project_branch:test.new_ease" in ups[0].system_tags
    # production's event: production's chain, the branch's deployments stay quiet
    events.publish("recs.prod.ratings_ready", {})
    _cli("scheduler", "--once")
    ups = sorted(Flow("UpFlow"), key=lambda r: int(r.id))
    downs = sorted(Flow("DownFlow"), key=lambda r: int(r.id))
    assert [r.data.branch for r in ups] == ["test.new_ease", "prod"]
    assert [(r.data.branch, r.data.upstream) for r in downs] == [("test.new_ease", ups[0].pathspec),
                                                                ("prod", ups[1].pathspec)]
