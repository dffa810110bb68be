"""Cards: components, safe rendering, storage with the task (live and final), `reelflow card get`."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time

import pytest

from reelflow.cards import (
    Artifact,
    Image,
    Markdown,
    ProgressBar,
    Table,
    VegaChart,
    card,
    get_cards,
    preview,
    render_card_html,
)
from reelflow.errors import FlowDefinitionError, NotFoundError, ReelflowError

np = pytest.importorskip("numpy")


def _doc(*components) -> dict:
    return {"id": "c", "title": "T", "pathspec": "F/1/s/1", "attempt": 0, "created_at": 0,
            "components": [c.to_dict() for c in components]}


def test_table_from_rows_dicts_and_frames():
    pd = pytest.importorskip("pandas")
    assert Table([[1, "a"], [2, "b"]], headers=["id", "name"]).to_dict()["columns"] == ["id", "name"]
    d = Table([{"a": 1, "b": 2}, {"a": 3, "c": 4}]).to_dict()
    assert d["columns"] == ["a", "b", "c"] and d["rows"] == [[1, 2, None], [3, None, 4]]
    big = Table(pd.DataFrame({"x": range(2500), "y": 1.5})).to_dict()
    assert big["total_rows"] == 2500 and len(big["rows"]) == 1000 and big["columns"] == ["x", "y"]
    assert Table([{1: "int key"}]).to_dict()["rows"] == [["int key"]]


@pytest.mark.parametrize("src", ["array", "grey", "png", "pil", "figure"])
def test_image_sources_become_png(src):
    if src == "array":
        value = np.zeros((8, 9, 3), dtype=np.uint8)
    elif src == "grey":
        value = np.linspace(0, 1, 64).reshape(8, 8)
    elif src == "png":
        value = Image(np.ones((8, 8, 4), dtype=np.uint8)).to_dict()["png"]
        import base64

        value = base64.b64decode(value)
    elif src == "pil":
        pil = pytest.importorskip("PIL.Image")
        value = pil.new("RGB", (5, 4), "red")
    else:
        plt = pytest.importorskip("matplotlib.pyplot")
        value, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1], [1, 0])
    d = Image(value, label="pic").to_dict()
    import base64

    assert base64.b64decode(d["png"]).startswith(b"\x89PNG\r\n\x1a\n") and d["label"] == "pic"


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Table("not rows"), "Table takes a DataFrame or a list of rows"),
    (lambda: Image(b"GIF89a..."), "PNG signature"),
    (lambda: Image(object()), "cannot draw a object as an image"),
    (lambda: Image(np.zeros((2, 2, 5))), "shape"),
    (lambda: VegaChart(42), "Vega-Lite spec"),
    (lambda: VegaChart({"data": {"values": [object()]}}), "not JSON data"),
    (lambda: ProgressBar(max=0), "max must be a number > 0"),
    (lambda: Markdown(3), "Markdown takes a string"),
])
def test_component_errors_name_the_fix(make, match):
    with pytest.raises(ReelflowError, match=match):
        make()


def test_vega_chart_takes_an_altair_like_chart():
    class Chart:
        def to_dict(self):
            return {"mark": "bar", "data": {"values": [{"a": 1}]}}

    assert VegaChart(Chart()).to_dict()["spec"]["mark"] == "bar"


def test_progress_bar_clamps_and_updates():
    bar = ProgressBar(max=4, label="epochs")
    bar.update(9)
    assert bar.to_dict()["value"] == 4.0
    html_text = render_card_html(_doc(bar))
    assert 'value="4" max="4"' in html_text and "4 / 4 (100%)" in html_text


@pytest.mark.parametrize(("value", "kind"), [
    (3, "scalar"), ("text", "text"), (b"\x00\x01", "text"), ({"a": 1}, "dict"), ([1, 2], "list"),
    (np.arange(6).reshape(2, 3), "array"), (np.zeros((16, 16, 3), dtype=np.uint8), "image"), (object(), "other"),
])
def test_preview_kinds(value, kind):
    assert preview(value)["kind"] == kind


def test_preview_of_a_frame_is_first_rows_and_shape():
    pd = pytest.importorskip("pandas")
    p = preview(pd.DataFrame({"a": range(100)}))
    assert p["kind"] == "table" and p["shape"] == [100, 1] and len(p["rows"]) == 20
    arr = preview(np.zeros((1000, 3)))
    assert arr["shape"] == [1000, 3] and "values" not in arr
    assert preview(np.arange(4))["values"] == "[0, 1, 2, 3]"
    long = preview("x" * 10_000)
    assert long["truncated"] and len(long["value"]) == 2000 and long["length"] == 10_000


def test_hostile_content_renders_as_text():
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    page = render_card_html(_doc(
        Markdown(f"# {evil}\n[click](javascript:alert(3)) and [ok](https://example.org)\n```\n{evil}\n```"),
        Table([[evil]], headers=[evil]), Artifact({evil: evil}, name=evil), ProgressBar(label=evil),
        VegaChart({"title": "</script><script>alert(4)</script>", "mark": "point"}),
    ))
    body = page.split("<main", 1)[1].split("</main>", 1)[0]
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "javascript:" not in body.replace("[click](javascript:alert(3))", "")
    assert '<a href="https://example.org" rel="noopener noreferrer">ok</a>' in body
    assert evil in html.unescape(body)
    assert "</script><script>alert(4)" not in page  # the spec cannot close its script block


def test_markdown_subset():
    page = render_card_html(_doc(Markdown("# Title\n\nSome *em* and **strong** and `code`.\n\n- a\n- b\n\n1. one")))
    for frag in ("<h1>Title</h1>", "<em>em</em>", "<strong>strong</strong>", "<code>code</code>",
                 "<ul>\n<li>a</li>\n<li>b</li>\n</ul>", "<ol>\n<li>one</li>\n</ol>"):
        assert frag in page


def test_charts_carry_their_libraries_only_when_needed():
    assert "vegaEmbed" not in render_card_html(_doc(Markdown("x")))
    page = render_card_html(_doc(VegaChart({"mark": "point"})))
    assert "vegaEmbed" in page and "cdn" not in page.lower().replace("cdnjs", "")
    assert "src=\"http" not in page


def test_card_decorator_options_are_checked(load_flow):
    def start(self):
        pass

    with pytest.raises(FlowDefinitionError, match="type is 'default'"):
        card(type="fancy")(start)
    with pytest.raises(FlowDefinitionError, match="no option 'colour'"):
        card(colour="red")(start)
    with pytest.raises(FlowDefinitionError, match="id must be a non-empty string"):
        card(id="")(start)
    with pytest.raises(FlowDefinitionError, match="applied twice"):
        load_flow("""
        from reelflow.cards import card

        class TwiceFlow(FlowSpec):
            @card
            @card
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """)


def test_current_card_outside_a_flow():
    from reelflow import current

    with pytest.raises(ReelflowError, match="inside a running step"):
        current.card.append(Markdown("x"))


def _run(path, *args, env=None, timeout=180):
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "REELFLOW_PROGRESS": "0", **(env or {})}, cwd=str(path.parent))


CARD_FLOW = """
import os, time
from reelflow.cards import Markdown, ProgressBar, Table, card

