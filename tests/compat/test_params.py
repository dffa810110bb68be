"""Parameters the Metaflow way: separator=, IncludeFile's options and parsers, callable defaults."""

import json

FLOW = """
import json
from metaflow import FlowSpec, step, Parameter, IncludeFile, JSONType, Config


def default_owner(ctx):
    return "%s-%s-%s" % (ctx.flow_name, ctx.parameter_name, ctx.user_name)


class ParamFlow(FlowSpec):
    labels = Parameter("labels", default="a,b,c", separator=",")
    empty = Parameter("empty", default="", separator=",")
    owner = Parameter("owner", default=default_owner)
    size = Parameter("size", default=lambda ctx: len(ctx.parameter_name), type=int)
    settings = Config("settings", default_value='{"lr": 0.5}')
    lr = Parameter("lr", default=lambda ctx: str(ctx.configs.settings.lr))
    cfg = Parameter("cfg", default='{"k": 1}', type=JSONType)
    text = IncludeFile("text", default="notes.txt")
    latin = IncludeFile("latin", default="latin.txt", encoding="latin-1")
    raw = IncludeFile("raw", default="notes.txt", is_text=False)
    parsed = IncludeFile("parsed", default="data.json", parser=json.loads)
    dotted = IncludeFile("dotted", default="data.json", parser="json.loads")

    @step
    def start(self):
        self.out = {
            "labels": self.labels, "empty": self.empty, "owner": self.owner, "size": self.size, "lr": self.lr,
            "cfg": self.cfg, "text": self.text, "latin": self.latin,
            "raw": [type(self.raw).__name__, len(self.raw)], "parsed": self.parsed, "dotted": self.dotted,
        }
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ParamFlow()
"""


def _files(engine):
    (engine.root / "notes.txt").write_text("hello notes")
    (engine.root / "latin.txt").write_bytes("café".encode("latin-1"))
    (engine.root / "data.json").write_text(json.dumps({"rows": [1, 2]}))
    (engine.root / "other.json").write_text(json.dumps({"rows": [3]}))


READ = """
from metaflow import Flow, namespace
namespace(None)
emit(Flow("ParamFlow").latest_run["start"].task.data.out)
"""


def test_parameter_defaults(engine):
    _files(engine)
    path = engine.write("param_flow.py", FLOW)
    engine.run(path, "run")
    assert engine.client(READ) == [{
        "labels": ["a", "b", "c"], "empty": "", "owner": "ParamFlow-owner-tester", "size": 4, "lr": "0.5",
        "cfg": {"k": 1}, "text": "hello notes", "latin": "café", "raw": ["bytes", 11],
        "parsed": {"rows": [1, 2]}, "dotted": {"rows": [1, 2]},
    }]


def test_parameter_values_from_the_command_line(engine):
    _files(engine)
    path = engine.write("param_flow.py", FLOW)
    engine.run(path, "run", "--labels", "x;y,z", "--owner", "me", "--parsed", "other.json")
    out = engine.client(READ)[0]
    assert [out["labels"], out["owner"], out["parsed"]] == [["x;y", "z"], "me", {"rows": [3]}]


def test_bad_declarations_say_what_to_do():
    import pytest

    from reelflow import IncludeFile, Parameter
    from reelflow.errors import ParameterError
    from reelflow.flows import ParameterContext

    with pytest.raises(ParameterError, match="separator=.* works only for a str parameter"):
        Parameter("n", default=1, separator=",").check_definition()
    with pytest.raises(ParameterError, match="parser=.* must be a callable or a dotted name"):
        IncludeFile("f", parser="loads").check_definition()
    ctx = ParameterContext("F", "u", "f")
    with pytest.raises(ParameterError, match="cannot import 'no_such_module_xyz'"):
        IncludeFile("f", parser="no_such_module_xyz.parse").load(__file__, ctx)
    with pytest.raises(ParameterError, match="the parser 'loads' failed"):
        import json as _json

        IncludeFile("f", parser=_json.loads).load(__file__, ctx)
