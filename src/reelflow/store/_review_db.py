"""Generated outputs and their review decisions: two tables of their own, created on first use.

``generated`` has one row per distinct generation *request* (model version,
input, prompt, seed, steps, guidance, scheduler, size, hashed into
``request_key``): the PNG's blob key and its lineage. A repeated request finds
its row and generates nothing, so an identical re-run stores nothing new, and a
job killed half-way regenerates only what has no row. ``reviews`` holds every
decision (approved / rejected) with who, when and why; an output's status is its
latest decision. Like the ``cards`` table, both are created through the store's
public :meth:`~reelflow.store.MetadataStore.write` transaction the first time
they are used, so they need no schema migration; ``reelflow gc`` keeps the
blobs they name.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError

if TYPE_CHECKING:
    from ._metadata import MetadataStore

__all__ = ["ReviewTables", "review_tables", "generated_blob_keys"]

_created: set[str] = set()
_lock = threading.Lock()
_tables: tuple[Any, Any] | None = None
DECISIONS = ("approved", "rejected")


def _define() -> tuple[Any, Any]:
    global _tables
    if _tables is None:
        from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

        md = MetaData()
        gen = Table(
            "generated", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("request_key", String(64), nullable=False, unique=True),
            Column("key", String(64), nullable=False),  # the PNG's blob
            Column("size", BigInteger, nullable=False),
            Column("input_key", String(64)),  # the input sketch's PNG blob (None for prompts)
            Column("input_name", Text),
            Column("model", Text, nullable=False),
            Column("pathspec", Text),  # the task that generated it
            Column("lineage", Text, nullable=False),
            Column("created_at", Float, nullable=False),
            Column("user", String(255), nullable=False),
        )
        rev = Table(
            "reviews", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("output_id", Integer, ForeignKey("generated.id"), nullable=False),
            Column("decision", String(16), nullable=False),
            Column("reason", Text),
            Column("image_key", String(64)),  # an artist's retouched version, approved in place of the output
            Column("user", String(255), nullable=False),
            Column("at", Float, nullable=False),
        )
        Index("ix_reviews_output", rev.c.output_id)
        _tables = (gen, rev)
    return _tables


class ReviewTables:
    """Rows of generated outputs and review decisions, behind methods (no SQL outside the store)."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.md = metadata
        self.generated, self.reviews = _define()
        url = str(metadata.url)
        if url not in _created:
            with _lock:
                if url not in _created:
                    with metadata.write(lock="generated-schema", flush_blobs=False) as conn:
                        self.generated.create(conn, checkfirst=True)
                        self.reviews.create(conn, checkfirst=True)
                    _created.add(url)

    def find(self, request_key: str) -> dict[str, Any] | None:
        """The output of an identical earlier request, or None."""
        from sqlalchemy import select

        with self.md.read() as conn:
            row = conn.execute(select(self.generated).where(
                self.generated.c.request_key == request_key)).mappings().first()
        return None if row is None else _gen_dict(row)

    def find_many(self, request_keys: list[str]) -> dict[str, dict[str, Any]]:
        """Earlier outputs of these requests, by request key (one query per 500 keys)."""
        from sqlalchemy import select

        out: dict[str, dict[str, Any]] = {}
        with self.md.read() as conn:
            for i in range(0, len(request_keys), 500):
                chunk = request_keys[i:i + 500]
                for row in conn.execute(select(self.generated).where(
                        self.generated.c.request_key.in_(chunk))).mappings():
                    out[row["request_key"]] = _gen_dict(row)
        return out

    def add_outputs(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record several outputs in one transaction (each dict has :meth:`add_output`'s keywords);
        idempotent on ``request_key``. Returns the rows in order."""
        from sqlalchemy import insert, select

        keys = [r["request_key"] for r in rows]
        with self.md.write(lock="generated") as conn:
            have = {r[0] for r in conn.execute(select(self.generated.c.request_key).where(
                self.generated.c.request_key.in_(keys)))}
            new = [{**r, "lineage": json.dumps(r["lineage"], sort_keys=True)} for r in rows
                   if r["request_key"] not in have]
            if new:
                conn.execute(insert(self.generated), new)
            found = {row["request_key"]: _gen_dict(row) for row in conn.execute(select(self.generated).where(
                self.generated.c.request_key.in_(keys))).mappings()}
        return [found[k] for k in keys]

    def add_output(self, *, request_key: str, key: str, size: int, input_key: str | None, input_name: str | None,
                   model: str, pathspec: str | None, lineage: dict[str, Any], created_at: float,
                   user: str) -> dict[str, Any]:
        """Record an output (idempotent on ``request_key``: a duplicate returns the first row)."""
        from sqlalchemy import insert, select

        with self.md.write(lock="generated") as conn:
            row = conn.execute(select(self.generated).where(
                self.generated.c.request_key == request_key)).mappings().first()
            if row is None:
                conn.execute(insert(self.generated).values(
                    request_key=request_key, key=key, size=size, input_key=input_key, input_name=input_name,
                    model=model, pathspec=pathspec, lineage=json.dumps(lineage, sort_keys=True),
                    created_at=created_at, user=user))
                row = conn.execute(select(self.generated).where(
                    self.generated.c.request_key == request_key)).mappings().first()
        return _gen_dict(row)

    def output(self, output_id: int) -> dict[str, Any]:
        """One output with its status and its decisions, oldest first."""
        from sqlalchemy import select

        with self.md.read() as conn:
            row = conn.execute(select(self.generated).where(self.generated.c.id == int(output_id))).mappings().first()
            if row is None:
                raise NotFoundError(f"no generated output {output_id}; see `reelflow review list`")
            decisions = [dict(r) for r in conn.execute(select(self.reviews).where(
                self.reviews.c.output_id == int(output_id)).order_by(self.reviews.c.id)).mappings()]
        d = _gen_dict(row)
        d["decisions"] = decisions
        d["status"] = decisions[-1]["decision"] if decisions else "pending"
        return d

    def outputs(self, *, status: str | None = None, model: str | None = None, limit: int | None = None,
                pathspec_prefix: str | None = None) -> list[dict[str, Any]]:
        """Outputs (newest first) with their status: ``pending``, ``approved`` or ``rejected``."""
        from sqlalchemy import func, select

        g, r = self.generated, self.reviews
        last = select(r.c.output_id, func.max(r.c.id).label("rid")).group_by(r.c.output_id).subquery()
        q = (select(g, r.c.decision, r.c.user.label("reviewer"), r.c.at.label("reviewed_at"), r.c.reason,
                    r.c.image_key.label("retouched_key"))
             .select_from(g.outerjoin(last, last.c.output_id == g.c.id).outerjoin(r, r.c.id == last.c.rid))
             .order_by(g.c.id.desc()))
        if model is not None:
            q = q.where(g.c.model == model)
        if pathspec_prefix is not None:
            q = q.where(g.c.pathspec.like(pathspec_prefix.replace("%", r"\%") + "%", escape="\\"))
        if status == "pending":
            q = q.where(r.c.decision.is_(None))
        elif status is not None:
            q = q.where(r.c.decision == status)
        if limit is not None:
            q = q.limit(limit)
        with self.md.read() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for row in rows:
            d = _gen_dict(row)
            d["status"] = row["decision"] or "pending"
            out.append(d)
        return out

    def decide(self, output_id: int, decision: str, *, user: str, at: float, reason: str | None = None,
               image_key: str | None = None) -> None:
        """Record ``decision`` (approved / rejected) on an output; ``image_key``: a retouched image's blob."""
        from sqlalchemy import insert, select

        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r}: use one of {', '.join(DECISIONS)}")
        with self.md.write(flush_blobs=image_key is not None) as conn:
            if conn.execute(select(self.generated.c.id).where(self.generated.c.id == int(output_id))).first() is None:
                raise NotFoundError(f"no generated output {output_id}; see `reelflow review list`")
            conn.execute(insert(self.reviews).values(output_id=int(output_id), decision=decision, reason=reason,
                                                     image_key=image_key,
                                                     user=user, at=at))

    def blob_keys(self) -> set[str]:
        """Every blob an output row names (the PNG and its input)."""
        from sqlalchemy import select

        with self.md.read() as conn:
            keys = {r[0] for r in conn.execute(select(self.generated.c.key))}
            keys |= {r[0] for r in conn.execute(select(self.generated.c.input_key).where(
                self.generated.c.input_key.is_not(None)))}
            keys |= {r[0] for r in conn.execute(select(self.reviews.c.image_key).where(
                self.reviews.c.image_key.is_not(None)))}
        return keys


def _gen_dict(row: Any) -> dict[str, Any]:
    d = {k: row[k] for k in ("id", "request_key", "key", "size", "input_key", "input_name", "model", "pathspec",
                             "created_at", "user")}
    d["lineage"] = json.loads(row["lineage"])
    for k in ("decision", "reviewer", "reviewed_at", "reason", "retouched_key"):
        if k in row.keys():
            d[k] = row[k]
    return d


def review_tables(metadata: MetadataStore) -> ReviewTables:
    """The generated/reviews tables of this metadata store (created on first use)."""
    return ReviewTables(metadata)


def generated_blob_keys(metadata: MetadataStore) -> set[str]:
    """Blob keys of generated outputs, for the garbage collector (nothing when the tables do not exist)."""
    from sqlalchemy import inspect

    with metadata.read() as conn:
        if not inspect(conn).has_table("generated"):
            return set()
    return ReviewTables(metadata).blob_keys()
