"""The Ray executor: each task attempt is a Ray task on a Ray cluster (the ``ray`` extra).

``python flow.py run --executor ray`` (or ``--with ray``, or ``REELFLOW_EXECUTOR=ray``)
connects to ``$RAY_ADDRESS`` or, when none is given, starts a local Ray instance
for the run (stopped afterwards). The scheduler stays on the driver and records
the run; the workers read and write the store directly:

* code: the flow file's folder (its ``.py`` files and packages) is stored as one
  content-addressed blob, the code snapshot; a worker unpacks it once into its
  temporary folder and imports the flow from there, so nothing depends on a path
  that exists only on the driver;
* data: a worker opens the store from the run's configuration and loads and saves
  artifacts itself; only task specs, artifact references and the last lines of
  the logs pass through Ray. A cluster of more than one node needs a store every
  node can reach (``s3://...`` or another fsspec URL, and PostgreSQL): a local
  folder or SQLite is refused before the run starts;
* resources: ``@resources(cpu=, gpu=, memory=, custom=)`` become the Ray task's
  ``num_cpus``, ``num_gpus``, ``memory`` (MB -> bytes) and custom ``resources``;
  a step that no node of the cluster could ever run fails the run at once,
  naming the step, instead of waiting forever;
* failures: a worker or node that dies mid-task is a failed attempt
  (``@retry`` retries it; Ray's own retries are off); ``@timeout`` and Ctrl-C
  cancel the Ray task (``force=True`` ends its worker process);
* logs: a task's stdout and stderr are stored by the worker, and their lines are
  echoed with the task's pathspec prefix when it ends;
* ``@parallel`` gangs: the members are placed in one placement group (one bundle
  of the step's resources per member), so Ray starts all of them or none; each
  learns ``current.parallel.main_ip``, the address of the node holding member 0.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._extras import require
from ..errors import ExecutorError
from ._executors import Attempt, ExecutorContext
from ._logs import LogSink
from ._ray_gang import RayGangs, with_main_ip
from ._task import TaskResult, TaskSpec, execute_task

__all__ = ["RayExecutor", "ray_resources", "snapshot_code"]

_MAX_CODE_BYTES = 64 << 20  # a flow folder bigger than this is not a code folder
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}


# -- the driver side -------------------------------------------------------------------
def ray_resources(decorators: dict[str, Any]) -> dict[str, Any]:
    """The Ray task options a step's ``@resources`` asks for (1 CPU without one)."""
    deco = decorators.get("resources")
    if deco is None:
        return {"num_cpus": 1}
    a = deco.attributes
    opts: dict[str, Any] = {"num_cpus": float(a["cpu"]), "num_gpus": float(a["gpu"] or 0)}
    if a.get("memory"):
        opts["memory"] = int(float(a["memory"]) * 1024 * 1024)
    if a.get("custom"):
        opts["resources"] = {str(k): float(v) for k, v in a["custom"].items()}
    return opts


def _as_cluster_request(opts: dict[str, Any]) -> dict[str, float]:
    """Ray task options as the resource names ``ray.nodes()`` reports."""
    req = {"CPU": opts.get("num_cpus", 0), "GPU": opts.get("num_gpus", 0), "memory": opts.get("memory", 0)}
    req.update(opts.get("resources", {}))
    return {k: float(v) for k, v in req.items() if v}


def _describe_request(opts: dict[str, Any]) -> str:
    parts = [f"cpu={opts['num_cpus']:g}"] if opts.get("num_cpus") else []
    if opts.get("num_gpus"):
        parts.append(f"gpu={opts['num_gpus']:g}")
    if opts.get("memory"):
        parts.append(f"memory={opts['memory'] / 2**20:g} MB")
    parts += [f"{k}={v:g}" for k, v in opts.get("resources", {}).items()]
    return ", ".join(parts)


def _describe_node(res: dict[str, float]) -> str:
    shown = {k: v for k, v in res.items() if not k.startswith(("node:", "object_store", "accelerator_type"))}
    return "{" + ", ".join(f"{k}={v / 2**20 if k == 'memory' else v:g}{' MB' if k == 'memory' else ''}"
                           for k, v in sorted(shown.items())) + "}"


