"""Deployments: a flow's code snapshot in the store plus its triggers, versioned by name.

``deploy("flow.py")`` stores every ``.py`` file of the flow file's folder
(non-recursive: the flow and the helper modules beside it) as content-addressed
blobs, exactly like artifacts, and records a new version of the deployment. The
scheduler later runs that snapshot, never whatever is on disk by then.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from ..errors import FlowDefinitionError, NotFoundError, ParameterError
from ..flows._project import resolve_event_name, resolve_project
from ..flows._triggers import check_cron, check_timezone, flow_triggers

__all__ = ["deploy", "Deployment", "get_deployment", "list_deployments", "pause", "resume", "delete_deployment",
           "deployment_history", "materialize", "next_slot", "with_run_options", "CATCHUP", "ON_BUSY"]

CATCHUP = ("latest", "all", "none")
ON_BUSY = ("queue", "skip")
MAX_SNAPSHOT_FILE = 4 * 1024 * 1024  # bytes; a bigger .py beside a flow is data, not code


@dataclass(frozen=True)
class Deployment:
    """One deployment as recorded: its current version's code, triggers and policies."""

    name: str
    version: int
    flow_name: str
    paused: bool
    entry: str
    code: dict[str, str]
    params: dict[str, str]
    param_types: dict[str, str]
    triggers: dict[str, Any]
    catchup: str
    max_concurrent: int
    on_busy: str
    source: str | None
    next_slot: float | None
    created_at: float
    user: str
    executor: str | None = None  # how its runs' tasks run (None: the scheduler's $REELFLOW_EXECUTOR or default)
    with_specs: tuple[str, ...] = ()  # --with values every run gets (decorators, ``ray:address=...``)

    def run_args(self) -> list[str]:
        """The options of ``reelflow run`` that carry the executor choice and ``--with`` decorators."""
        out = ["--executor", self.executor] if self.executor else []
        for spec in self.with_specs:
            out += ["--with", spec]
        return out

    def describe_triggers(self) -> str:
        """``schedule '0 * * * *' (UTC); events a, b; after Flow`` or ``manual only``."""
        t = self.triggers
        bits = []
        if t.get("cron"):
            bits.append(f"schedule {t['cron']!r} ({t.get('timezone') or 'UTC'})")
        if t.get("events"):
            bits.append("events " + ", ".join(e["name"] for e in t["events"]))
        if t.get("flows"):
            bits.append("after " + ", ".join(t["flows"]))
        return "; ".join(bits) or "no triggers (start it with a schedule, event or upstream flow)"


def _store() -> Any:
    from ..store import get_store

    return get_store()


def _tables(store: Any) -> Any:
    from ..store._operate_db import operate_tables

    return operate_tables(store.metadata)


