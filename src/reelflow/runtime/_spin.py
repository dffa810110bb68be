"""``python flow.py spin STEP``: run one step again on a past run's inputs, recording no run.

As Metaflow 2.19's ``spin``: the pathspec is ``STEP``, ``RUN/STEP``, ``RUN/STEP/TASK``
(or with the flow's name in front); without a run, the newest run in which the step
succeeded. The task gets exactly the inputs the original task had (its parents'
artifacts, its foreach position, a join's inputs), runs in this process (so
``breakpoint()`` works), and prints what it produced. Nothing is written to the
store's runs: its new artifacts go to a scratch folder, deleted afterwards unless
``--persist`` (kept under ``<home>/spin/``) or the Runner asked for them
(``Runner.spin`` returns them as ``.task.data``). ``--artifacts-module FILE`` replaces
input artifacts with the values of its ``ARTIFACTS`` dict.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, ParameterError
from ..store import ArtifactRef, Store
from ._task import TaskResult, TaskSpec, execute_task

__all__ = ["parse_spin_pathspec", "spin", "spin_args", "SpinTask"]

MANIFEST = "spin.json"


def parse_spin_pathspec(pathspec: str, flow_name: str) -> tuple[str, str | None, str | None]:
    """``(step, run_id, task_id)`` of ``STEP``, ``RUN/STEP``, ``RUN/STEP/TASK``, ``FLOW/RUN/STEP[/TASK]``."""
    parts = pathspec.strip("/").split("/")
    if len(parts) == 4 or (len(parts) == 3 and parts[0] == flow_name):
        if parts[0] != flow_name:
            raise ParameterError(f"spin: flow name {parts[0]!r} in {pathspec!r} is not this flow ({flow_name})")
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0], None, None
    if len(parts) == 2:
        return parts[1], parts[0], None
    if len(parts) == 3:
        return parts[1], parts[0], parts[2]
    raise ParameterError(f"spin: {pathspec!r} is not STEP, RUN/STEP or RUN/STEP/TASK (e.g. spin train, "
                         "spin 12/train/4)")


class _OverlayBlobs:
    """Writes go to a scratch folder; reads find the past run's blobs in the store."""

    def __init__(self, scratch: Any, base: Any) -> None:
        self.scratch, self.base = scratch, base
        self.url = scratch.url

    def put(self, key: str, chunks: Any) -> bool:
        return bool(self.scratch.put(key, chunks))

    def get(self, key: str) -> bytearray:
        return self.scratch.get(key) if self.scratch.exists(key) else self.base.get(key)  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        return bool(self.scratch.exists(key) or self.base.exists(key))

    def quarantine(self, key: str, seen: Any) -> str | None:
        return None

    def flush(self) -> None:
        pass

    def check(self) -> None:
        self.scratch.check()


def overlay_store(store: Store, folder: Path) -> Store:
    """``store`` for reading, with new blobs (and any metadata a step writes) kept in ``folder``."""
    from ..config import load_config
    from ..store import LocalBlobStore

    spun = copy.copy(store)
    spun.config = dataclasses.replace(load_config(folder), user=store.config.user)
    spun._metadata = spun._md_handle = None
    spun.blobs = _OverlayBlobs(LocalBlobStore(folder / "blobs", durable=False), store.blobs)  # type: ignore[assignment]
    return spun


def _find_task(store: Store, flow_name: str, step: str, run_id: str | None, task_id: str | None) -> dict[str, Any]:
    md = store.metadata
    if run_id is None:
        for run in md.recent_runs(flow_name, limit=50):
            if any(r["status"] == "succeeded" for r in md.tasks_of_run(run["run_id"], step)):
                run_id = run["run_id"]
                break
        if run_id is None:
            raise NotFoundError(f"spin: flow {flow_name} has no run in which step {step!r} succeeded; run the flow "
                                "first, or name a run: spin RUN/STEP")
    rows = [r for r in md.tasks_of_run(run_id, step) if r["status"] == "succeeded"]
    if task_id is not None:
        rows = [r for r in rows if str(r["task_id"]) == str(task_id)]
    if not rows:
        which = f"task {task_id} of " if task_id else ""
        raise NotFoundError(f"spin: {which}step {step!r} of run {flow_name}/{run_id} has no successful task to "
                            f"take the inputs of; see `reelflow runs show {flow_name}/{run_id}`")
    return {**rows[-1], "run_id": run_id}


def _refs_of(store: Store, run_id: str, pathspec: str) -> dict[str, ArtifactRef]:
    _, _, step, task_id = pathspec.split("/")
    rows = [r for r in store.metadata.tasks_of_run(run_id, step)
            if str(r["task_id"]) == task_id and r["status"] == "succeeded"]
    if not rows:
        raise NotFoundError(f"spin: input task {pathspec} has no successful attempt")
    return store.metadata.artifacts_of([rows[-1]["id"]])[rows[-1]["id"]]


