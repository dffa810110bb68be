"""What the server served and the feedback on it, as Parquet partitions in the store.

Two tables under ``<REELFLOW_HOME>/feedback/<model>/`` or, when the blobs live in a
team's object store (``REELFLOW_STORE_URL=s3://bucket/prefix``, any fsspec URL),
under ``<REELFLOW_STORE_URL>/feedback/<model>/``, so every server of the team and
every training run read the same tables::

    served/date=2026-01-01/hour=13/part-<time>-<pid>-<seq>.parquet
        request_id, user_id, items (list), scores (list), model, version, at
    feedback/date=2026-01-01/hour=13/part-....parquet
        request_id, user_id, item_id, event, value, at

The request path only appends a tuple to an in-memory buffer (the response body
bytes are parsed later, off the request path). A background thread turns the buffers
into Arrow tables every ``flush_interval`` seconds and writes each hour's rows as a new
immutable Parquet part file (written to a temporary name and renamed in a folder; one
PUT, which an object store makes visible whole, in an object store), so a reader never
sees half a file and parts are never rewritten (the table's versions are its parts).
That thread runs only when the core is otherwise idle (Linux ``SCHED_IDLE``): a request
that arrives takes the core from it at once, so the few ms a flush needs fill the gaps
between requests instead of delaying them (at equal priority, on a server with one core,
the requests served during a flush were the slowest 1%). On a saturated server, which
has no idle time, a watchdog at the server's priority flushes after
``_FLUSHES_BEHIND`` intervals without one.
Shutdown (SIGTERM, Ctrl-C) flushes what is left. **A kill -9 loses at most the last
flush interval** (default 1 s) of rows, or ``_FLUSHES_BEHIND + 1`` intervals on a
saturated server; nothing already flushed is lost or damaged. A part that cannot be
written (a full disk) is tried again at the next flush (up to ``_MAX_HELD_ROWS`` rows
wait; then the oldest are dropped, and logged).

Request ids carry a MAC tag (keyed BLAKE2b) under a secret kept beside the tables (shared by
every worker and restart of the server, and in an object store by every server
of the team: the first one creates it with a conditional write), so ``POST /v1/feedback`` answers 422
for an id this server never issued without any lookup. Ids are made ahead by the
background thread; a request takes one from the pool (a ``deque.pop``). When the hour (partition)
rolls over, the flusher publishes the event ``feedback.partition_closed`` with
the partition, so a ``@trigger(event="feedback.partition_closed")`` deployment
retrains on data arrival.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sys
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeedbackLog", "feedback_root", "feedback_location", "PARTITION_CLOSED"]

log = logging.getLogger("reelflow.serving")
PARTITION_CLOSED = "feedback.partition_closed"
_TAG = 12  # hex characters of the tag
_POOL_MIN, _POOL_MAX = 1024, 1 << 18  # request ids made ahead, at least and at most
_TICK = 0.05  # seconds between the flusher's small chores (a slice of request ids)
_SLICE = 256  # rows converted, or ids made, at a time: a fraction of a ms of GIL each
_FLUSHES_BEHIND = 4  # flush intervals without a flush before the watchdog flushes at the server's priority
_MAX_HELD_ROWS = 1_000_000  # rows kept through failing writes; then the oldest parts are dropped (and logged)


def feedback_root(model: str, home: Path | None = None) -> Path:
    """The local folder of ``model``'s feedback tables (``<REELFLOW_HOME>/feedback/<model>``)."""
    if home is None:
        from ..config import load_config

        home = load_config().home
    return Path(home) / "feedback" / model


def feedback_location(model: str, home: Path | None = None) -> tuple[Any, str]:
    """Where ``model``'s feedback tables live: ``(None, local folder)``, or ``(fsspec filesystem, path)``
    under the blob store when ``REELFLOW_STORE_URL`` is an object store URL (``home`` forces the folder)."""
    from ..config import load_config

    cfg = load_config(home)
    url = cfg.store_url
    if home is not None or "://" not in url or url.startswith("file://"):
        return None, str(feedback_root(model, cfg.home))
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(url.rstrip("/"), **dict(cfg.store_options))
    except (ImportError, ValueError, TypeError) as exc:
        from ..errors import StoreError

        raise StoreError(f"REELFLOW_STORE_URL {url!r} cannot be opened for the feedback tables: "
                         f"{type(exc).__name__}: {exc}; install its fsspec driver (e.g. s3fs for s3://)") from None
    return fs, f"{base.rstrip('/')}/feedback/{model}"


