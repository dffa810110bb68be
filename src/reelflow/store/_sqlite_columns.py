"""The columns of the tables the fast SQLite path reads and writes, generated from ``_schema.py``.

Do not edit the tables below by hand: after changing the schema run
``python -m reelflow.store._sqlite_columns`` (``tests/store/test_fastsqlite.py`` fails
until the file matches the schema). Each column is ``(name, default)``; ``default``
is the schema's Python-side default for an insert that leaves the column out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "COLUMNS", "AUTOINCREMENT", "render"]

# -- generated: begin
SCHEMA_VERSION = 4
COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {
    'runs': (
        ('id', None),
        ('flow_name', None),
        ('user', None),
        ('status', None),
        ('created_at', None),
        ('finished_at', None),
        ('origin_run_id', None),
        ('tags', '[]'),
        ('system_tags', '[]'),
        ('graph', None),
        ('params', '{}'),
        ('pid', None),
        ('host', None),
        ('heartbeat_at', None),
        ('proc_token', None),
        ('status_reason', None),
    ),
    'tasks': (
        ('id', None),
        ('run_id', None),
        ('step_name', None),
        ('task_id', None),
        ('attempt', None),
        ('status', None),
        ('task_key', None),
        ('split_index', None),
        ('foreach_stack', '[]'),
        ('input_paths', '[]'),
        ('started_at', None),
        ('finished_at', None),
        ('exception', None),
        ('stdout_key', None),
        ('stderr_key', None),
        ('cloned_from', None),
        ('resources', None),
        ('result', None),
    ),
    'artifacts': (
        ('task_row', None),
        ('name', None),
        ('key', None),
        ('size', None),
        ('type', None),
    ),
    'metrics': (
        ('id', None),
        ('run_id', None),
        ('task_row', None),
        ('step_name', None),
        ('task_id', None),
        ('name', None),
        ('value', None),
        ('step', None),
        ('timestamp', None),
    ),
}
AUTOINCREMENT: dict[str, str] = {
    'runs': 'id',
    'tasks': 'id',
    'metrics': 'id',
}
# -- generated: end

TABLES = ("runs", "tasks", "artifacts", "metrics")


def render() -> str:
    """The text this file should have for the schema in ``_schema.py`` (imports SQLAlchemy)."""
    from . import _schema as s

    lines = [f"SCHEMA_VERSION = {s.SCHEMA_VERSION}", "COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {"]
    auto = []
    for name in TABLES:
        table = s.metadata.tables[name]
        lines.append(f"    {name!r}: (")
        for col in table.columns:
            default = getattr(col.default, "arg", None) if col.default is not None and col.default.is_scalar else None
            lines.append(f"        ({col.name!r}, {default!r}),")
        lines.append("    ),")
        if table.autoincrement_column is not None:
            auto.append(f"    {name!r}: {table.autoincrement_column.name!r},")
    lines += ["}", "AUTOINCREMENT: dict[str, str] = {", *auto, "}"]
    with open(__file__, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split("# -- generated: begin\n", 1)
    tail = rest.split("# -- generated: end\n", 1)[1]
    return head + "# -- generated: begin\n" + "\n".join(lines) + "\n# -- generated: end\n" + tail


if __name__ == "__main__":
    new = render()
    with open(__file__, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"wrote {__file__}")
