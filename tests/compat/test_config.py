"""Config (Metaflow 2.13+): files, values, defaults, parsers, config_expr in decorators and defaults, resume."""

from __future__ import annotations

import json

CFG = {"alpha": 0.25, "retries": 2, "cpu": 2, "model": {"name": "ease", "factors": [8, 16]}}
OTHER = {"alpha": 0.5, "retries": 1, "cpu": 1, "model": {"name": "als", "factors": [4]}}

FLOW = """
import os
from metaflow import FlowSpec, Parameter, step, Config, config_expr, current, environment, resources, retry


def parse_kv(text):
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip())


class ConfigCompatFlow(FlowSpec):
    cfg = Config("cfg", default="cfg.json")
    kv = Config("kv", default_value="a=1\\nb=2", parser=parse_kv)
    alpha = Parameter("alpha", default=config_expr("cfg.alpha"))

    @environment(vars={"MODEL_NAME": config_expr("cfg.model.name.upper()")})
    @retry(times=config_expr("cfg.retries"), minutes_between_retries=0)
    @resources(cpu=cfg.cpu)
    @step
    def start(self):
        if current.retry_count < self.cfg.retries:
            raise RuntimeError("not yet")
        self.attempts = current.retry_count
        self.seen = [self.cfg.model.name, self.cfg["model"]["factors"], list(self.cfg.model.factors),
                     self.kv.a, self.kv["b"], self.alpha, os.environ.get("MODEL_NAME"),
                     isinstance(self.cfg, dict), sorted(self.cfg)]
        errors = []
        for attempt in (lambda: setattr(self, "cfg", {}), lambda: self.cfg.__setitem__("x", 1),
                        lambda: setattr(self.cfg, "x", 1)):
            try:
                attempt()
                errors.append(None)
            except (AttributeError, TypeError) as exc:
                errors.append(isinstance(exc, AttributeError))
        self.errors = errors
        self.next(self.end)

    @step
    def end(self):
        if os.path.exists("fail_end"):
            raise RuntimeError("asked to fail")
        self.end_name = self.cfg.model.name


if __name__ == "__main__":
    ConfigCompatFlow()
"""

READ = """
from metaflow import Flow, namespace
namespace(None)
for r in sorted(Flow("ConfigCompatFlow"), key=lambda r: r.created_at):
    start = r["start"].task
    emit([r.successful, start.data.attempts, start.data.seen, start.data.errors, start.data.cfg, start.data.kv,
          r["end"].task.data.end_name if r.successful else None])
"""


def _flow(engine):
    path = engine.write("config_flow.py", FLOW)
    (path.parent / "cfg.json").write_text(json.dumps(CFG))
    (path.parent / "other.json").write_text(json.dumps(OTHER))
    return path


def test_config_from_default_file_option_and_value(engine):
    path = _flow(engine)
    engine.run(path, "run")
    engine.run(path, "--config", "cfg", "other.json", "--config-value", "kv", "a=7\nb=8", "run", "--alpha", "0.75")
    out = engine.client(READ)
    assert out == [
        [True, 2, ["ease", [8, 16], [8, 16], "1", "2", 0.25, "EASE", True, ["alpha", "cpu", "model", "retries"]],
         [True, False, False], CFG, {"a": "1", "b": "2"}, "ease"],
        [True, 1, ["als", [4], [4], "7", "8", 0.75, "ALS", True, ["alpha", "cpu", "model", "retries"]],
         [True, False, False], OTHER, {"a": "7", "b": "8"}, "als"],
    ]


def test_resume_reuses_the_origin_runs_config(engine):
    path = _flow(engine)
    (path.parent / "fail_end").write_text("")
    res = engine.run(path, "--config", "cfg", "other.json", "run", check=False)
    assert res.returncode != 0
    (path.parent / "fail_end").unlink()
    engine.run(path, "resume")
    out = engine.client(READ)
    assert [o[0] for o in out] == [False, True]
    assert out[1][4] == OTHER and out[1][6] == "als"  # not cfg.json, the default


def test_bad_config_input_is_one_clear_error(engine):
    path = _flow(engine)
    (path.parent / "broken.json").write_text("{not json")
    for args, words in [(("--config", "cfg", "missing.json"), ("missing.json",)),
                        (("--config", "cfg", "broken.json"), ("json",)),
                        (("--config", "nope", "cfg.json"), ("nope",))]:
        res = engine.run(path, *args, "run", check=False)
        text = (res.stdout + res.stderr).lower()
        assert res.returncode != 0 and all(w in text for w in words), (args, text[-2000:])
        if engine.name == "reelflow":
            assert "Traceback" not in res.stderr and res.returncode == 2
    if engine.name == "reelflow":
        shown = engine.run(path, "show").stdout
        assert "cfg (default file 'cfg.json')" in shown and "kv (a default value)" in shown
        assert "--alpha (float)" in shown  # the type of the default that config_expr gave