def _spec(flow_cls: Any, store: Store, row: dict[str, Any], overrides: dict[str, ArtifactRef]) -> TaskSpec:
    flow_name = flow_cls.__name__
    graph = flow_cls.graph()
    node = graph[row["step_name"]]
    run = store.metadata.get_run(flow_name, row["run_id"])
    params = {n: ArtifactRef(p["key"], p["size"], p["type"]) for n, p in run["params"].items()}
    join_inputs = None
    if node.is_join:
        join_inputs = [(p.split("/")[2], p, {**_refs_of(store, row["run_id"], p), **overrides})
                       for p in row["input_paths"]]
        base = {**params, **overrides}
    elif row["input_paths"]:
        base = {**_refs_of(store, row["run_id"], row["input_paths"][0]), **overrides}
    else:
        base = {**params, **overrides}
    frames = []
    splits = [s for s in node.split_parents if graph[s].kind in ("foreach", "parallel")]
    for (index, num), split in zip(row["foreach_stack"] or [], splits):
        param = graph[split].foreach_param
        frame: dict[str, Any] = {"kind": graph[split].kind, "step": split, "task_id": 0, "index": index,
                                 "num_splits": num, "param": param, "key": base[param].key if param in base else None}
        if param is None:
            frame["value"] = index
        frames.append(frame)
    gang = None
    if "parallel" in node.decorators and frames:  # one member of a gang, spun alone
        gang = {"node_index": frames[-1]["index"], "num_nodes": frames[-1]["num_splits"], "main_ip": "127.0.0.1",
                "control_task_id": None}
    return TaskSpec(flow_name=flow_name, run_id=f"spin-{row['run_id']}", step_name=row["step_name"],
                    task_id=int(row["task_id"]), attempt=0, task_key=f"{row['step_name']}[spin]",
                    input_paths=list(row["input_paths"] or []), base_refs=base, params=frozenset(params),
                    user=store.config.user, tags=frozenset(), origin_run_id=row["run_id"],
                    foreach_frames=frames, join_inputs=join_inputs, parallel=gang,
                    configs={a: store.load(params[a].key, what=f"config {a!r} of the run")  # the run's configs
                             for a in flow_cls._flow_configs() if a in params} or None)