def _secret(fs: Any, root: str) -> bytes:
    if fs is not None:
        return _remote_secret(fs, f"{root}/.request-id-secret")
    Path(root).mkdir(parents=True, exist_ok=True)
    path = Path(root) / ".request-id-secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it
            data = path.read_bytes()
            if len(data) == 32:
                return data
            time.sleep(0.01)
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


def _remote_secret(fs: Any, path: str) -> bytes:
    """The team's secret in the object store; the first server writes it (If-None-Match), the others read it."""
    for _ in range(50):
        try:
            data = bytes(fs.cat_file(path))
            if len(data) == 32:
                return data
        except FileNotFoundError:
            try:
                with fs.open(path, "xb") as f:  # a conditional PUT: exactly one server's secret wins
                    f.write(secrets.token_bytes(32))
            except FileExistsError:
                pass
            except (ValueError, NotImplementedError):  # a filesystem without exclusive create
                if not fs.exists(path):
                    fs.pipe_file(path, secrets.token_bytes(32))
            continue
        time.sleep(0.01)
    raise OSError(f"cannot read the feedback secret {path} (32 bytes expected)")


def _partition(at: float) -> str:
    t = time.gmtime(at)
    return f"date={t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}/hour={t.tm_hour:02d}"


class FeedbackLog:
    """Buffered, background-flushed Parquet logging of served requests and feedback."""

    def __init__(self, model: str, *, root: Path | None = None, flush_interval: float = 1.0,
                 publish_events: bool = True) -> None:
        self.model = model
        self.fs: Any
        self.fs, where = (None, str(root)) if root is not None else feedback_location(model)
        self.root: Any = Path(where) if self.fs is None else where
        self.url = str(self.root) if self.fs is None else self.fs.unstrip_protocol(where)
        self.flush_interval = flush_interval
        self.publish_events = publish_events
        self._key = _secret(self.fs, str(self.root))
        self._served: deque[tuple[str, bytes, float]] = deque()  # single-user answers
        self._served_batch: deque[tuple[str, bytes, float]] = deque()
        self._served_items: deque[tuple[str, str, Any, Any, str, int, float]] = deque()
        self._feedback: deque[tuple[str, str, str, str, float, float]] = deque()
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._build_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._watchdog: threading.Thread | None = None
        self._last_flush = time.monotonic()
        self._failed: list[tuple[str, str, Any]] = []  # parts a write refused, tried again next flush
        self._open: set[str] = set()  # partitions this server wrote to that have not closed yet
        self.rows_written = 0
        self._ids: deque[str] = deque()  # request ids made ahead (see _refill_ids)
        self._ids_used = 0  # ids requests took since the pool was last sized
        self._ids_target = _POOL_MIN
        self._refill_ids()
        os.register_at_fork(after_in_child=functools.partial(_forget_ids, weakref.ref(self._ids)))

    # -- request path ---------------------------------------------------------------------
    def new_request_id(self) -> str:
        """A fresh request id: 16 random hex characters and their tag. Taken from the pool the
        background thread keeps filled (made on the request path only when a burst empties it): in a
        server under load, making one inline cost ~10 us of a ~250 us request (OpenSSL's HMAC
        set-up, cold caches), against ~0.1 us for the pop."""
        self._ids_used += 1
        try:
            return self._ids.pop()
        except IndexError:
            return self._make_ids(1)[0]

    def _tag(self, rnd: bytes) -> bytes:
        return hashlib.blake2b(rnd, key=self._key, digest_size=_TAG // 2).hexdigest().encode()

    def _make_ids(self, n: int) -> list[str]:
        raw = os.urandom(8 * n).hex().encode()
        return [(raw[i:i + 16] + self._tag(raw[i:i + 16])).decode() for i in range(0, 16 * n, 16)]

    def _refill_ids(self, most: int | None = None) -> None:
        """Top the pool up to its target (adding at most ``most`` ids)."""
        n = self._ids_target - len(self._ids)
        if most is not None:
            n = min(n, most)
        if n > 0:
            self._ids.extendleft(self._make_ids(n))

    def _size_ids(self) -> None:
        """Aim the pool at twice what requests took since it was last sized (once per flush interval)."""
        self._ids_target = min(_POOL_MAX, max(_POOL_MIN, 2 * self._ids_used))
        self._ids_used = 0

    def known_request_id(self, rid: Any) -> bool:
        """Whether ``rid`` is an id this server issued (any worker, any restart; ids issued by an
        earlier version of the server, tagged with HMAC-SHA256, too)."""
        if not isinstance(rid, str) or len(rid) != 16 + _TAG:
            return False
        rnd, tag = rid[:16].encode(), rid[16:].encode()
        older = hmac.new(self._key, rnd, hashlib.sha256).hexdigest()[:_TAG].encode()
        return hmac.compare_digest(tag, self._tag(rnd)) | hmac.compare_digest(tag, older)

    def served(self, rid: str, body: bytes, batch: bool = False) -> None:
        """Record a response (parsed at flush time, off the request path); ``batch``: a
        ``user_ids`` answer (``"results": [...]``), else a single user's."""
        (self._served_batch if batch else self._served).append((rid, body, time.time()))

    def served_items(self, rid: str, user_id: str, items: Any, scores: Any, model: str, version: int) -> None:
        """Record a single user's answer from its arrays (item ids and scores, best first, as
        ``recommend`` returned them; a ``-inf`` tail, i.e. no eligible item, is left out): the
        flush then builds the table with no per-row parsing."""
        if len(scores) and math.isinf(scores[-1]):  # same cut as the response's item list
            n = int(np.argmax(np.isinf(scores)))
            items, scores = items[:n], scores[:n]
        self._served_items.append((rid, user_id, items, scores, model, version, time.time()))

    def feedback(self, rid: str, user_id: Any, item_id: Any, event: str, value: float) -> None:
        self._feedback.append((rid, str(user_id), str(item_id), event, float(value), time.time()))

    # -- background -----------------------------------------------------------------------
    def start(self) -> None:
        # What a flush uses, imported now: a server process freezes its long-lived objects out of the
        # GC's scans after start-up (``create_app``), and modules first imported by the flusher later
        # would stay in every full collection, a pause of tens of ms in requests.
        import pyarrow.compute  # noqa: F401
        import pyarrow.json  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        self._remove_stale_parts()
        if self._thread is None:
            self._last_flush = time.monotonic()
            self._thread = threading.Thread(target=self._loop, name="reelflow-feedback-flush", daemon=True)
            self._thread.start()
            self._watchdog = threading.Thread(target=self._watch, name="reelflow-feedback-watch", daemon=True)
            self._watchdog.start()

    def _remove_stale_parts(self) -> None:
        """Delete part files a killed server left half-written (``.tmp-part-*``, untouched for 10 minutes
        and ten flush intervals: a live server renames a part as soon as it is written)."""
        if self.fs is not None:  # an object store holds only whole parts (one PUT each)
            return
        cutoff = time.time() - max(600.0, 10 * self.flush_interval)
        for tmp in Path(self.root).glob("*/date=*/hour=*/.tmp-part-*"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def stop(self) -> None:
        """Stop the threads and write what is buffered."""
        self._stop.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout=60)
        self._thread = self._watchdog = None
        self.flush(final=True)

    def _loop(self) -> None:
        """The background work, on an idle-priority thread: every tick a slice of request ids, every
        flush interval the buffers as new part files."""
        _idle_priority()
        tick = min(_TICK, self.flush_interval)
        due = time.monotonic() + self.flush_interval
        while not self._stop.wait(tick):
            self._refill_ids(_SLICE)
            if time.monotonic() >= due:
                due = time.monotonic() + self.flush_interval
                self._size_ids()
                self._flush_logged()

    def _watch(self) -> None:
        """At the server's priority: flush when the idle-priority thread got no CPU for
        ``_FLUSHES_BEHIND`` intervals (a saturated server), so rows never pile up in memory."""
        limit = _FLUSHES_BEHIND * self.flush_interval
        while not self._stop.wait(self.flush_interval):
            if time.monotonic() - self._last_flush > limit:
                self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a full disk must not take the server down; the rows wait for the next flush
            log.exception("feedback flush failed; retrying in %ss", self.flush_interval)

    def flush(self, *, final: bool = False) -> int:
        """Write the buffered rows as new part files, in this thread; return how many rows went out."""
        n = self._write(self._build(), final=final)
        self._last_flush = time.monotonic()
        return n

    def _build(self) -> list[tuple[str, str, Any]]:
        """The buffered rows as ``(table, partition, Arrow table)``, one per table and hour, built ``_SLICE``
        rows at a time (each slice a few C calls: the GIL changes hands between them)."""
        import pyarrow as pa

        with self._build_lock:
            tables: dict[str, list[Any]] = {"served": [], "feedback": []}
            for q, build, table in ((self._served_items, _served_from_arrays, "served"),
                                    (self._served, _served_single, "served"),
                                    (self._served_batch, _served_python, "served"),
                                    (self._feedback, _feedback_table, "feedback")):
                left = len(q)  # what is there now: rows that arrive meanwhile wait for the next flush
                while left > 0 and (rows := _drain(q, min(left, _SLICE))):
                    left -= len(rows)
                    tables[table].append(build(rows))
            return [(table, partition, rows) for table, ts in tables.items() if ts
                    for partition, rows in _by_hour(pa.concat_tables(ts) if len(ts) > 1 else ts[0])]

    def _write(self, parts: list[tuple[str, str, Any]], *, final: bool = False) -> int:
        """Write ``parts`` (after those an earlier write refused); raise the first error, keeping the
        parts not written for the next call."""
        with self._write_lock:
            todo, self._failed = self._failed + parts, []
            n = 0
            for i, (table, partition, rows) in enumerate(todo):
                try:
                    self._write_part(table, partition, rows)
                except Exception:
                    self._failed = _bounded(todo[i:])
                    raise
                n += rows.num_rows
                self.rows_written += rows.num_rows
                self._open.add(partition)
            if not final:
                self._roll(time.time())
            return n

    def _write_part(self, table: str, partition: str, rows: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = rows.combine_chunks()  # outside the GIL; encoding one chunk then holds it less than many
        self._seq += 1
        name = f"part-{time.time_ns()}-{os.getpid()}-{self._seq}.parquet"
        if self.fs is not None:  # one PUT: an object store shows the whole part or nothing
            buf = pa.BufferOutputStream()
            pq.write_table(rows, buf)
            self.fs.pipe_file(f"{self.root}/{table}/{partition}/{name}", buf.getvalue().to_pybytes())
            return
        folder = self.root / table / partition
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{name}"
        try:
            pq.write_table(rows, tmp)
            os.replace(tmp, folder / name)  # readers never see half a part
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _roll(self, now: float) -> None:
        current = _partition(now)
        waiting = {partition for _, partition, _ in self._failed}
        for p in sorted(self._open - waiting):
            if p < current:  # that hour is over: its partition will get no more rows from this server
                self._open.discard(p)
                self._closed(p)

    def _closed(self, partition: str) -> None:
        if not self.publish_events:
            return
        try:
            from ..operate._events import publish

            publish(PARTITION_CLOSED, {"model": self.model, "partition": partition, "root": self.url})
        except Exception:
            log.exception("could not publish %s for %s", PARTITION_CLOSED, partition)


def _served_single(rows: list[tuple[str, bytes, float]]) -> Any:
    """Single-user response bodies: Arrow's C++ JSON reader (little GIL), else parsed in Python."""
    import pyarrow as pa

    try:
        return _served_arrow(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError):
        return _served_python(rows)


def _forget_ids(pool: weakref.ref[deque[str]]) -> None:
    """In a forked child: drop the request ids made ahead (the parent hands them out)."""
    ids = pool()
    if ids is not None:
        ids.clear()


def _idle_priority() -> None:
    """Run the calling thread only when the core has nothing else to do (Linux ``SCHED_IDLE``; Linux
    schedules threads one by one): a request thread that wakes up takes the core from it at once,
    where a merely lower priority (nice) still lets it finish a time slice of a few ms. Elsewhere,
    or where the policy is refused, nice +10, else nothing."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))


def _bounded(parts: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """``parts`` without the oldest beyond ``_MAX_HELD_ROWS`` rows (each drop logged)."""
    held = sum(rows.num_rows for _, _, rows in parts)
    while parts and held > _MAX_HELD_ROWS:
        table, partition, rows = parts[0]
        log.error("feedback: %d %s rows of %s dropped: writes keep failing", rows.num_rows, table, partition)
        held -= rows.num_rows
        parts = parts[1:]
    return parts


def _drain(q: deque[Any], most: int | None = None) -> list[Any]:
    """Take up to ``most`` (default: all) items off the left of ``q`` (requests append on the right)."""
    out = []
    pop = q.popleft
    for _ in range(len(q) if most is None else most):
        try:
            out.append(pop())
        except IndexError:
            break
    return out


def _feedback_table(rows: list[tuple[str, str, str, str, float, float]]) -> Any:
    import pyarrow as pa

    names = ("request_id", "user_id", "item_id", "event", "value", "at")
    schema = pa.schema([("request_id", pa.string()), ("user_id", pa.string()), ("item_id", pa.string()),
                        ("event", pa.string()), ("value", pa.float64()), ("at", pa.float64())])
    return pa.table(dict(zip(names, (list(c) for c in zip(*rows)))), schema=schema)


def _served_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("user_id", pa.string()), ("items", pa.list_(pa.string())),
                      ("scores", pa.list_(pa.float64())), ("model", pa.string()), ("version", pa.int64()),
                      ("at", pa.float64())])


def _served_arrow(rows: list[tuple[str, bytes, float]]) -> Any:
    """Single-user responses parsed by Arrow's JSON reader (C++) into the served table."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    rids, bodies, ats = zip(*rows)
    t = pj.read_json(io.BytesIO(b"\n".join(bodies)))
    items = t.column("items").combine_chunks()
    flat = pc.list_flatten(items)
    offsets = items.offsets
    ids = pc.cast(pc.struct_field(flat, "item_id"), pa.string())
    scores = pc.cast(pc.struct_field(flat, "score"), pa.float64())
    return pa.table({
        "request_id": pa.array(rids, pa.string()),
        "user_id": pc.cast(t.column("user_id"), pa.string()),
        "items": pa.ListArray.from_arrays(offsets, ids),
        "scores": pa.ListArray.from_arrays(offsets, scores),
        "model": pc.cast(t.column("model"), pa.string()),
        "version": pc.cast(t.column("version"), pa.int64()),
        "at": pa.array(ats, pa.float64()),
    }, schema=_served_schema())


def _served_from_arrays(rows: list[tuple[str, str, Any, Any, str, int, float]]) -> Any:
    """The served table from answers recorded by ``served_items``: concatenations, no parsing."""
    import pyarrow as pa

    rids, users, items, scores, models, versions, ats = zip(*rows)
    lengths = np.fromiter(map(len, items), np.int64, count=len(rows))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat_items = np.concatenate(items)
    ids = pa.array(flat_items.tolist() if flat_items.dtype == object else flat_items).cast(pa.string())
    flat_scores = pa.array(np.concatenate(scores).astype(np.float64), from_pandas=True)  # NaN -> null
    return pa.table({
        "request_id": pa.array(rids, pa.string()),
        "user_id": pa.array(users, pa.string()),
        "items": pa.ListArray.from_arrays(offsets, ids),
        "scores": pa.ListArray.from_arrays(offsets, flat_scores),
        "model": pa.array(models, pa.string()),
        "version": pa.array(versions, pa.int64()),
        "at": pa.array(ats, pa.float64()),
    }, schema=_served_schema())


def _by_hour(tbl: Any) -> list[tuple[str, Any]]:
    """``(partition, rows of that hour)`` for a table with an ``at`` column (seconds since the epoch)."""
    hours = np.floor(tbl.column("at").to_numpy() / 3600.0).astype(np.int64)
    first = int(hours[0])
    if (hours == first).all():  # the usual case: a flush covers one hour
        return [(_partition(first * 3600.0), tbl)]
    return [(_partition(h * 3600.0), tbl.filter(hours == h)) for h in np.unique(hours).tolist()]


def _served_python(rows: list[tuple[str, bytes, float]]) -> Any:
    """Any response (batches too), parsed in Python."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {k: [] for k in ("request_id", "user_id", "items", "scores", "model", "version", "at")}
    for rid, body, at in rows:
        doc = json.loads(body)
        for r in doc["results"] if "results" in doc else [doc]:
            cols["request_id"].append(rid)
            cols["user_id"].append(str(r["user_id"]))
            cols["items"].append([str(i["item_id"]) for i in r["items"]])
            cols["scores"].append([i["score"] for i in r["items"]])
            cols["model"].append(doc.get("model"))
            cols["version"].append(int(doc.get("version", 0)))
            cols["at"].append(at)
    return pa.table(cols, schema=_served_schema())