def test_runner_passes_configs_as_metaflow_does(engine):
    path = _flow(engine)
    value = {**OTHER, "retries": 0, "model": {"name": "svd", "factors": [2]}}
    out = engine.client(
        f"""
        from metaflow import Runner
        with Runner({str(path)!r}, show_output=False, cwd={str(path.parent)!r},
                    config_value=[("cfg", {value!r})]).run() as running:
            emit([running.status, running.run.data.cfg, running.run["start"].task.data.seen[0]])
        """
    )
    assert out == [["successful", value, "svd"]]


DEPLOYED = """
from reelflow import FlowSpec, step, Config, config_expr, trigger, environment


@trigger(event="go")
class DeployedConfigFlow(FlowSpec):
    cfg = Config("cfg", default="settings.json")

    @environment(vars={"LABEL": config_expr("cfg.label")})
    @step
    def start(self):
        import os
        self.label = [self.cfg.label, os.environ["LABEL"]]
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_configs_are_fixed_when_deployed(tmp_path):
    """A deployment keeps the configs of deploy time: the file beside the flow may change or go."""
    import os
    import subprocess
    import sys

    import pytest

    pytest.importorskip("croniter")
    from reelflow import Flow, events, namespace

    d = tmp_path / "flows"
    d.mkdir()
    (d / "flow.py").write_text(DEPLOYED)
    (d / "settings.json").write_text('{"label": "at-deploy"}')
    env = {**os.environ, "REELFLOW_PROGRESS": "0"}

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True, env=env,
                           timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    cli("deploy", str(d / "flow.py"))
    cli("deploy", str(d / "flow.py"), "--name", "Other", "--config-value", "cfg", '{"label": "given"}')
    (d / "settings.json").unlink()
    events.publish("go", {})
    cli("scheduler", "--once")
    namespace(None)
    assert sorted(r.data.label for r in Flow("DeployedConfigFlow")) == [["at-deploy", "at-deploy"],
                                                                          ["given", "given"]]


SPIN = """
import os
from reelflow import FlowSpec, step, Config, config_expr, environment


class SpinConfigFlow(FlowSpec):
    cfg = Config("cfg", default_value={"label": "default"})

    @step
    def start(self):
        self.next(self.show)

    @environment(vars={"LABEL": config_expr("cfg.label")})
    @step
    def show(self):
        print("label", self.cfg.label, os.environ["LABEL"])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SpinConfigFlow()
"""


def test_spin_uses_the_past_runs_configs(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "spin_flow.py"
    path.write_text(SPIN)
    env = {**os.environ, "REELFLOW_PROGRESS": "0"}
    for args in (["--config-value", "cfg", '{"label": "given"}', "run"], ["spin", "show"]):
        p = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=300,
                           cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
    assert "label given given" in p.stdout  # the spun step saw the run's config, not the default


MUTATED = """
import os
from metaflow import FlowSpec, step, Config, FlowMutator, current, environment, retry


class Hardened(FlowMutator):
    def init(self, prefix="fit"):
        self.prefix = prefix

    def mutate(self, mutable_flow):
        cfg = dict(mutable_flow.configs)["cfg"]
        for name, s in mutable_flow.steps:
            if name.startswith(self.prefix):
                s.add_decorator(retry, deco_kwargs={"times": cfg.retries, "minutes_between_retries": 0})
                s.add_decorator("environment", deco_kwargs={"vars": {"STAGE": cfg.stage}})
            s.remove_decorator("retry") if name == "end" else None


@Hardened(prefix="fit")
class MutatedFlow(FlowSpec):
    cfg = Config("cfg", default_value={"retries": 2, "stage": "dev"})

    @step
    def start(self):
        self.next(self.fit_model)

    @step
    def fit_model(self):
        if current.retry_count < self.cfg.retries:
            raise RuntimeError("flaky")
        self.attempts = current.retry_count
        self.stage = os.environ.get("STAGE")
        self.next(self.end)

    @retry(times=5)
    @step
    def end(self):
        if current.retry_count == 0:
            raise RuntimeError("end fails once: it has no @retry any more")


if __name__ == "__main__":
    MutatedFlow()
"""


def test_a_flow_mutator_adds_and_removes_step_decorators_from_configs(engine):
    path = engine.write("mutated_flow.py", MUTATED)
    engine.run(path, "--config-value", "cfg", '{"retries": 1, "stage": "prod"}', "run", check=False)
    out = engine.client(
        """
        from metaflow import Flow, namespace
        namespace(None)
        run = Flow("MutatedFlow").latest_run
        t = run["fit_model"].task
        emit([run.successful, t.data.attempts, t.data.stage, run["end"].task.successful])
        """
    )
    assert out == [[False, 1, "prod", False]]
