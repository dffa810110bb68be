"""The model registry: versions, aliases with history, lineage, no copies, migration."""

import sqlite3

import pytest

from reelflow import Flow, models
from reelflow.errors import CorruptArtifactError, NotFoundError, ReelflowError
from reelflow.runtime import LocalRuntime
from reelflow.store._schema import SCHEMA_VERSION


def test_versions_aliases_and_history():
    v1 = models.register("ranker", {"w": 1}, alias="champion", metrics={"ndcg@10": 0.3}, description="first")
    v2 = models.register("ranker", {"w": 2})
    assert (v1.version, v2.version) == (1, 2) and v1.aliases == ("champion",)
    assert models.get("ranker@champion").version == 1
    assert models.get("ranker").version == 2 and models.get("ranker/1").metrics == {"ndcg@10": 0.3}
    models.set_alias("ranker", "champion", 2)
    models.set_alias("ranker", "challenger", 1)
    assert models.load("ranker@champion") == {"w": 2}
    models.delete_alias("ranker", "challenger")
    hist = models.history("ranker")
    assert [(h["alias"], h["version"], h["previous_version"]) for h in hist] == [
        ("champion", 1, None), ("champion", 2, 1), ("challenger", 1, None), ("challenger", None, 1)]
    assert all(h["user"] and h["at"] > 0 for h in hist)
    assert [m.name for m in models.list()] == ["ranker"]
    assert [v.spec for v in models.versions("ranker")] == ["ranker/1", "ranker/2"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: models.get("nope@champion"), "no model named 'nope' is registered in the store \\(metadata: "),
        (lambda: models.get("ranker@champion"), "model 'ranker' has no alias 'champion'"),
        (lambda: models.get("nope"), "no model named 'nope' is registered in the store"),
        (lambda: models.get("ranker/7"), "no version 7"),
        (lambda: models.set_alias("ranker", "champion", 9), "has no version 9; its versions are \\[1\\]"),
        (lambda: models.delete_alias("ranker", "ghost"), "has no alias 'ghost'"),
        (lambda: models.register("bad name!", 1), "model name 'bad name!' is not valid"),
        (lambda: models.versions("nope"), "no model named 'nope'"),
    ],
)
def test_errors_name_the_model(call, match):
    models.register("ranker", [1, 2, 3])
    with pytest.raises((NotFoundError, ReelflowError), match=match):
        call()


def test_register_inside_a_step_records_lineage_and_copies_nothing(load_flow, reelflow_home):
    cls = load_flow("""
        from reelflow import models
        class Train(FlowSpec):
            @step
            def start(self):
                self.model = {"weights": list(range(1000))}
                self.version = models.register("trained", self.model, alias="champion").version
                self.next(self.end)
            @step
            def end(self):
                pass
    """)
    run_id = LocalRuntime(cls, quiet=True).run({})
    mv = models.get("trained@champion")
    task = Flow("Train").latest_run["start"].task
    assert mv.source == task.pathspec == f"Train/{run_id}/start/1"
    assert mv.key == task["model"].sha  # the registered blob is the artifact's blob
    art = task["model"]
    again = models.register("trained", art)  # by reference, from the client
    assert again.key == art.sha and again.artifact == "model" and again.source == task.pathspec
    blobs = [p for p in (reelflow_home / "blobs").rglob("*") if p.is_file()]
    assert sum(1 for p in blobs if p.name == mv.key) == 1


def test_corrupt_model_blob_is_detected(reelflow_home):
    mv = models.register("fragile", {"x": list(range(100))})
    blob = reelflow_home / "blobs" / mv.key[:2] / mv.key
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="model fragile/1"):
        models.load("fragile/1")


def test_schema_1_store_is_migrated_in_place(load_flow, reelflow_home):
    cls = load_flow("""
        class Old(FlowSpec):
            @step
            def start(self):
                self.x = 41
                self.next(self.end)
            @step
            def end(self):
                self.y = self.x + 1
    """)
    LocalRuntime(cls, quiet=True).run({})
    db = reelflow_home / "metadata.db"
    con = sqlite3.connect(db)  # turn the store back into a version-1 store
    for t in ("metrics", "models", "model_aliases", "alias_history"):
        con.execute(f"DROP TABLE {t}")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    from reelflow.store import _stores

    _stores.clear()
    assert models.register("after-migration", 1).version == 1
    assert Flow("Old").latest_run.data.y == 42  # old runs still read
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_registry_reaches_the_database_only_through_the_metadata_store():
    import inspect as pyinspect

    from reelflow.registry import _registry

    src = pyinspect.getsource(_registry)
    assert "sqlalchemy" not in src and "_schema" not in src and ".write(" not in src and ".read(" not in src