def next_slot(cron: str, tz: str | None, after: float) -> float:
    """The first slot of ``cron`` in time zone ``tz`` strictly after ``after`` (epoch seconds)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from croniter import croniter

    zone = ZoneInfo(tz or "UTC")
    it = croniter(cron, datetime.fromtimestamp(after, zone))
    return float(it.get_next(float))


def _require_croniter() -> None:
    from .. import _extras

    _extras.require("operate", "schedules (@schedule)", modules=("croniter",))


def _parse_params(params: Mapping[str, Any] | None, flow_params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    names = {p.name: p for p in flow_params.values()}
    for k, v in (params or {}).items():
        if k not in names:
            raise ParameterError(f"deploy: --param {k}=...: the flow has no parameter {k!r}; its parameters are "
                                 f"{', '.join(sorted(names)) or 'none'}")
        text = v if isinstance(v, str) else json.dumps(v)
        try:
            names[k].convert(text)
        except Exception as exc:
            raise ParameterError(f"deploy: --param {k}={text!r}: {exc}") from None
        out[k] = text
    return out


def deploy(
    flow_file: str | os.PathLike[str],
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    catchup: str = "latest",
    max_concurrent: int = 1,
    on_busy: str = "queue",
    executor: str | None = None,
    with_specs: Sequence[str] = (),
    now: float | None = None,
    branch: str | None = None,
    production: bool = False,
    config_files: Mapping[str, str] | None = None,
    config_texts: Mapping[str, str] | None = None,
) -> Deployment:
    """Snapshot ``flow_file``'s code into the store and record a new version of deployment ``name``.

    Parameters
    ----------
    flow_file : the flow file (``path/flow.py`` or ``path/flow.py:ClassName``).
    name : the deployment's name (default: the flow class name).
    params : parameter values every run of this deployment gets (an event's mapped payload overrides them).
    catchup : missed schedule slots after downtime: ``"latest"`` (one run), ``"all"``, ``"none"``.
    max_concurrent : runs of this deployment at once; further firings ``on_busy="queue"`` or ``"skip"``.
    branch, production : the ``@project`` branch the deployment's runs use (``--branch`` / ``--production``;
        default the deployer's ``user.<name>`` branch). The default name is then the project flow name
        (``recs.test.x.TrainFlow``), events named with ``namespaced_event_name`` are the branch's, and
        ``@trigger_on_finish`` follows only upstream runs of the same project branch.
    executor : how its runs' tasks run (``inprocess``, ``fork``, ``forkserver``, ``spawn``, ``ray``), as
        ``--executor`` of ``reelflow run`` (default: the scheduler's ``$REELFLOW_EXECUTOR``, else the fork server).
    with_specs : ``--with`` values every run gets: step decorators (``retry:times=2``) or the Ray executor
        with its options (``ray:address=HOST:PORT``).
    """
    from ..cli import load_flow_file

    if catchup not in CATCHUP:
        raise ParameterError(f"deploy: catchup={catchup!r}; choose one of {', '.join(CATCHUP)}")
    if on_busy not in ON_BUSY:
        raise ParameterError(f"deploy: on_busy={on_busy!r}; choose one of {', '.join(ON_BUSY)}")
    if not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ParameterError(f"deploy: max_concurrent={max_concurrent!r} must be an integer >= 1")
    executor, specs = _check_run_options(executor, with_specs)
    flow_cls: Any = load_flow_file(str(flow_file))
    flow_cls.graph()
    trig = flow_triggers(flow_cls)
    store = _store()
    info = resolve_project(flow_cls, branch=branch, production=production, user=store.config.user)
    trig_json = trig.to_json()
    trig_json["events"] = [{**ev, "name": resolve_event_name(ev["name"], info)} for ev in trig.events]
    if info is not None:
        trig_json["project"] = info.to_json()
    if flow_cls._flow_configs() or config_files or config_texts:
        from ..flows._config import config_values

        values = config_values(flow_cls, config_files, config_texts, user=store.config.user)
        try:
            json.dumps(values)
        except (TypeError, ValueError):
            raise ParameterError("deploy: the flow's configs must be JSON values to be fixed at deploy time; "
                                 "make the config parser return plain dicts, lists, strings and numbers") from None
        trig_json["configs"] = values
    if trig.cron:
        _require_croniter()
        check_cron(trig.cron)
        check_timezone(trig.timezone)
    name = name or (info.project_flow_name if info is not None else flow_cls.__name__)
    if not name or len(name) > 200 or "/" in name or name.strip() != name:
        raise ParameterError(f"deploy: --name {name!r}: a deployment name is 1-200 characters without '/'")
    flow_params = flow_cls.parameters()
    fixed = _parse_params(params, flow_params)
    for ev in trig.events:
        for p in ev["parameters"]:
            if p not in {fp.name for fp in flow_params.values()}:
                raise FlowDefinitionError(f"@trigger event {ev['name']!r} maps payload field "
                                          f"{ev['parameters'][p]!r} to {p!r}, which is not a parameter of the flow")
    path = Path(str(flow_file).split(":")[0] if not Path(str(flow_file)).exists() else flow_file).absolute()
    store.preflight()
    code: dict[str, str] = {}
    for f in sorted(path.parent.glob("*.py")):
        if f.is_file() and (f == path or f.stat().st_size <= MAX_SNAPSHOT_FILE):
            code[f.name] = store.save(f.read_bytes()).key
    sch = _tables(store)
    at = time.time() if now is None else now
    user = store.config.user
    known = _known_event_names(store, sch)
    for ev in trig_json["events"]:
        if ev["name"] not in known:
            warnings.warn(f"deployment {name!r}: no event named {ev['name']!r} has been published yet; check the "
                          f"spelling (known events: {', '.join(sorted(known)[:10]) or 'none'})", stacklevel=2)
    with store.metadata.write(lock=f"deployment:{name}") as conn:
        top = conn.execute(select(func.max(sch.versions.c.version)).where(sch.versions.c.name == name)).scalar()
        version = int(top or 0) + 1
        conn.execute(insert(sch.versions).values(
            name=name, version=version, flow_name=flow_cls.__name__, entry=path.name, code=json.dumps(code),
            params=json.dumps(fixed), param_types=json.dumps({p.name: p.type_name() for p in flow_params.values()}),
            triggers=json.dumps(trig_json), catchup=catchup, max_concurrent=max_concurrent, on_busy=on_busy,
            source=str(path), created_at=at, user=user,
        ))
        if executor or specs:
            conn.execute(insert(sch.run_options).values(name=name, version=version, executor=executor,
                                                        with_specs=json.dumps(specs)))
        row = conn.execute(select(sch.deployments).where(sch.deployments.c.name == name)).mappings().first()
        nxt = next_slot(trig.cron, trig.timezone, at) if trig.cron else None
        if row is None:
            ev_top = conn.execute(select(func.max(sch.events.c.id))).scalar() or 0
            conn.execute(insert(sch.deployments).values(
                name=name, version=version, flow_name=flow_cls.__name__, paused=0, next_slot=nxt, last_slot=at,
                event_cursor=int(ev_top), run_cursor=at, created_at=at, updated_at=at, user=user))
        else:
            same_cron = json.loads(_version_row(conn, sch, name, int(row["version"]))["triggers"]).get("cron")
            keep = row["next_slot"] if same_cron == trig.cron and trig.cron else nxt
            conn.execute(update(sch.deployments).where(sch.deployments.c.name == name).values(
                version=version, flow_name=flow_cls.__name__, next_slot=keep, updated_at=at))
    return get_deployment(name)


def _check_run_options(executor: str | None, with_specs: Sequence[str]) -> tuple[str | None, list[str]]:
    """``executor`` and the ``--with`` values checked as ``reelflow run`` would check them (ParameterError)."""
    from ..errors import ReelflowError
    from ..flows._decorators import parse_with_spec
    from ..runtime._cli import _ray_options
    from ..runtime._executors import EXECUTORS

    if executor is not None:
        executor = executor.strip().lower()
        if executor not in EXECUTORS:
            raise ParameterError(f"deploy: --executor {executor!r} is not an executor; choose one of "
                                 f"{', '.join(EXECUTORS)}")
    specs: list[str] = []
    for spec in with_specs:
        kind, _, rest = spec.partition(":")
        if kind.strip() == "ray":
            _ray_options(spec, rest)
            if executor not in (None, "ray"):
                raise ParameterError(f"deploy: --with {spec} and --executor {executor} disagree; choose one executor")
        else:
            try:
                parse_with_spec(spec)
            except ReelflowError as exc:
                raise ParameterError(f"deploy: --with {spec!r}: {exc}") from None
        specs.append(spec)
    return executor, specs


def with_run_options(conn: Any, sch: Any, dep: Deployment) -> Deployment:
    """``dep`` with the executor and ``--with`` values recorded for its version."""
    row = conn.execute(select(sch.run_options).where(sch.run_options.c.name == dep.name,
                                                     sch.run_options.c.version == dep.version)).mappings().first()
    if row is None:
        return dep
    return replace(dep, executor=row["executor"], with_specs=tuple(json.loads(row["with_specs"] or "[]")))


def _known_event_names(store: Any, sch: Any) -> set[str]:
    with store.metadata.read() as conn:
        return {r[0] for r in conn.execute(select(sch.events.c.name).distinct())}


def _version_row(conn: Any, sch: Any, name: str, version: int) -> Any:
    return conn.execute(select(sch.versions).where(sch.versions.c.name == name,
                                                   sch.versions.c.version == version)).mappings().one()


def _deployment(d: Any, v: Any) -> Deployment:
    return Deployment(
        name=d["name"], version=int(d["version"]), flow_name=d["flow_name"], paused=bool(d["paused"]),
        entry=v["entry"], code=json.loads(v["code"]), params=json.loads(v["params"]),
        param_types=json.loads(v["param_types"]), triggers=json.loads(v["triggers"]), catchup=v["catchup"],
        max_concurrent=int(v["max_concurrent"]), on_busy=v["on_busy"], source=v["source"],
        next_slot=d["next_slot"], created_at=float(v["created_at"]), user=v["user"],
    )


def get_deployment(name: str, *, store: Any = None) -> Deployment:
    """The deployment ``name`` (its current version); NotFoundError naming the known ones.

    ``store``: the store to read (default: the environment's), e.g. the one a UI serves.
    """
    store = store or _store()
    sch = _tables(store)
    with store.metadata.read() as conn:
        d = conn.execute(select(sch.deployments).where(sch.deployments.c.name == name)).mappings().first()
        if d is None:
            names = [r[0] for r in conn.execute(select(sch.deployments.c.name).order_by(sch.deployments.c.name))]
            raise NotFoundError(f"no deployment named {name!r}; deployments: {', '.join(names) or 'none'} "
                                "(create one with `reelflow deploy FLOW_FILE`)")
        return with_run_options(conn, sch, _deployment(d, _version_row(conn, sch, name, int(d["version"]))))


def list_deployments(*, event: str | None = None) -> list[Deployment]:
    """Every deployment, by name (only those triggered by ``event`` when given)."""
    store = _store()
    sch = _tables(store)
    j = sch.deployments.join(sch.versions, (sch.versions.c.name == sch.deployments.c.name)
                             & (sch.versions.c.version == sch.deployments.c.version))
    cols = [sch.deployments.c.name, sch.deployments.c.version, sch.deployments.c.flow_name, sch.deployments.c.paused,
            sch.deployments.c.next_slot, *[c for c in sch.versions.c if c.name not in
                                           ("id", "name", "version", "flow_name")]]
    q = select(*cols).select_from(j).order_by(sch.deployments.c.name)
    if event is not None:  # a cheap prefilter in SQL; the exact match below
        q = q.where(sch.versions.c.triggers.contains(json.dumps(event), autoescape=True))
    with store.metadata.read() as conn:
        rows = conn.execute(q).mappings().all()
        opts = {(r["name"], r["version"]): r for r in conn.execute(select(sch.run_options)).mappings()}
    found = []
    for r in rows:
        o = opts.get((r["name"], r["version"]))
        d = _deployment(r, r)
        found.append(d if o is None else replace(d, executor=o["executor"],
                                                 with_specs=tuple(json.loads(o["with_specs"] or "[]"))))
    if event is not None:
        found = [d for d in found if any(e["name"] == event for e in d.triggers.get("events", []))]
    return found


def _set_paused(name: str, paused: bool, store: Any = None) -> Deployment:
    store = store or _store()
    get_deployment(name, store=store)
    sch = _tables(store)
    with store.metadata.write(lock=f"deployment:{name}", flush_blobs=False) as conn:
        conn.execute(update(sch.deployments).where(sch.deployments.c.name == name)
                     .values(paused=int(paused), updated_at=time.time()))
    return get_deployment(name, store=store)


def pause(name: str, *, store: Any = None) -> Deployment:
    """Stop starting runs of ``name`` (slots, events and finished runs meanwhile are skipped and recorded)."""
    return _set_paused(name, True, store)


def resume(name: str, *, store: Any = None) -> Deployment:
    """Start runs of ``name`` again from now on."""
    return _set_paused(name, False, store)


def delete_deployment(name: str) -> None:
    """Remove deployment ``name``, its versions and firings (runs it started stay)."""
    get_deployment(name)
    store = _store()
    sch = _tables(store)
    with store.metadata.write(lock=f"deployment:{name}", flush_blobs=False) as conn:
        for t, col in ((sch.firings, sch.firings.c.deployment), (sch.run_options, sch.run_options.c.name),
                       (sch.versions, sch.versions.c.name),
                       (sch.deployments, sch.deployments.c.name)):
            conn.execute(delete(t).where(col == name))


def deployment_history(name: str, *, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """``{"versions": [...], "firings": [...]}`` of ``name``: every deploy, and its newest firings."""
    get_deployment(name)
    store = _store()
    sch = _tables(store)
    with store.metadata.read() as conn:
        versions = [dict(r) for r in conn.execute(select(sch.versions).where(sch.versions.c.name == name)
                                                   .order_by(sch.versions.c.version)).mappings()]
        firings = [dict(r) for r in conn.execute(select(sch.firings).where(sch.firings.c.deployment == name)
                                                  .order_by(sch.firings.c.id.desc()).limit(limit)).mappings()]
    return {"versions": versions, "firings": firings[::-1]}


def materialize(dep: Deployment, store: Any) -> Path:
    """The deployment's snapshot as a folder (cached by content; written atomically)."""
    digest = hashlib.sha256(json.dumps(sorted(dep.code.items())).encode()).hexdigest()[:24]
    root = Path(tempfile.gettempdir()) / f"reelflow-snapshots-{os.getuid()}"
    target = root / digest
    if (target / dep.entry).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    for rel, key in dep.code.items():
        (tmp / rel).write_bytes(store.load(key, what=f"code snapshot file {rel} of deployment {dep.name}"))
    try:
        os.rename(tmp, target)
    except OSError:  # another process materialised it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
