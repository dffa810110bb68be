"""Finding the newest runs: indexed queries whose cost does not grow with the store.

``Flow.latest_run``, ``Flow.latest_successful_run`` and ``runs list --limit`` read
the newest matching rows through an index (checked with SQLite's query plan);
benchmarks/flows/bench_latest.py times them at 1, 1,000 and 100,000 runs.
"""

import warnings

import pytest

from reelflow import Flow, namespace
from reelflow.client import find_runs
from reelflow.errors import NamespaceWarning
from reelflow.store import get_store


def _runs(specs):
    """Record runs straight through the store API: (flow, user, status, tags) each."""
    md = get_store().metadata
    ids = []
    for flow, user, status, tags in specs:
        rid = md.create_run(flow, user=user, tags=tags, system_tags=[f"user:{user}"])
        md.finish_run(rid, status)
        ids.append(rid)
    return ids


def test_latest_and_latest_successful_in_the_namespace():
    ids = _runs([("F", "alice", "succeeded", []), ("F", "bob", "succeeded", []), ("F", "alice", "failed", []),
                 ("G", "alice", "succeeded", []), ("F", "bob", "failed", [])])
    namespace("user:alice")
    f = Flow("F")
    assert f.latest_run.id == ids[2] and f.latest_successful_run.id == ids[0]
    namespace(None)
    assert f.latest_run.id == ids[4] and f.latest_successful_run.id == ids[1]
    namespace("user:carol")
    with pytest.warns(NamespaceWarning, match="outside the namespace 'user:carol'.*user:alice, user:bob"):
        assert f.latest_run is None
    with pytest.warns(NamespaceWarning, match="successful runs"):
        assert f.latest_successful_run is None


def test_tags_match_whole_elements_exactly():
    md = get_store().metadata
    ids = _runs([("F", "u", "succeeded", ["Prod"]), ("F", "u", "succeeded", ['x"prod"', "prod_2"]),
                 ("F", "u", "succeeded", ["a", "prod"]), ("F", "u", "succeeded", ["p%d"])])
    assert [r["run_id"] for r in md.recent_runs("F", limit=5, tags=["prod"])] == [ids[2]]
    assert [r["run_id"] for r in md.recent_runs("F", limit=5, tags=["Prod"])] == [ids[0]]
    assert [r["run_id"] for r in md.recent_runs("F", limit=5, tags=['x"prod"'])] == [ids[1]]
    assert [r["run_id"] for r in md.recent_runs("F", limit=5, tags=["p_d"])] == []  # _ and % are literal
    assert [r["run_id"] for r in md.recent_runs("F", limit=5, tags=["p%d"])] == [ids[3]]
    assert [r["run_id"] for r in md.recent_runs(limit=2)] == [ids[3], ids[2]]
    assert md.recent_runs("F", limit=0) == [] and md.has_flow("F") and not md.has_flow("f")


def test_find_runs_limit_reads_only_the_newest():
    ids = _runs([("F", "u", "succeeded", ["keep"] if i % 3 == 0 else []) for i in range(10)])
    namespace(None)
    assert [r.id for r in find_runs("F", limit=3)] == ids[::-1][:3]
    assert [r.id for r in find_runs("F", tags=["keep"], limit=2)] == [ids[9], ids[6]]
    assert [r.id for r in find_runs("F", tags=["keep"])] == [ids[9], ids[6], ids[3], ids[0]]
    assert [r.id for r in find_runs(limit=1)] == [ids[9]]


@pytest.mark.parametrize("route", ["fast", "sqlalchemy"])
@pytest.mark.parametrize("statuses", [(), ("succeeded",)])
def test_latest_queries_seek_an_index_instead_of_scanning_runs(statuses, route):
    """The plan SQLite picks: a SEARCH on a runs index, no table SCAN, no sort -- on the
    fast sqlite3 route of the default store and on SQLAlchemy's."""
    import sqlite3

    from sqlalchemy import event

    from reelflow.store import MetadataStore

    _runs([("F", "u", "succeeded", [])])
    path = get_store().config.metadata_path
    md = get_store().metadata if route == "fast" else MetadataStore(f"sqlite:///{path}")
    fast = md._fast()
    assert (fast is not None) == (route == "fast")
    statements: list[str] = []  # with their values inlined, explained afterwards

    def literal(statement: str, parameters) -> str:
        for p in parameters:
            statement = statement.replace("?", repr(p) if isinstance(p, str) else str(p), 1)
        return statement

    if fast is not None:
        fast._connection().set_trace_callback(statements.append)
    else:
        def explain(conn, cursor, statement, parameters, context, executemany):
            statements.append(literal(statement, parameters))

        event.listen(md.engine, "before_cursor_execute", explain)
    md.recent_runs("F", limit=1, statuses=statuses)
    md.has_flow("F")
    selects = [st for st in statements if st.lstrip().upper().startswith("SELECT")
               and "FROM runs" in st.replace('"', "")]
    assert len(selects) == 2, statements
    with sqlite3.connect(path) as conn:
        for st in selects:
            plan = " | ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + st))
            assert "SEARCH runs USING" in plan and "INDEX ix_runs_flow" in plan, (st, plan)
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, (st, plan)
    if fast is None:
        md.close()


def test_runs_list_limit_on_the_command_line(reelflow_home):
    import subprocess
    import sys

    ids = _runs([("F", "u", "succeeded", []) for _ in range(5)])
    res = subprocess.run([sys.executable, "-m", "reelflow.cli", "runs", "list", "F", "--limit", "2"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    shown = [line.split()[0] for line in res.stdout.splitlines()[1:]]
    assert shown == [f"F/{ids[4]}", f"F/{ids[3]}"]


def test_a_schema_3_store_gains_the_index(tmp_path):
    from sqlalchemy import inspect

    from reelflow.store import MetadataStore
    from reelflow.store._schema import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'm.db'}"
    md = MetadataStore(url)
    rid = md.create_run("F", user="u")
    with md.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_runs_flow_status")
        conn.exec_driver_sql("UPDATE meta SET value='3' WHERE key='schema_version'")
    md.close()
    md = MetadataStore(url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["run_id"] for r in md.recent_runs("F")] == [rid]
    with md.read() as conn:
        assert "ix_runs_flow_status" in {ix["name"] for ix in inspect(conn).get_indexes("runs")}
        assert conn.exec_driver_sql("SELECT value FROM meta WHERE key='schema_version'").scalar() == str(SCHEMA_VERSION)
    md.close()