def snapshot_code(flow_cls: Any, store: Any) -> dict[str, str]:
    """Store the flow's code (its file's folder: ``.py`` files and packages) as one blob.

    Returns ``{"key", "file", "cls"}``: what a worker needs to import the flow class.
    The archive is deterministic (sorted names, no times), so unchanged code is one blob.
    """
    module = sys.modules.get(flow_cls.__module__)
    path = getattr(module, "__file__", None)
    if not path or not os.path.isfile(path):
        raise ExecutorError(f"flow {flow_cls.__name__}: its code is not in a file (defined in {flow_cls.__module__}); "
                            "the ray executor ships the flow file to the workers, so define the flow in a .py file")
    root = Path(path).resolve().parent
    files = [Path(path).resolve()]
    for p in sorted(root.iterdir()):
        if p.suffix == ".py" and p.is_file() and p not in files:
            files.append(p)
        elif p.is_dir() and (p / "__init__.py").is_file() and not p.name.startswith("."):
            files += sorted(q for q in p.rglob("*.py") if not (_SKIP_DIRS & set(q.relative_to(root).parts)))
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            data = f.read_bytes()
            total += len(data)
            if total > _MAX_CODE_BYTES:
                raise ExecutorError(f"the flow's folder {root} holds over {_MAX_CODE_BYTES >> 20} MB of Python "
                                    "files; keep the flow file in a folder of its own code")
            info = tarfile.TarInfo(str(f.relative_to(root)))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    key = store.save(buf.getvalue()).key
    return {"key": key, "file": Path(path).resolve().name, "cls": flow_cls.__name__}


@dataclass
class _StoredLog:
    """A log the worker already stored: what ``LogSink`` offers the scheduler."""

    key: str | None
    _tail: bytes = b""

    def __bool__(self) -> bool:
        return self.key is not None

    def close(self) -> str | None:
        return self.key

    def tail(self) -> bytes:
        return self._tail


@dataclass
class _RayAttempt:
    spec: TaskSpec
    frames: list[dict[str, Any]]
    started_at: float
    ref: Any = None
    deadline: float | None = None
    logs: dict[str, Any] = field(default_factory=dict)
    node_id: str | None = None


