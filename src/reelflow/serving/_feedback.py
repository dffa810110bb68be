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
bytes are parsed later, off the request path). A background thread flushes the
buffers every ``flush_interval`` seconds, each flush a new immutable part file
(written to a temporary name and renamed in a folder; one PUT, which an object
store makes visible whole, in an object store), so a reader never sees half a file
and parts are never rewritten (the table's versions are its parts). Shutdown (SIGTERM,
Ctrl-C) flushes what is left. **A kill -9 loses at most the last flush interval**
(default 1 s) of rows; nothing already flushed is lost or damaged.

Request ids carry an HMAC tag under a secret kept beside the tables (shared by
every worker and restart of the server, and in an object store by every server
of the team: the first one creates it with a conditional write), so ``POST /v1/feedback`` answers 422
for an id this server never issued without any lookup. When the hour (partition)
rolls over, the flusher publishes the event ``feedback.partition_closed`` with
the partition, so a ``@trigger(event="feedback.partition_closed")`` deployment
retrains on data arrival.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeedbackLog", "feedback_root", "feedback_location", "PARTITION_CLOSED"]

log = logging.getLogger("reelflow.serving")
PARTITION_CLOSED = "feedback.partition_closed"
_TAG = 12  # hex characters of the HMAC tag


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
        self._flush_lock = threading.Lock()
        self._open: set[str] = set()  # partitions this server wrote to that have not closed yet
        self.rows_written = 0

    # -- request path ---------------------------------------------------------------------
    def new_request_id(self) -> str:
        """A fresh request id: random part and its HMAC tag."""
        rnd = secrets.token_hex(8)
        return f"{rnd}{hmac.new(self._key, rnd.encode(), hashlib.sha256).hexdigest()[:_TAG]}"

    def known_request_id(self, rid: Any) -> bool:
        """Whether ``rid`` is an id this server issued (any worker, any restart)."""
        if not isinstance(rid, str) or len(rid) != 16 + _TAG:
            return False
        rnd, tag = rid[:16], rid[16:]
        return hmac.compare_digest(tag, hmac.new(self._key, rnd.encode(), hashlib.sha256).hexdigest()[:_TAG])

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

        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="reelflow-feedback-flush", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and write what is buffered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # a full disk must not take the server down; rows stay buffered
                log.exception("feedback flush failed; retrying in %ss", self.flush_interval)

    def flush(self, *, final: bool = False) -> int:
        """Write the buffered rows as new part files; return how many rows went out."""
        with self._flush_lock:
            served = _drain(self._served)
            batches = _drain(self._served_batch)
            arrays = _drain(self._served_items)
            fb = _drain(self._feedback)
            n = 0
            if served or batches or arrays:
                n += self._write_served(served, batches, arrays)
            if fb:
                n += self._write_feedback(fb)
            self.rows_written += n
            if not final:
                self._roll(time.time())
            return n

    def _roll(self, now: float) -> None:
        current = _partition(now)
        for p in sorted(self._open):
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

    def _write_table(self, table: str, part: str, tbl: Any) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._seq += 1
        name = f"part-{time.time_ns()}-{os.getpid()}-{self._seq}.parquet"
        if self.fs is not None:  # one PUT: an object store shows the whole part or nothing
            buf = pa.BufferOutputStream()
            pq.write_table(tbl, buf)
            self.fs.pipe_file(f"{self.root}/{table}/{part}/{name}", buf.getvalue().to_pybytes())
        else:
            folder = self.root / table / part
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".tmp-{name}"
            pq.write_table(tbl, tmp)
            os.replace(tmp, folder / name)  # readers never see half a part
        self._open.add(part)
        return int(tbl.num_rows)

    def _write_served(self, single: list[tuple[str, bytes, float]], batch: list[tuple[str, bytes, float]],
                      arrays: list[tuple[str, str, Any, Any, str, int, float]]) -> int:
        """One part per hour that the rows fall in. The server's threads share the GIL with this flush,
        so it does no per-row Python work on single-user answers (a pause here is a request's
        tail latency): columns come out of C (zip, join, Arrow's JSON reader)."""
        import pyarrow as pa

        tables = []
        if arrays:
            tables.append(_served_from_arrays(arrays))
        if single:
            rids, bodies, ats = zip(*single)
            try:  # the C++ JSON reader, outside the GIL: the request threads barely notice a flush
                tables.append(_served_arrow_columns(rids, bodies, ats))
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError):
                tables.append(_served_python(single))
        if batch:
            tables.append(_served_python(batch))
        tbl = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return sum(self._write_table("served", part, t) for part, t in _by_hour(tbl))

    def _write_feedback(self, rows: list[tuple[str, str, str, str, float, float]]) -> int:
        import pyarrow as pa

        parts: dict[str, dict[str, list[Any]]] = {}
        names = ("request_id", "user_id", "item_id", "event", "value", "at")
        for row in rows:
            cols = parts.setdefault(_partition(row[-1]), {k: [] for k in names})
            for k, v in zip(names, row):
                cols[k].append(v)
        schema = pa.schema([("request_id", pa.string()), ("user_id", pa.string()), ("item_id", pa.string()),
                            ("event", pa.string()), ("value", pa.float64()), ("at", pa.float64())])
        return sum(self._write_table("feedback", part, pa.table(cols, schema=schema)) for part, cols in parts.items())


def _drain(q: deque[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.popleft())
        except IndexError:
            return out


def _served_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("user_id", pa.string()), ("items", pa.list_(pa.string())),
                      ("scores", pa.list_(pa.float64())), ("model", pa.string()), ("version", pa.int64()),
                      ("at", pa.float64())])


def _served_arrow(rows: list[tuple[str, bytes, float]]) -> Any:
    """Single-user responses parsed by Arrow's JSON reader (C++) into the served table."""
    rids, bodies, ats = zip(*rows)
    return _served_arrow_columns(rids, bodies, ats)


def _served_arrow_columns(rids: Any, bodies: Any, ats: Any) -> Any:
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

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
