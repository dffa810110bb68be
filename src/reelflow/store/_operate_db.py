"""Deployments, events, firings and promotion decisions: the continuous-operation tables, created on first use.

``deployments`` has one row per deployment name (its current version, paused flag,
the next schedule slot and the cursors of what it has consumed);
``deployment_versions`` keeps every deploy (code snapshot manifest, triggers,
parameters, policies); ``deployment_run_options`` the executor and ``--with``
decorators its runs get, where the deploy named any. ``events`` holds published events. ``firings`` holds every
decision the scheduler made: one row per schedule slot, event or finished run per
deployment, unique on ``(deployment, key)``, so a firing is claimed exactly once
whichever scheduler inserts it first; its status moves
``queued -> running -> succeeded | failed`` or ends ``skipped`` with the reason.

Like the review tables they are created through the store's public
:meth:`~reelflow.store.MetadataStore.write` transaction the first time they are
used, so they need no schema migration; ``reelflow gc`` keeps the blobs they name.
``promotion_decisions`` records every promotion gate's verdict (moved or kept,
both metric values, why) and every rollback; ``models.history`` merges it with
``alias_history``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._metadata import MetadataStore

__all__ = ["operate_tables", "OperateSchema", "has_operate_tables", "operate_blob_keys"]

_created: set[str] = set()
_lock = threading.Lock()


class OperateSchema:
    """The tables (SQLAlchemy Core), defined once per process."""

    _instance: OperateSchema | None = None

    def __init__(self) -> None:
        from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

        md = self.md = MetaData()
        self.deployments = Table(
            "deployments", md,
            Column("name", String(255), primary_key=True),
            Column("version", Integer, nullable=False),
            Column("flow_name", String(255), nullable=False),
            Column("paused", Integer, nullable=False, default=0),
            Column("next_slot", Float),  # epoch seconds of the next schedule slot (None: no schedule)
            Column("last_slot", Float),  # the last slot decided on
            Column("event_cursor", Integer, nullable=False, default=0),  # events up to this id are consumed
            Column("run_cursor", Float, nullable=False, default=0.0),  # runs finished before this are consumed
            Column("created_at", Float, nullable=False),
            Column("updated_at", Float, nullable=False),
            Column("user", String(255), nullable=False),
        )
        self.versions = Table(
            "deployment_versions", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False),
            Column("version", Integer, nullable=False),
            Column("flow_name", String(255), nullable=False),
            Column("entry", Text, nullable=False),  # the flow file's name inside the snapshot
            Column("code", Text, nullable=False),  # JSON {relative path: blob key}
            Column("params", Text, nullable=False),  # JSON {parameter: value as on the command line}
            Column("param_types", Text, nullable=False),  # JSON {parameter: type name}
            Column("triggers", Text, nullable=False),  # JSON of FlowTriggers
            Column("catchup", String(16), nullable=False),
            Column("max_concurrent", Integer, nullable=False),
            Column("on_busy", String(16), nullable=False),
            Column("source", Text),  # where the flow file was on disk when deployed
            Column("created_at", Float, nullable=False),
            Column("user", String(255), nullable=False),
            UniqueConstraint("name", "version", name="uq_deployment_version"),
        )
        self.run_options = Table(  # how a deployment version's runs run (a table of its own: no migration)
            "deployment_run_options", md,
            Column("name", String(255), primary_key=True),
            Column("version", Integer, primary_key=True),
            Column("executor", String(32)),  # None: the scheduler's REELFLOW_EXECUTOR, else the default
            Column("with_specs", Text, nullable=False, default="[]"),  # JSON list of --with values
        )
        self.events = Table(
            "events", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False),
            Column("payload", Text, nullable=False),
            Column("created_at", Float, nullable=False),
            Column("user", String(255), nullable=False),
        )
        Index("ix_events_name_id", self.events.c.name, self.events.c.id)
        self.firings = Table(
            "firings", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("deployment", String(255), nullable=False),
            Column("version", Integer, nullable=False),
            Column("key", String(255), nullable=False),  # schedule:<slot> | event:<id> | run:<id>
            Column("trigger", Text, nullable=False),  # JSON of flows.Trigger
            Column("params", Text, nullable=False),  # JSON of the parameters the run gets
            Column("status", String(16), nullable=False),  # queued|running|succeeded|failed|skipped
            Column("reason", Text),
            Column("run_id", String(64)),
            Column("scheduler", String(255)),  # who started it
            Column("lease_until", Float),  # a running firing whose lease lapsed lost its scheduler
            Column("created_at", Float, nullable=False),
            Column("started_at", Float),
            Column("finished_at", Float),
            UniqueConstraint("deployment", "key", name="uq_firing"),
        )
        self.promotions = Table(  # promotion-gate and rollback decisions, beside alias_history's moves
            "promotion_decisions", md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False),
            Column("alias", String(255), nullable=False),
            Column("decision", String(16), nullable=False),  # moved | kept | rollback
            Column("candidate", Integer, nullable=False),
            Column("incumbent", Integer),
            Column("metric", Text),
            Column("candidate_value", Float),
            Column("incumbent_value", Float),
            Column("higher_is_better", Integer),
            Column("min_improvement", Float),
            Column("reason", Text, nullable=False),
            Column("at", Float, nullable=False),
            Column("user", String(255), nullable=False),
        )
        Index("ix_promotions_name", self.promotions.c.name, self.promotions.c.id)
        Index("ix_firings_status", self.firings.c.status, self.firings.c.deployment)
        Index("ix_firings_run", self.firings.c.run_id)

    @classmethod
    def get(cls) -> OperateSchema:
        if cls._instance is None:
            cls._instance = OperateSchema()
        return cls._instance


def operate_tables(metadata: MetadataStore) -> OperateSchema:
    """The tables, created in ``metadata``'s database if this process has not yet made sure."""
    sch = OperateSchema.get()
    url = str(metadata.url)
    if url not in _created:
        with _lock:
            if url not in _created:
                with metadata.write(lock="operate-schema", flush_blobs=False) as conn:
                    sch.md.create_all(conn, checkfirst=True)
                _created.add(url)
    return sch


def has_operate_tables(metadata: MetadataStore) -> bool:
    """Whether the tables exist (readers such as ``Run.trigger`` create nothing)."""
    if str(metadata.url) in _created:
        return True
    from sqlalchemy import inspect

    with metadata.read() as conn:
        found = bool(inspect(conn).has_table("firings"))
    if found:
        _created.add(str(metadata.url))
    return found


def operate_blob_keys(metadata: MetadataStore) -> set[str]:
    """Blob keys of every deployment version's code snapshot (``reelflow gc`` keeps them)."""
    import json

    from sqlalchemy import select

    if not has_operate_tables(metadata):
        return set()
    v = OperateSchema.get().versions
    keys: set[str] = set()
    with metadata.read() as conn:
        for (code,) in conn.execute(select(v.c.code)):
            keys.update(str(k) for k in json.loads(code or "{}").values())
    return keys
