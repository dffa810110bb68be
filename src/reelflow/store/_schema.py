"""The metadata schema (SQLAlchemy Core), versioned so later releases can migrate it.

Version history
---------------
1. ``runs``, ``tasks`` (one row per attempt), ``artifacts`` (name -> blob key per
   task attempt), ``meta`` (schema version).
2. ``metrics`` (logged by tasks), ``models`` (registered versions), ``model_aliases``
   and ``alias_history`` (every alias move, with time and user). Migrating from 1
   only adds tables.
3. ``runs.heartbeat_at`` and ``runs.proc_token`` (liveness: a ``running`` run whose
   process is gone reads as ``abandoned``), ``runs.status_reason``; the schema holds every value the API
   accepts: metric ``step`` and blob ``size`` columns are 64-bit, metric names are
   text (up to :data:`~reelflow.store.METRIC_NAME_MAX` characters), and a metric
   ``value`` may be NULL, which is how SQLite stores NaN. Migrating from 2 adds the
   columns, widens the types on PostgreSQL and rebuilds ``metrics`` on SQLite.
4. Index ``ix_runs_flow_status`` (flow, status, id): the newest (successful) run of a
   flow is one index seek however many runs the store holds. Migrating adds it.

After changing the columns of ``runs``, ``tasks``, ``artifacts`` or ``metrics``, or
``SCHEMA_VERSION``, run ``python -m reelflow.store._sqlite_columns``: the default
store's fast route (``_fastsqlite.py``, plain ``sqlite3``) names columns from that
generated file, and ``tests/store/test_fastsqlite.py`` fails until it matches.

A run's id is the integer primary key of ``runs`` shown as a string, unique in
the store, so concurrent flows never collide. A task row is written once, when
its attempt ends, in the same transaction as its artifact rows: a reader never
sees a task without its artifacts, and a killed process leaves no half rows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["SCHEMA_VERSION", "metadata", "meta", "runs", "tasks", "artifacts", "metrics", "models", "model_aliases", "alias_history"]

SCHEMA_VERSION = 4

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_name", String(255), nullable=False),
    Column("user", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed (abandoned is derived)
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("origin_run_id", String(64)),
    Column("tags", Text, nullable=False, default="[]"),  # JSON list of user tags
    Column("system_tags", Text, nullable=False, default="[]"),
    Column("graph", Text),  # JSON description of the flow graph
    Column("params", Text, nullable=False, default="{}"),  # JSON of parameter values (repr)
    Column("pid", Integer),
    Column("host", String(255)),
    Column("heartbeat_at", Float),  # refreshed by the runtime while the run goes on
    Column("proc_token", String(128)),  # "<boot id>.<pid namespace>:<start ticks>" of the creating process
    Column("status_reason", Text),  # why it ended so, e.g. "SIGTERM (the run was interrupted)"
)
Index("ix_runs_flow", runs.c.flow_name, runs.c.id)
Index("ix_runs_flow_status", runs.c.flow_name, runs.c.status, runs.c.id)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("step_name", String(255), nullable=False),
    Column("task_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # succeeded | failed
    Column("task_key", String(512), nullable=False),  # step + split path + visit, for resume
    Column("split_index", Integer),
    Column("foreach_stack", Text, nullable=False, default="[]"),
    Column("input_paths", Text, nullable=False, default="[]"),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("exception", Text),
    Column("stdout_key", String(64)),
    Column("stderr_key", String(64)),
    Column("cloned_from", String(512)),
    Column("resources", Text),
    Column("result", Text),  # JSON: transition taken, foreach width
    UniqueConstraint("run_id", "task_id", "attempt", name="uq_task_attempt"),
)
Index("ix_tasks_run_step", tasks.c.run_id, tasks.c.step_name)

artifacts = Table(
    "artifacts",
    metadata,
    Column("task_row", Integer, ForeignKey("tasks.id"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("key", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("type", String(255), nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("task_row", Integer, ForeignKey("tasks.id"), nullable=False),
    Column("step_name", String(255), nullable=False),
    Column("task_id", Integer, nullable=False),
    Column("name", Text, nullable=False),  # Text: no index, so long names fit any dialect
    Column("value", Float),  # NULL is NaN (SQLite stores NaN as NULL)
    Column("step", BigInteger),  # the user's step/epoch counter, if given
    Column("timestamp", Float, nullable=False),
)
Index("ix_metrics_run", metrics.c.run_id)
Index("ix_metrics_task_row", metrics.c.task_row)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(64), nullable=False),  # blob key of the model object
    Column("size", BigInteger, nullable=False),
    Column("type", String(255), nullable=False),
    Column("source", String(512)),  # task pathspec (lineage) or None for a script
    Column("artifact", String(255)),  # artifact name when registered from one
    Column("metrics", Text, nullable=False, default="{}"),
    Column("description", Text),
    Column("created_at", Float, nullable=False),
    Column("user", String(255), nullable=False),
    UniqueConstraint("name", "version", name="uq_model_version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("alias", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("user", String(255), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("alias", String(255), nullable=False),
    Column("version", Integer),  # None: the alias was deleted
    Column("previous_version", Integer),
    Column("at", Float, nullable=False),
    Column("user", String(255), nullable=False),
)