class RayExecutor:
    """Runs each task attempt as a Ray task (see the module docstring).

    Parameters
    ----------
    ctx : the run's executor context.
    address : the cluster (default ``$RAY_ADDRESS``; none: start a local Ray instance).
    num_cpus : CPUs of a local instance started here (default: all).
    object_store_memory : bytes of a local instance's object store (default: 128 MB;
        only small values pass through Ray).
    """

    name = "ray"
    runs_here = False

    def __init__(self, ctx: ExecutorContext, *, address: str | None = None, num_cpus: int | None = None,
                 object_store_memory: int | None = None) -> None:
        require("ray", "--executor ray", ("ray",))
        import ray

        self.ctx = ctx
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            # ray.init installs its own SIGTERM handler; the run's (stop the tasks, record the
            # run, exit 143) must stay in place.
            handlers = _signal_handlers()
            try:
                if address:
                    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                             object_store_memory=object_store_memory or 128 << 20,
                             logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; one clear message
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ExecutorError(
                    f"cannot start the run on {where}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}; "
                    + ("check that `ray start --head` runs there and RAY_ADDRESS is right"
                       if address else "unset REELFLOW_EXECUTOR or set RAY_ADDRESS to a running cluster")
                ) from None
            finally:
                _restore_signal_handlers(handlers)
            self._owned = True
        self._nodes: list[dict[str, float]] = []
        self._nodes_at = 0.0
        self._refresh_nodes()
        self._check_store()
        self.code = snapshot_code(ctx.flow_cls, ctx.store)
        self._remote = ray.remote(max_retries=0)(_ray_attempt)
        self.running: dict[Any, _RayAttempt] = {}
        self._gangs = RayGangs()  # the placement groups of @parallel gangs

    # -- cluster checks ----------------------------------------------------------------
    def _refresh_nodes(self) -> list[dict[str, float]]:
        self._nodes = [dict(n.get("Resources", {})) for n in self._ray.nodes() if n.get("Alive")]
        self._nodes_at = time.monotonic()
        return self._nodes

    def _check_store(self) -> None:
        from ..store._blobs import LocalBlobStore

        if len(self._nodes) <= 1:
            return  # one machine: a local folder and SQLite are shared by all its workers
        store = self.ctx.store
        local_blobs = isinstance(store.blobs, LocalBlobStore)
        sqlite = str(store.config.metadata_url).startswith("sqlite")
        if local_blobs or sqlite:
            what = " and ".join(x for x, bad in (
                (f"blobs in the local folder {store.blobs.url}", local_blobs),
                ("metadata in SQLite", sqlite)) if bad)
            raise ExecutorError(
                f"the Ray cluster has {len(self._nodes)} nodes but the store keeps {what}, which the other nodes "
                "cannot reach; set REELFLOW_STORE_URL to a shared store (s3://bucket/prefix) and "
                "REELFLOW_METADATA_URL to PostgreSQL (postgresql+psycopg://...), or run on a single-node Ray"
            )

    def _check_feasible(self, spec: TaskSpec, opts: dict[str, Any]) -> None:
        req = _as_cluster_request(opts)

        def fits() -> bool:
            return any(all(node.get(k, 0.0) >= v for k, v in req.items()) for node in self._nodes)

        if fits():
            return
        if time.monotonic() - self._nodes_at > 1.0:  # nodes may have joined since
            self._refresh_nodes()
            if fits():
                return
        nodes = "; ".join(_describe_node(n) for n in self._nodes) or "none alive"
        raise ExecutorError(
            f"it asks for {_describe_request(opts)} (@resources) but no node of the Ray cluster has that "
            f"(nodes: {nodes}); add a node with those resources or lower the step's @resources"
        )

    # -- the executor protocol ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self.running)

    def default_workers(self) -> int:
        cpus = sum(n.get("CPU", 0.0) for n in self._nodes)
        return max(16, int(cpus) * 4)  # Ray queues what does not fit; keep every node busy

    def prepare_gang(self, specs: list[TaskSpec], decorators: dict[str, Any]) -> list[TaskSpec]:
        """Reserve a placement group for a ``@parallel`` gang (see ``_ray_gang.py``)."""
        opts = ray_resources(decorators)
        self._check_feasible(specs[0], opts)
        self._gangs.reserve(specs, opts, self._nodes)
        return specs

    def submit(self, spec: TaskSpec, frames: list[dict[str, Any]], *, timeout_seconds: float, now: float,
               decorators: dict[str, Any]) -> None:
        opts = ray_resources(decorators)
        self._check_feasible(spec, opts)
        job: dict[str, Any] = {"spec": spec, "code": self.code, "config": self.ctx.store.config}
        if spec.parallel is not None:
            job["pg"], opts["scheduling_strategy"] = self._gangs.placement(spec)
        ref = self._remote.options(name=f"reelflow:{spec.pathspec}", **opts).remote(job)
        a = _RayAttempt(spec, frames, now, ref, deadline=now + timeout_seconds if timeout_seconds else None)
        self.running[ref] = a

    def poll(self, max_wait: float = 0.2) -> list[tuple[Attempt, TaskResult]]:
        if not self.running:
            return []
        ray = self._ray
        now = time.time()
        deadlines = [a.deadline for a in self.running.values() if a.deadline]
        wait = max_wait if not deadlines else max(0.0, min(max_wait, min(deadlines) - now))
        refs = list(self.running)
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait, fetch_local=True)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=True)
        out: list[tuple[Attempt, TaskResult]] = []
        for ref in ready:
            a = self.running.pop(ref)
            out.append((a, self._collect(a)))
            if a.spec.parallel is not None:
                self._gangs.ended(a.spec)
        now = time.time()
        for ref, a in list(self.running.items()):
            if a.deadline and now > a.deadline:
                ray.cancel(ref, force=True)
                del self.running[ref]
                if a.spec.parallel is not None:
                    self._gangs.ended(a.spec)
                out.append((a, TaskResult("failed", exception=(
                    f"TimeoutError: step {a.spec.step_name!r} timed out after {a.deadline - a.started_at:.0f}s "
                    "(@timeout); raise the limit or make the step faster"))))
        return out

    def _collect(self, a: _RayAttempt) -> TaskResult:
        """The result of an ended Ray task; its logs echoed with the pathspec prefix."""
        ray = self._ray
        try:
            done = ray.get(a.ref)
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            return TaskResult("failed", exception=(
                f"WorkerCrashed: the Ray task of step {a.spec.step_name!r} ended without a result "
                f"({type(exc).__name__}: {first})"))
        a.node_id = done.get("node_id")
        for stream in ("stdout", "stderr"):
            a.logs[stream] = _StoredLog(done["logs"].get(stream), done["tails"].get(stream, b""))
            self._echo(a.spec, stream, done["tails"].get(stream, b""), done["sizes"].get(stream, 0))
        result: TaskResult = done["result"]
        return result

    def _echo(self, spec: TaskSpec, stream: str, tail: bytes, size: int) -> None:
        if self.ctx.echo is None or not tail:
            return
        if size > len(tail):
            self.ctx.echo(spec, stream, f"... ({size - len(tail)} bytes before; `reelflow logs {spec.pathspec}` "
                                        "shows all)".encode())
            tail = tail.split(b"\n", 1)[-1]  # from the first whole line
        for line in tail.rstrip(b"\n").split(b"\n"):
            self.ctx.echo(spec, stream, line)

    def cancel(self, grace: float = 2.0) -> list[tuple[Attempt, TaskResult | None]]:
        ray = self._ray
        out: list[tuple[Attempt, TaskResult | None]] = []
        refs = list(self.running)
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        if refs:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=grace, fetch_local=True)
            for ref in refs:
                a = self.running.pop(ref)
                result = self._collect(a) if ref in ready else None
                out.append((a, result if result is not None and result.status == "succeeded" else None))
        self.running.clear()
        self._gangs.release_all()
        return out

    def shutdown(self) -> None:
        if self.running:
            self.cancel(grace=0.5)
        if self._owned:
            self._owned = False
            self._ray.shutdown()


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


