"""In-place schema migrations, run inside the schema transaction that ``create_all`` opened.

``create_all`` has already created every table the old schema lacked (in the new
shape); these steps bring the tables the old schema *had* up to date. Each step
checks the database before it changes it, so a half-applied history cannot trip it.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect

from . import _schema as s

__all__ = ["upgrade"]


def upgrade(conn: Connection, old_version: int) -> None:
    """Migrate the schema from ``old_version`` to :data:`~._schema.SCHEMA_VERSION`."""
    if old_version < 3:
        _to_3(conn, old_version)
    if old_version < 4:
        for ix in s.runs.indexes:  # 4: ix_runs_flow_status
            ix.create(conn, checkfirst=True)


def _to_3(conn: Connection, old_version: int) -> None:
    insp = inspect(conn)
    have = {c["name"] for c in insp.get_columns("runs")}
    for col in (s.runs.c.heartbeat_at, s.runs.c.proc_token, s.runs.c.status_reason):
        if col.name not in have:
            ddl = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {col.name} {ddl}")
    pg = conn.dialect.name == "postgresql"
    if pg:  # SQLite's INTEGER already holds 64 bits
        conn.exec_driver_sql("ALTER TABLE artifacts ALTER COLUMN size TYPE BIGINT")
    if old_version < 2:
        return  # the metrics and models tables were just created in the new shape
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_metrics_run_name")
    if pg:
        conn.exec_driver_sql("ALTER TABLE models ALTER COLUMN size TYPE BIGINT")
        conn.exec_driver_sql(
            "ALTER TABLE metrics ALTER COLUMN step TYPE BIGINT, ALTER COLUMN name TYPE TEXT, "
            "ALTER COLUMN value DROP NOT NULL"
        )
        for ix in s.metrics.indexes:
            ix.create(conn, checkfirst=True)
    else:  # SQLite cannot drop NOT NULL: rebuild the table (the documented 12-step way, minus FKs)
        cols = ", ".join(c.name for c in s.metrics.columns)
        conn.exec_driver_sql("ALTER TABLE metrics RENAME TO _metrics_v2")
        s.metrics.create(conn)
        conn.exec_driver_sql(f"INSERT INTO metrics ({cols}) SELECT {cols} FROM _metrics_v2")
        conn.exec_driver_sql("DROP TABLE _metrics_v2")
