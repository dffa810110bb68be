"""Schema 2 -> 3 in place, on SQLite and PostgreSQL: old rows survive, new limits hold."""

from __future__ import annotations

import math
import time

import pytest
from sqlalchemy import inspect

from reelflow.store import ArtifactRef, MetadataStore, TaskRecord
from reelflow.store._schema import SCHEMA_VERSION

V2_METRICS_SQLITE = """CREATE TABLE metrics (
    id INTEGER NOT NULL PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id),
    task_row INTEGER NOT NULL REFERENCES tasks (id), step_name VARCHAR(255) NOT NULL, task_id INTEGER NOT NULL,
    name VARCHAR(255) NOT NULL, value FLOAT NOT NULL, step INTEGER, timestamp FLOAT NOT NULL)"""


def _make_v2(md: MetadataStore) -> None:
    """Turn a fresh store into what reelflow with schema 2 wrote."""
    with md.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_metrics_run")
        conn.exec_driver_sql("DROP INDEX ix_metrics_task_row")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE metrics ALTER COLUMN step TYPE INTEGER, "
                                 "ALTER COLUMN name TYPE VARCHAR(255), ALTER COLUMN value SET NOT NULL")
            conn.exec_driver_sql("ALTER TABLE artifacts ALTER COLUMN size TYPE INTEGER")
            conn.exec_driver_sql("ALTER TABLE models ALTER COLUMN size TYPE INTEGER")
        else:
            conn.exec_driver_sql("DROP TABLE metrics")
            conn.exec_driver_sql(V2_METRICS_SQLITE)
        conn.exec_driver_sql("CREATE INDEX ix_metrics_run_name ON metrics (run_id, name)")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN heartbeat_at")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN proc_token")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN status_reason")
        conn.exec_driver_sql("UPDATE meta SET value='2' WHERE key='schema_version'")


def _record(md: MetadataStore, rid: str, task_id: int, metrics: list, size: int) -> None:
    now = time.time()
    rec = TaskRecord(step_name="start", task_id=task_id, attempt=0, status="succeeded", task_key=f"start{task_id}",
                     started_at=now, finished_at=now, metrics=[(n, v, s, now) for n, v, s in metrics])
    md.record_task(rid, rec, {"a": ArtifactRef("k" * 32, size, "int")})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 35):
            pytest.skip("building a schema-2 fixture needs SQLite 3.35 (DROP COLUMN)")
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("postgres_url")


def test_schema_2_store_is_migrated_in_place(url):
    md = MetadataStore(url)
    md.engine  # create the schema
    _make_v2(md)
    with md.write() as conn:  # a schema-2 row: no liveness columns
        conn.exec_driver_sql(
            "INSERT INTO runs (flow_name, \"user\", status, created_at, tags, system_tags, graph, params, pid, host) "
            "VALUES ('Old', 'u', 'succeeded', 1.0, '[]', '[]', '{}', '{}', 1, 'h')")
        rid = str(conn.exec_driver_sql("SELECT max(id) FROM runs").scalar())
        conn.exec_driver_sql(
            "INSERT INTO tasks (run_id, step_name, task_id, attempt, status, task_key, foreach_stack, input_paths, "
            f"started_at, finished_at) VALUES ({rid}, 'start', 1, 0, 'succeeded', 'start', '[]', '[]', 1.0, 2.0)")
        row = conn.exec_driver_sql("SELECT max(id) FROM tasks").scalar()
        conn.exec_driver_sql("INSERT INTO metrics (run_id, task_row, step_name, task_id, name, value, step, timestamp) "
                             f"VALUES ({rid}, {row}, 'start', 1, 'loss', 0.5, 3, 1.0)")
    md.close()

    md = MetadataStore(url)  # opening migrates
    with md.read() as conn:
        version = conn.exec_driver_sql("SELECT value FROM meta WHERE key='schema_version'").scalar()
        insp = inspect(conn)
        run_cols = {c["name"] for c in insp.get_columns("runs")}
        metric_cols = {c["name"]: c for c in insp.get_columns("metrics")}
        indexes = {ix["name"] for ix in insp.get_indexes("metrics")}
    assert version == str(SCHEMA_VERSION)
    assert {"heartbeat_at", "proc_token", "status_reason"} <= run_cols
    assert metric_cols["value"]["nullable"]
    assert indexes == {"ix_metrics_run", "ix_metrics_task_row"}
    old = md.get_run("Old", rid)
    assert old["status"] == "succeeded" and old["heartbeat_at"] is None
    assert [(m["name"], m["value"], m["step"]) for m in md.metrics_of([rid])] == [("loss", 0.5, 3)]
    new = md.create_run("New", user="u")
    _record(md, new, 1, [("x" * 1000, float("nan"), 2**63 - 1), ("loss", 1.0, 2**40)], size=2**33)
    got = md.metrics_of([new])
    assert len(got[0]["name"]) == 1000 and math.isnan(got[0]["value"]) and got[0]["step"] == 2**63 - 1
    assert got[1]["step"] == 2**40
    md.close()
    MetadataStore(url).engine  # a migrated store opens again without migrating twice