# -- the worker side -------------------------------------------------------------------
_flows: dict[tuple[str, str], Any] = {}
_flows_lock = threading.Lock()


def _load_flow(code: dict[str, str], store: Any) -> Any:
    """The flow class of a code snapshot, unpacked once per worker process and key."""
    import importlib.util

    cache_key = (code["key"], code["cls"])
    with _flows_lock:
        if cache_key in _flows:
            return _flows[cache_key]
        base = Path(tempfile.gettempdir()) / f"reelflow-code-{os.getuid() if hasattr(os, 'getuid') else 0}"
        base.mkdir(mode=0o700, exist_ok=True)
        target = base / code["key"]
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=".unpack-"))
            with tarfile.open(fileobj=io.BytesIO(store.load(code["key"], what="code snapshot"))) as tar:
                # our own archive of .py files; the "data" filter where Python has it (3.10.12+)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - older Pythons
                    tar.extractall(tmp)  # noqa: S202
            try:
                os.rename(tmp, target)
            except OSError:  # another worker of this machine unpacked it first
                pass
        if str(target) not in sys.path:
            sys.path.insert(0, str(target))  # the flow's sibling modules import as on the driver
        name = f"reelflow_flow_{code['key'][:16]}"
        spec = importlib.util.spec_from_file_location(name, target / code["file"])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        flow_cls = getattr(mod, code["cls"])
        _flows[cache_key] = flow_cls
        return flow_cls


class _Capture(io.TextIOBase):
    """A text stream that writes into a task's log sink."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def write(self, s: str) -> int:
        self._sink.write(s.encode("utf-8", "replace"))
        return len(s)

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def _ray_attempt(job: dict[str, Any]) -> dict[str, Any]:
    """One task attempt inside a Ray worker: load the code, run the step, store its logs."""
    from ..store import get_store

    store = get_store(job["config"])
    spec: TaskSpec = job["spec"]
    sinks = {"stdout": LogSink(store), "stderr": LogSink(store)}
    out, err = sys.stdout, sys.stderr
    sys.stdout = _Capture(sinks["stdout"])  # type: ignore[assignment]
    sys.stderr = _Capture(sinks["stderr"])  # type: ignore[assignment]
    if spec.parallel is not None and job.get("pg") is not None:
        spec = with_main_ip(spec, job["pg"])
    try:
        try:
            flow_cls = _load_flow(job["code"], store)
            result = execute_task(flow_cls, spec, store)
        except Exception as exc:  # noqa: BLE001 - the code snapshot did not import
            import traceback

            result = TaskResult("failed", exception=f"{type(exc).__name__}: loading the flow's code failed: {exc}",
                                traceback=traceback.format_exc())
        if result.status == "failed" and result.traceback:
            sys.stderr.write(result.traceback)
    finally:
        sys.stdout, sys.stderr = out, err
    node_id = None
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - only for the record
        pass
    return {
        "result": result,
        "logs": {s: sink.close() for s, sink in sinks.items()},
        "tails": {s: sink.tail() for s, sink in sinks.items()},
        "sizes": {s: sink.size for s, sink in sinks.items()},
        "node_id": node_id,
    }