class CardFlow(FlowSpec):
    @card
    @step
    def start(self):
        self.greeting = "<b>hi</b>"
        self.numbers = list(range(5))
        current.card.append(Markdown("# Start card"))
        current.card["extra"].append(Table([[1, 2]], headers=["a", "b"]))
        self.next(self.wait)

    @card(type="blank", id="live")
    @step
    def wait(self):
        bar = ProgressBar(max=2, label="waiting")
        current.card.append(bar)
        bar.update(1)
        current.card.refresh()
        gate = os.environ.get("GATE")
        deadline = time.time() + 120
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)
        bar.update(2)
        self.next(self.boom)

    @card
    @step
    def boom(self):
        current.card.append(Markdown("about to fail"))
        if os.environ.get("BOOM"):
            raise RuntimeError("boom")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CardFlow()
"""


def test_cards_are_stored_with_the_task_live_and_final(write_flow, tmp_path, reelflow_home):
    path = write_flow(CARD_FLOW)
    gate = tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, str(path), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "GATE": str(gate), "BOOM": "1", "REELFLOW_PROGRESS": "0"},
                            cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 120
        live = []
        while time.monotonic() < deadline and not live:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                live = get_cards("CardFlow/1/wait/2")
            except NotFoundError:
                pass
            time.sleep(0.1)
        assert live, "the refreshed card never appeared while the task ran"
        assert not live[0].final and live[0].id == "live"
        bar = [c for c in live[0].document()["components"] if c["type"] == "progress"][0]
        assert bar["value"] == 1.0
        gate.write_text("go")
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    final = get_cards("CardFlow/1/wait/2")
    assert final[0].final and [c for c in final[0].document()["components"]][0]["value"] == 2.0
    start = {c.id: c for c in get_cards("CardFlow/1/start/1")}
    assert set(start) == {"default", "extra"}
    comps = start["default"].document()["components"]
    names = [c["preview"]["name"] for c in comps if c["type"] == "artifact"]
    assert names == ["greeting", "numbers"]
    assert comps[-1] == {"type": "markdown", "text": "# Start card"}
    failed = get_cards("CardFlow/1/boom/3")  # a failed attempt keeps its card
    assert failed and "failed" in json.dumps(failed[0].document())
    assert get_cards("CardFlow/1/end/4") == []


def test_card_get_writes_one_offline_file(write_flow, tmp_path):
    flow = write_flow(CARD_FLOW)
    r = _run(flow, "run")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "card.html"
    cli = [sys.executable, "-m", "reelflow.cli", "card"]
    got = subprocess.run([*cli, "get", "CardFlow/1/start/1", str(out)], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Start card" in page and "&lt;b&gt;hi&lt;/b&gt;" in page
    assert "src=\"http" not in page and "href=\"http" not in page
    extra = subprocess.run([*cli, "get", "CardFlow/1/start/1", str(out), "--id", "extra"], capture_output=True,
                           text=True, timeout=60)
    assert extra.returncode == 0 and "<th>a</th>" in out.read_text()
    step = subprocess.run([*cli, "get", "CardFlow/1/wait", str(out)], capture_output=True, text=True, timeout=60)
    assert step.returncode == 0 and "waiting" in out.read_text()  # a step with one task names it
    listed = subprocess.run([*cli, "list", "CardFlow/1/start/1"], capture_output=True, text=True, timeout=60)
    assert "default" in listed.stdout and "extra" in listed.stdout
    for args, match in ((["CardFlow/1/end/4"], "has no card"), (["CardFlow/1"], "malformed"),
                        (["CardFlow/9/start/1"], "does not exist"),
                        (["CardFlow/1/start/1", "--id", "nope"], "its cards are default, extra")):
        bad = subprocess.run([*cli, "get", *args[:1], str(tmp_path / "x.html"), *args[1:]], capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode == 1 and match in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_gc_keeps_card_blobs(write_flow):
    from reelflow.store import get_store
    from reelflow.store._gc import collect_garbage

    r = _run(write_flow(CARD_FLOW), "run")
    assert r.returncode == 0, r.stderr
    collect_garbage(get_store(create=False), grace=0, dry_run=False)
    assert "Start card" in get_cards("CardFlow/1/start/1")[0].html()


def test_resumed_task_shows_the_cards_of_its_origin(write_flow):
    flow = write_flow(CARD_FLOW)
    first = _run(flow, "run", env={"BOOM": "1"})
    assert first.returncode == 1
    again = _run(flow, "resume", "--origin-run-id", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    cloned = get_cards("CardFlow/2/start/1")
    assert cloned and cloned[0].id == "default" and "Start card" in cloned[0].html()



def test_public_names():
    import reelflow
    import reelflow.cards
    import reelflow.ui

    for module in ("fastapi", "jinja2", "python_multipart"):
        pytest.importorskip(module)

    assert reelflow.card is reelflow.cards.card
    for mod in (reelflow.cards, reelflow.ui):
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{mod.__name__}.{name}"


def test_cards_and_the_runs_page_on_postgresql(write_flow, postgres_url):
    for module in ("fastapi", "jinja2", "python_multipart"):
        pytest.importorskip(module)
    from fastapi.testclient import TestClient

    from reelflow.store import get_store
    from reelflow.ui import create_app

    r = _run(write_flow(CARD_FLOW), "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {c.id for c in get_cards("CardFlow/1/start/1")} == {"default", "extra"}
    with TestClient(create_app(get_store()), base_url="http://127.0.0.1") as c:
        assert 'data-run-id="1"' in c.get("/?flow=CardFlow&status=succeeded").text
        assert "Start card" in c.get("/runs/CardFlow/1/start/1/cards/default").text
        assert "No runs match" in c.get("/?tag=%25").text  # LIKE wildcards in a tag are literal
