"""Names a Metaflow user imports: cards, the client's roots, ``metaflow.exception`` and ``current``."""

FLOW = """
from metaflow import FlowSpec, step, Parameter, current, card
from metaflow.cards import Markdown, Table, Image, VegaChart, ProgressBar, Artifact
from metaflow.cards import PythonCode, ValueBox, JSONViewer, YAMLViewer, Error


class NamesFlow(FlowSpec):
    alpha = Parameter("alpha", default=1)
    beta = Parameter("beta", default="x")

    @card(type="blank")
    @step
    def start(self):
        current.card.append(Markdown("# hello"))
        current.card.append(Table([[1, 2]], headers=["a", "b"]))
        current.card.append(ProgressBar(max=10, value=3))
        current.card.append(Artifact({"k": 1}))
        current.card.append(PythonCode(code_string="answer_xyz = 42"))
        current.card.append(ValueBox(title="box_title_xyz", value=7))
        current.card.append(JSONViewer({"json_key_xyz": 1}))
        current.card.append(YAMLViewer({"yaml_key_xyz": 2}))
        try:
            raise ValueError("error_text_xyz")
        except ValueError as exc:
            current.card.append(Error(exc))
        self.names = sorted(current.parameter_names)
        self.prod = getattr(current, "is_production", False)  # Metaflow has it only under @project
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NamesFlow()
"""

CLIENT = """
import metaflow
from metaflow import Flow, Run, Metaflow, DataArtifact, get_metadata, metadata, namespace, current
from metaflow.cards import get_cards, Markdown, Table, Image, VegaChart, ProgressBar, Artifact
from metaflow.exception import (MetaflowException, MetaflowNotFound, MetaflowNamespaceMismatch,
                                MetaflowInvalidPathspec, MetaflowInternalError, MetaflowExceptionWrapper)

namespace("user:someone-else")
emit([f.id for f in Metaflow().flows])  # only flows with a run in the namespace
namespace(None)
emit(get_metadata().split("@")[0])
emit(metadata("local").split("@")[0])
emit([f.id for f in Metaflow().flows])
run = Flow("NamesFlow").latest_run
task = run["start"].task
emit(task.data.names)
emit(task.data.prod)
emit(DataArtifact(task.pathspec + "/names").data)
emit(len(get_cards(task)) >= 1)
html = get_cards(task)[0].get()
emit([w for w in ("answer_xyz", "box_title_xyz", "json_key_xyz", "yaml_key_xyz", "error_text_xyz") if w not in html])
emit(current.is_running_flow)

def kind(call):
    try:
        call()
    except MetaflowNamespaceMismatch:
        return "mismatch"
    except MetaflowInvalidPathspec:
        return "invalid"
    except MetaflowNotFound:
        return "notfound"
    except MetaflowException:
        return "other"
    return "none"

emit(kind(lambda: Flow("NoSuchFlow")))
emit(kind(lambda: Run("NamesFlow/99999")))
emit(kind(lambda: Run("NamesFlow")))
namespace("user:someone-else")
emit(kind(lambda: Run(run.pathspec)))
emit(issubclass(MetaflowInternalError, MetaflowException))
try:
    raise MetaflowException(msg="custom")
except MetaflowException as exc:
    emit(str(exc))
"""


def test_names_import_and_behave(engine):
    path = engine.write("names_flow.py", FLOW)
    engine.run(path, "run")
    out = engine.client(CLIENT)
    missing = out.pop(8)  # words of the extra components not found in the card's HTML
    assert missing == [] or engine.name == "metaflow"  # Metaflow's HTML holds its data base64-encoded
    assert out == [
        [], "local", "local", ["NamesFlow"], ["alpha", "beta"], False, ["alpha", "beta"], True, False,
        "notfound", "notfound", "invalid", "mismatch", True, "custom",
    ]


def test_metadata_rejects_a_service(monkeypatch, tmp_path):
    import pytest

    from reelflow import ReelflowError, get_metadata, metadata
    from reelflow.client import default_metadata

    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "a"))
    with pytest.raises(ReelflowError, match="metadata service is not used"):
        metadata("service@http://example.invalid")
    assert metadata(f"local@{tmp_path / 'b'}") == f"local@{tmp_path / 'b'}"
    assert default_metadata() == get_metadata() == f"local@{tmp_path / 'a'}"