def _load_overrides(path: str | None, store: Store) -> dict[str, ArtifactRef]:
    if not path:
        return {}
    spec = importlib.util.spec_from_file_location("reelflow_spin_artifacts", path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise ParameterError(f"spin --artifacts-module {path!r}: no such Python file")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    values = getattr(mod, "ARTIFACTS", None)
    if not isinstance(values, dict):
        raise ParameterError(f"spin --artifacts-module {path!r}: define ARTIFACTS = {{'name': value, ...}} in it")
    return {str(k): store.save(v) for k, v in values.items()}


def spin(flow_cls: Any, pathspec: str, *, persist: bool = False, skip_decorators: bool = False,
         artifacts_module: str | None = None, result_dir: str | None = None, quiet: bool = False) -> TaskResult:
    """Run the step of ``pathspec`` again (see the module docstring); print and return its result."""
    import click

    from ..store import get_store

    store = get_store()
    flow_name = flow_cls.__name__
    step, run_id, task_id = parse_spin_pathspec(pathspec, flow_name)
    if step not in flow_cls.graph():
        raise ParameterError(f"spin: flow {flow_name} has no step {step!r}; steps are "
                             f"{', '.join(flow_cls.graph().nodes)}")
    row = _find_task(store, flow_name, step, run_id, task_id)
    origin = f"{flow_name}/{row['run_id']}/{step}/{row['task_id']}"
    if persist:
        folder = store.config.home / "spin" / flow_name / f"{int(time.time() * 1000)}-{row['run_id']}-{step}"
    elif result_dir:
        folder = Path(result_dir)
    else:
        folder = Path(tempfile.mkdtemp(prefix="reelflow-spin-"))
    folder.mkdir(parents=True, exist_ok=True)
    spun = overlay_store(store, folder)
    try:
        spec = _spec(flow_cls, store, row, _load_overrides(artifacts_module, spun))
        if not quiet:
            click.echo(f"Spinning {origin} on its inputs (nothing is recorded)", err=True)
        started = time.time()
        cls = _without_decorators(flow_cls) if skip_decorators else flow_cls
        result = execute_task(cls, spec, spun)
        base = spec.base_refs
        changed = sorted(n for n, r in result.artifacts.items() if n not in base or base[n].key != r.key)
        manifest = {"origin": origin, "step": step, "status": result.status, "exception": result.exception,
                    "blobs": str(folder / "blobs"), "changed": changed,
                    "artifacts": {n: [r.key, r.size, r.type] for n, r in result.artifacts.items()}}
        (folder / MANIFEST).write_text(json.dumps(manifest))
        if result_dir and persist:
            Path(result_dir).mkdir(parents=True, exist_ok=True)
            (Path(result_dir) / MANIFEST).write_text(json.dumps(manifest))
        if result.status == "failed":
            click.echo((result.traceback or result.exception or "").rstrip(), err=True)
            return result
        click.echo(f"Step {step} succeeded in {time.time() - started:.2f}s; it produced:")
        for n in changed:
            r = result.artifacts[n]
            click.echo(f"  {n} = {_short(spun.load(r.key, what=f'artifact {n!r}'))}")
        if persist:
            click.echo(f"Kept in {folder}")
        return result
    finally:
        if not persist and not result_dir:
            shutil.rmtree(folder, ignore_errors=True)


def _without_decorators(flow_cls: Any) -> Any:
    """``flow_cls`` with its steps' decorators set aside (``--skip-decorators``)."""
    graph = flow_cls.graph()
    clone = type(flow_cls.__name__, (flow_cls,), {"__module__": flow_cls.__module__})
    g = copy.copy(graph)
    g.nodes = {n: dataclasses.replace(node, decorators={}) for n, node in graph.nodes.items()}
    clone._graph_cache = g  # type: ignore[attr-defined]
    return clone


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 200 else r[:197] + "..."


def spin_args(kwargs: dict[str, Any]) -> list[str]:
    """``Runner.spin`` keywords as ``spin`` options (Metaflow's names)."""
    argv: list[str] = []
    for k, v in kwargs.items():
        if k == "persist":
            argv.append("--persist" if v else "--no-persist")
        elif k == "skip_decorators":
            argv.append("--skip-decorators" if v else "--no-skip-decorators")
        elif k == "artifacts_module":
            if v:
                argv += ["--artifacts-module", str(v)]
        elif k in ("max_log_size", "runner_attribute_file", "run_id_file"):
            continue
        elif k == "quiet":
            argv += ["--quiet"] if v else []
        else:
            raise ParameterError(f"Runner.spin: no option {k!r}; spin takes persist, skip_decorators, "
                                 "artifacts_module")
    return argv


def add_spin_command(cli: Any, flow_cls: Any, guard: Any) -> None:
    """``spin PATHSPEC`` on a flow's click group."""
    import sys

    import click

    @cli.command("spin", help="Run one step again on the inputs of a past run's task, recording no run. PATHSPEC is "
                      "STEP, RUN/STEP or RUN/STEP/TASK (default: the newest run where STEP succeeded).")
    @click.argument("pathspec")
    @click.option("--persist/--no-persist", default=False, show_default=True,
                  help="Keep the step's outputs under <home>/spin/.")
    @click.option("--skip-decorators/--no-skip-decorators", default=False, show_default=True,
                  help="Run the step without its decorators.")
    @click.option("--artifacts-module", default=None, metavar="FILE",
                  help="A .py file whose ARTIFACTS dict replaces input artifacts.")
    @click.option("--max-log-size", default=10, hidden=True, help="Accepted for Metaflow; no effect.")
    @click.option("--quiet", is_flag=True, help="Print only what the step produced.")
    @click.option("--result-dir", default=None, hidden=True, help="Where Runner.spin reads the outputs.")
    @click.option("--run-id-file", default=None, hidden=True)
    @click.option("--runner-attribute-file", default=None, hidden=True)
    @guard
    def spin_cmd(pathspec: str, persist: bool, skip_decorators: bool, artifacts_module: str | None,
                 max_log_size: int, quiet: bool, result_dir: str | None, run_id_file: str | None,
                 runner_attribute_file: str | None) -> None:
        result = spin(flow_cls, pathspec, persist=persist, skip_decorators=skip_decorators,
                      artifacts_module=artifacts_module, result_dir=result_dir, quiet=quiet)
        if result.status != "succeeded":
            click.echo(f"error: the spun step failed: {result.exception}", err=True)
            sys.exit(1)


class _Data:
    def __init__(self, task: SpinTask) -> None:
        self._task = task

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._task[name].data
        except KeyError:
            raise AttributeError(f"the spun step has no artifact {name!r}") from None


@dataclasses.dataclass
class SpunArtifact:
    id: str
    ref: ArtifactRef
    store: Store

    @property
    def data(self) -> Any:
        return self.store.load(self.ref.key, what=f"artifact {self.id!r}")


class SpinTask:
    """What a spun step produced: ``.data.<name>``, ``task["name"].data``, ``"name" in task``."""

    def __init__(self, manifest: dict[str, Any], store: Store) -> None:
        self.origin_pathspec: str = manifest["origin"]
        self.step_name: str = manifest["step"]
        self.successful = manifest["status"] == "succeeded"
        self.exception: str | None = manifest["exception"]
        self.changed: list[str] = manifest["changed"]
        self._refs = {n: ArtifactRef(*r) for n, r in manifest["artifacts"].items()}
        self._store = store
        self.data = _Data(self)

    @classmethod
    def open(cls, folder: Path, store: Store) -> SpinTask | None:
        """The spun task whose manifest is in ``folder`` (None when the spin never ran the step)."""
        path = folder / MANIFEST
        if not path.is_file():
            return None
        manifest = json.loads(path.read_text())
        return cls(manifest, overlay_store(store, Path(manifest["blobs"]).parent))

    def __getitem__(self, name: str) -> SpunArtifact:
        return SpunArtifact(name, self._refs[name], self._store)

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __iter__(self) -> Any:
        return iter([self[n] for n in self._refs])

    def __repr__(self) -> str:
        return f"SpinTask(spun from {self.origin_pathspec}, {'successful' if self.successful else 'failed'})"
