"""The scheduler: fires due schedules, consumes events and finished runs, starts runs from snapshots.

Every decision is a row of ``firings``, written in one transaction per deployment
that holds the deployment's lock (SQLite's ``BEGIN IMMEDIATE``; a PostgreSQL
advisory lock), with ``(deployment, key)`` unique. So a schedule slot, event or
finished run becomes at most one firing, and a queued firing is moved to
``running`` by exactly one scheduler however many run against one database and
however often they restart. A running firing carries a lease its scheduler
renews; when the lease lapses (the scheduler died) the firing is closed with
that reason instead of blocking ``max_concurrent`` forever.

Time: schedule slots follow ``now`` (injectable: ``--now`` in tests and
cron-driven setups); the cursors of what was consumed follow the wall clock and
trail it by :data:`LAG` seconds so a row committed late is still seen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from ..errors import ReelflowError
from ..flows._config import CONFIG_ENV
from ..flows._project import PROJECT_ENV
from ..flows._triggers import TRIGGER_ENV
from ._deploy import _deployment, _version_row, materialize, next_slot, with_run_options
from ._runserver import LOST, RunServer, RunServerError, run_server_wanted

__all__ = ["Scheduler", "LAG"]

LAG = 5.0  # seconds a consumed-cursor trails the wall clock
MAX_SLOTS = 10_000  # missed slots examined per deployment and tick
NONE_GRACE = 60.0  # catchup="none": a slot at most this old still counts as on time


@dataclass
class _Child:
    firing_id: int
    deployment: str
    proc: Any  # a subprocess.Popen, or a ForkedRun of the run server (pid, poll, wait, kill)
    id_file: Path
    log: Path
    run_id: str | None = None
    started: float = field(default_factory=time.time)


def _convert(type_name: str, value: Any) -> str:
    """A payload value as the command-line text of a parameter of ``type_name``; ValueError if it cannot be."""
    if type_name == "JSON":
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, (dict, list)):
        raise ValueError(f"a {type(value).__name__} is not a {type_name}")
    if type_name == "bool":
        s = str(value).strip().lower()
        if s not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{value!r} is not a bool")
        return s
    if type_name == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not an int")
        return str(int(value))
    if type_name == "float":
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a float")
        return repr(float(value))
    return value if isinstance(value, str) else json.dumps(value)


class Scheduler:
    """Start runs of deployments when their triggers fire.

    Parameters
    ----------
    poll_interval : seconds between looks at the database (the latency of events and finished runs).
    drain_timeout : on SIGTERM, seconds to let running runs finish before they are interrupted.
    max_runs : runs this scheduler has going at once over all deployments (default: 2 x CPUs);
        further firings wait queued.
    echo : where one line per decision goes (default: stdout).
    """

    def __init__(self, *, poll_interval: float = 0.5, drain_timeout: float = 300.0, max_runs: int | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        from ..store import get_store
        from ..store._operate_db import operate_tables

        self.store = get_store()
        self.store.preflight()
        self.md = self.store.metadata
        self.t = operate_tables(self.md)
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        # runs this scheduler has going at once, over all deployments (1,000 hourly deployments
        # must not start 1,000 processes at the top of the hour); the rest wait queued
        self.max_runs = max_runs or 2 * (os.cpu_count() or 1)
        self.lease = max(60.0, 20 * poll_interval)
        self.echo = echo or (lambda s: print(s, flush=True))
        self.id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self._known: tuple[Any, ...] | None = None
        self._subs: dict[str, tuple[set[str], set[str]]] = {}  # deployment -> (event names, upstream flows)
        self._ev_mark = 0
        self._run_mark = 0.0
        self._logs = Path(tempfile.gettempdir()) / f"reelflow-scheduler-{os.getuid()}"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._server: RunServer | None = None
        self._retired: list[RunServer] = []  # servers that died; their runs are still watched through them
        self._use_server = run_server_wanted()
        self._server_failures = 0

    # -- which deployments need a look -------------------------------------------------
    def _candidates(self, conn: Any, now: float, real: float) -> set[str]:
        d, ev, fi = self.t.deployments, self.t.events, self.t.firings
        out: set[str] = set()
        known = tuple(conn.execute(select(func.count(), func.max(d.c.updated_at))).one())
        if known != self._known:
            self._known = known
            self._subs = {}
            j = d.join(self.t.versions, (self.t.versions.c.name == d.c.name) & (self.t.versions.c.version == d.c.version))
            for name, trig in conn.execute(select(d.c.name, self.t.versions.c.triggers).select_from(j)):
                t = json.loads(trig)
                self._subs[name] = ({e["name"] for e in t.get("events", [])}, set(t.get("flows", [])))
            out |= set(self._subs)
        out |= {r[0] for r in conn.execute(select(d.c.name).where(d.c.next_slot <= now))}
        names: set[str] = set()
        advancing = True
        for i, name, created in conn.execute(select(ev.c.id, ev.c.name, ev.c.created_at)
                                             .where(ev.c.id > self._ev_mark).order_by(ev.c.id)):
            names.add(name)
            advancing = advancing and created < real - LAG  # a fresh row may have older ids still uncommitted
            if advancing:
                self._ev_mark = i
        if names:
            out |= {dep for dep, (evs, _) in self._subs.items() if evs & names}
        if any(fl for _, fl in self._subs.values()):
            from ..store import _schema as s

            runs = s.runs
            flows = {r[0] for r in conn.execute(select(runs.c.flow_name).distinct().where(
                runs.c.status == "succeeded", runs.c.finished_at >= self._run_mark))}
            self._run_mark = real - LAG
            out |= {dep for dep, (_, fl) in self._subs.items() if fl & flows}
        out |= {r[0] for r in conn.execute(select(fi.c.deployment).distinct().where(fi.c.status == "queued"))}
        return out

    # -- one deployment, one transaction ------------------------------------------------
    def _process(self, name: str, now: float, real: float) -> list[tuple[int, Any, dict[str, str], str]]:
        t = self.t
        starts: list[tuple[int, Any, dict[str, str], str]] = []
        with self.md.write(lock=f"deployment:{name}", flush_blobs=False) as conn:
            d = conn.execute(select(t.deployments).where(t.deployments.c.name == name)).mappings().first()
            if d is None:
                return starts
            v = _version_row(conn, t, name, int(d["version"]))
            dep = _deployment(d, v)
            trig = dep.triggers
            new: list[tuple[str, dict[str, Any], dict[str, str], str, str | None]] = []
            changes: dict[str, Any] = {}
            if trig.get("cron") and d["next_slot"] is not None and d["next_slot"] <= now:
                new += self._slots(dep, float(d["next_slot"]), now, changes)
            evs = {e["name"]: e for e in trig.get("events", [])}
            if evs:
                new += self._events(conn, dep, evs, int(d["event_cursor"]), real, changes)
            if trig.get("flows"):
                new += self._finished_runs(conn, dep, float(d["run_cursor"]), real, changes)
            if changes:
                conn.execute(update(t.deployments).where(t.deployments.c.name == name).values(**changes))
            for key, trigger, params, status, reason in new:
                if conn.execute(select(t.firings.c.id).where(t.firings.c.deployment == name,
                                                             t.firings.c.key == key)).first() is not None:
                    continue  # already claimed (the unique constraint backs this up)
                if dep.paused and status == "queued":
                    status, reason = "skipped", "the deployment is paused"
                conn.execute(insert(t.firings).values(
                    deployment=name, version=dep.version, key=key, trigger=json.dumps(trigger),
                    params=json.dumps(params), status=status, reason=reason, created_at=real,
                    finished_at=real if status != "queued" else None))
                self.echo(f"{name}: {trigger_text(trigger)} -> {status}" + (f" ({reason})" if reason else ""))
            self._release_lost(conn, name, real)
            running = conn.execute(select(func.count()).where(t.firings.c.deployment == name,
                                                              t.firings.c.status == "running")).scalar() or 0
            queued = conn.execute(select(t.firings).where(t.firings.c.deployment == name,
                                                          t.firings.c.status == "queued")
                                  .order_by(t.firings.c.id)).mappings().all()
            for f in queued:
                if dep.paused:
                    vals = {"status": "skipped", "reason": "the deployment was paused", "finished_at": real}
                elif running < dep.max_concurrent and len(self.children) + len(starts) >= self.max_runs:
                    why = f"queued: this scheduler has {self.max_runs} runs going (--max-runs)"
                    if f["reason"] != why:
                        conn.execute(update(t.firings).where(t.firings.c.id == f["id"]).values(reason=why))
                    continue
                elif running < dep.max_concurrent:
                    vals = {"status": "running", "scheduler": self.id, "started_at": time.time(),
                            "lease_until": real + self.lease}
                    fv = dep if int(f["version"]) == dep.version else replace(_deployment(
                        d, _version_row(conn, t, name, int(f["version"]))), version=int(f["version"]))
                    fv = with_run_options(conn, t, fv)
                    starts.append((int(f["id"]), fv, json.loads(f["params"]), f["trigger"]))
                    running += 1
                elif dep.on_busy == "skip":
                    vals = {"status": "skipped", "finished_at": real,
                            "reason": f"max_concurrent={dep.max_concurrent} reached ({running} running); on_busy=skip"}
                else:
                    why = f"queued: max_concurrent={dep.max_concurrent} reached ({running} running)"
                    if f["reason"] != why:
                        conn.execute(update(t.firings).where(t.firings.c.id == f["id"]).values(reason=why))
                    continue
                conn.execute(update(t.firings).where(t.firings.c.id == f["id"], t.firings.c.status == "queued")
                             .values(**vals))
                if vals["status"] == "skipped":
                    self.echo(f"{name}: firing {f['id']} skipped ({vals['reason']})")
        return starts

    def _slots(self, dep: Any, first: float, now: float, changes: dict[str, Any]) -> list[Any]:
        cron, tz = dep.triggers["cron"], dep.triggers.get("timezone")
        slots: list[float] = []
        s = first
        while s <= now and len(slots) < MAX_SLOTS:
            slots.append(s)
            s = next_slot(cron, tz, s)
        if s <= now:
            s = next_slot(cron, tz, now)
        changes.update(next_slot=s, last_slot=slots[-1])
        missed = len(slots) - 1
        out: list[Any] = []

        def item(slot: float, status: str = "queued", reason: str | None = None) -> Any:
            return (f"schedule:{slot:.0f}", {"type": "schedule", "deployment": dep.name, "slot": slot},
                    dict(dep.params), status, reason)

        if dep.catchup == "all":
            return [item(x) for x in slots]
        if dep.catchup == "latest":
            return [item(slots[-1], reason=f"catchup=latest: {missed} earlier missed slot(s) folded into this one"
                         if missed else None)]
        late = now - slots[-1] > NONE_GRACE
        if late:
            out.append(item(slots[-1], "skipped", f"catchup=none: slot missed ({missed + 1} missed slot(s) skipped)"))
        else:
            out.append(item(slots[-1], reason=f"catchup=none: {missed} missed slot(s) skipped" if missed else None))
        return out

    def _events(self, conn: Any, dep: Any, specs: dict[str, Any], cursor: int, real: float,
                changes: dict[str, Any]) -> list[Any]:
        ev = self.t.events
        rows = conn.execute(select(ev).where(ev.c.name.in_(list(specs)), ev.c.id > cursor)
                            .order_by(ev.c.id).limit(5000)).mappings().all()
        out = []
        advance, advancing = cursor, True
        for r in rows:
            advancing = advancing and r["created_at"] < real - LAG
            if advancing:
                advance = int(r["id"])
            payload = json.loads(r["payload"])
            trigger = {"type": "event", "deployment": dep.name,
                       "event": {"name": r["name"], "payload": payload, "timestamp": r["created_at"], "id": r["id"]}}
            params = dict(dep.params)
            status, reason = "queued", None
            for pname, fname in specs[r["name"]]["parameters"].items():
                if fname not in payload:
                    status, reason = "failed", (f"event {r['name']} #{r['id']}: the payload has no field {fname!r} "
                                                f"for parameter {pname!r}; publish it with that field")
                    break
                try:
                    params[pname] = _convert(dep.param_types.get(pname, "str"), payload[fname])
                except ValueError as exc:
                    status, reason = "failed", (f"event {r['name']} #{r['id']}: payload field {fname!r} cannot be "
                                                f"parameter {pname!r} ({dep.param_types.get(pname)}): {exc}")
                    break
            out.append((f"event:{r['id']}", trigger, params, status, reason))
        if advance > cursor:
            changes["event_cursor"] = advance
        return out

    def _finished_runs(self, conn: Any, dep: Any, cursor: float, real: float, changes: dict[str, Any]) -> list[Any]:
        from ..store import _schema as s

        r = s.runs
        q = select(r.c.id, r.c.flow_name, r.c.finished_at).where(
            r.c.flow_name.in_(dep.triggers["flows"]), r.c.status == "succeeded", r.c.finished_at >= cursor)
        proj = dep.triggers.get("project")
        if proj:  # a @project flow follows only upstream runs of its own project branch (Metaflow's rule)
            from ..store._metadata import _has_tag

            q = q.where(_has_tag(f"project:{proj['project_name']}"), _has_tag(f"project_branch:{proj['branch_name']}"))
        rows = conn.execute(q.order_by(r.c.finished_at)).all()
        changes["run_cursor"] = max(cursor, real - LAG)
        return [(f"run:{rid}", {"type": "run", "deployment": dep.name, "run": f"{flow}/{rid}"}, dict(dep.params),
                 "queued", None) for rid, flow, _ in rows]

    def _release_lost(self, conn: Any, name: str, real: float) -> None:
        fi = self.t.firings
        lost = conn.execute(select(fi.c.id, fi.c.run_id, fi.c.scheduler).where(
            fi.c.deployment == name, fi.c.status == "running", fi.c.lease_until < real,
            fi.c.scheduler != self.id)).all()
        for fid, run_id, owner in lost:
            conn.execute(update(fi).where(fi.c.id == fid, fi.c.status == "running").values(
                status="failed", finished_at=real,
                reason=f"scheduler {owner} stopped renewing its lease (it crashed or was killed)"
                       + (f"; run {run_id} was left as it was" if run_id else "")))

    # -- children -----------------------------------------------------------------------
    def _start(self, fid: int, dep: Any, params: dict[str, str], trigger: str) -> None:
        idf = self._logs / f"firing-{fid}.runid"
        log = self._logs / f"firing-{fid}.log"
        try:
            folder = materialize(dep, self.store)
            args = ["run", f"{folder / dep.entry}:{dep.flow_name}", "--run-id-file", str(idf), *dep.run_args()]
            for k, v in params.items():
                args += [f"--{k}", v]
            env = {**os.environ, "REELFLOW_HOME": str(self.store.config.home), TRIGGER_ENV: trigger,
                   "REELFLOW_DEPLOYMENT": dep.name}
            env.pop(PROJECT_ENV, None)
            if dep.triggers.get("project"):  # the run goes on the branch the deployment was made for
                env[PROJECT_ENV] = json.dumps(dep.triggers["project"])
            env.pop(CONFIG_ENV, None)
            if "configs" in dep.triggers:  # the configs fixed when the version was deployed
                env[CONFIG_ENV] = json.dumps(dep.triggers["configs"])
            proc = self._spawn(args, folder, env, log)
        except Exception as exc:  # a snapshot that cannot be read or a process that cannot start
            self._finish(fid, "failed", f"could not start the run: {type(exc).__name__}: {exc}", None)
            return
        self.children[fid] = _Child(fid, dep.name, proc, idf, log)
        self.echo(f"{dep.name}: firing {fid} started (pid {proc.pid}, version {dep.version})")

    def open_run_server(self) -> None:
        """Start the warm run server now (it imports while the scheduler works); see ``_runserver.py``."""
        if self._use_server and self._server is None:
            try:
                self._server = RunServer(self._logs / f"runserver-{os.getpid()}.log")
            except OSError as exc:
                self._use_server = False
                self.echo(f"warning: cannot start the run server ({exc}); runs start as fresh processes")

    def _spawn(self, args: list[str], folder: Path, env: dict[str, str], log: Path) -> Any:
        """The run's process: forked from the warm run server, else a fresh interpreter."""
        if self._server is not None and not self._server.alive:  # it died while idle: start a new one
            self._retired.append(self._server)
            self._server = None
        self.open_run_server()
        if self._server is not None:
            try:
                return self._server.spawn(args, cwd=folder, env=env, log=log)
            except RunServerError as exc:
                self._retired.append(self._server)
                self._server = None  # the next run starts a new one ...
                self._server_failures += 1
                if self._server_failures >= 3:  # ... unless it keeps failing
                    self._use_server = False
                self.echo(f"warning: {exc}; this run starts as a fresh process"
                          + ("" if self._use_server else ", and so will the next ones"))
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "reelflow.cli", *args], cwd=folder, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def close(self) -> None:
        """Stop the run server (runs still going keep going)."""
        servers = [s for s in (self._server, *self._retired) if s is not None]
        self._server, self._retired = None, []
        for server in servers:
            server.close()

    def _finish(self, fid: int, status: str, reason: str | None, run_id: str | None) -> None:
        fi = self.t.firings
        with self.md.write(flush_blobs=False) as conn:
            conn.execute(update(fi).where(fi.c.id == fid).values(  # a success keeps the decision's reason
                status=status, finished_at=time.time(), **({"reason": reason} if reason else {}),
                **({"run_id": run_id} if run_id else {})))

    def _reap(self) -> set[str]:
        done: set[str] = set()
        for fid, ch in list(self.children.items()):
            if ch.run_id is None and ch.id_file.exists():
                ch.run_id = ch.id_file.read_text().strip() or None
                if ch.run_id:
                    with self.md.write(flush_blobs=False) as conn:
                        conn.execute(update(self.t.firings).where(self.t.firings.c.id == fid)
                                     .values(run_id=ch.run_id))
            rc = ch.proc.poll()
            if rc is None:
                continue
            del self.children[fid]
            if ch.run_id is None and ch.id_file.exists():
                ch.run_id = ch.id_file.read_text().strip() or None
            if rc == LOST:  # its run server died before reporting; the run's own row says how it ended
                rc = 0 if ch.run_id and self._run_status(ch.run_id) == "succeeded" else 1
            ok = rc == 0 and ch.run_id is not None
            reason = None if ok else _error_line(ch.log, rc) if rc else "the process exited without starting a run"
            self._finish(fid, "succeeded" if ok else "failed", reason, ch.run_id)
            ch.id_file.unlink(missing_ok=True)
            self.echo(f"{ch.deployment}: firing {fid} " + (f"run {ch.run_id} " if ch.run_id else "")
                      + ("succeeded" if ok else f"failed: {reason}"))
            done.add(ch.deployment)
        if self.children:
            with self.md.write(flush_blobs=False) as conn:
                conn.execute(update(self.t.firings).where(self.t.firings.c.id.in_(list(self.children)))
                             .values(lease_until=time.time() + self.lease))
        return done

    def _run_status(self, run_id: str) -> str | None:
        from ..store import _schema as s

        with self.md.read() as conn:
            return conn.execute(select(s.runs.c.status).where(s.runs.c.id == int(run_id))).scalar()

    # -- driving ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> int:
        """Look once: reap finished runs, decide firings, start runs; return how many started."""
        real = time.time()
        now = real if now is None else now
        again = self._reap()
        with self.md.read() as conn:
            cands = self._candidates(conn, now, real) | again
        started = 0
        for name in sorted(cands):
            if self.stopping:
                break
            for fid, dep, params, trigger in self._process(name, now, real):
                self._start(fid, dep, params, trigger)
                started += 1
        return started

    def run_once(self, now: float | None = None, *, rounds: int = 10_000) -> None:
        """Process what is due at ``now``, wait for the runs started, and again for what they trigger.

        SIGTERM/SIGINT meanwhile: start nothing more, drain the running runs (see :meth:`drain`)."""
        with self._signals():
            try:
                for _ in range(rounds):
                    started = self.tick(now)
                    if self.stopping or (not started and not self.children):
                        break
                    while self.children and not self.stopping:
                        time.sleep(0.1)
                        self._reap()
                self.drain(quiet=not self.stopping)
            finally:
                self.close()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def stop(signum: int, _frame: Any) -> None:
            self.stopping = True

        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def run_forever(self) -> None:
        """Tick every ``poll_interval`` until SIGTERM/SIGINT; then drain the running runs and return."""
        with self._signals():
            self.echo(f"scheduler {self.id} started ({self.store.describe()}); SIGTERM stops it")
            self.open_run_server()
            try:
                self._loop()
                self.drain()
            finally:
                self.close()

    def _loop(self) -> None:
        while not self.stopping:
            try:
                self.tick()
            except Exception as exc:  # a database hiccup must not stop the platform; the next tick retries
                from ..store._engine import db_error

                err = exc if isinstance(exc, ReelflowError) else db_error(exc, "tick")
                self.echo(f"error: {err} (retrying in {self.poll_interval:g}s)")
            deadline = time.monotonic() + self.poll_interval
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, self.poll_interval))

    def drain(self, *, quiet: bool = False) -> None:
        """Wait up to ``drain_timeout`` for running runs; interrupt the rest and record why."""
        if self.children:
            self.echo(f"stopping: waiting up to {self.drain_timeout:g}s for {len(self.children)} running run(s)")
        end = time.monotonic() + self.drain_timeout
        while self.children and time.monotonic() < end:
            self._reap()
            time.sleep(0.1)
        for ch in list(self.children.values()):
            try:
                os.killpg(ch.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 30
        while self.children and time.monotonic() < end:
            time.sleep(0.1)
            for fid, ch in list(self.children.items()):
                if ch.proc.poll() is not None:
                    if ch.run_id is None and ch.id_file.exists():
                        ch.run_id = ch.id_file.read_text().strip() or None
                    self._finish(fid, "failed", f"interrupted: the scheduler stopped and its drain timeout of "
                                                f"{self.drain_timeout:g}s ran out", ch.run_id)
                    ch.id_file.unlink(missing_ok=True)
                    del self.children[fid]
        for fid, ch in list(self.children.items()):
            ch.proc.kill()
            ch.proc.wait()
            self._finish(fid, "failed", "killed: the run did not stop within 30 s of SIGTERM", ch.run_id)
        self.children.clear()
        if not quiet:
            self.echo("scheduler stopped")


def _error_line(log: Path, rc: int) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errs = [ln for ln in lines if ln.lower().startswith("error")]
    pick = errs[-1] if errs else (lines[-1] if lines else "")
    return f"exit {rc}: {pick[:500]}" if pick else f"exit {rc}"


def trigger_text(trigger: dict[str, Any]) -> str:
    """One line for a firing's trigger JSON."""
    from ..flows._triggers import Trigger

    return Trigger.from_json(trigger).describe()
