"""``python flow.py run --with card``: a default card on every step (Metaflow's meaning): the task's
info, the run's parameters and the task's artifacts; a step's own @card wins."""

from __future__ import annotations

import os
import subprocess
import sys

FLOW = """
from reelflow import FlowSpec, Parameter, card, current, step
from reelflow.cards import Markdown


class WithCardFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5)

    @step
    def start(self):
        self.x = 41
        self.next(self.end)

    @card(type="blank", id="own")
    @step
    def end(self):
        current.card.append(Markdown("mine"))


if __name__ == "__main__":
    WithCardFlow()
"""


def _run(path, *args: str) -> None:
    env = {**os.environ, "REELFLOW_PROGRESS": "0"}
    r = subprocess.run([sys.executable, str(path), "run", *args], capture_output=True, text=True, timeout=180,
                       env=env, cwd=str(path.parent))
    assert r.returncode == 0, r.stdout + r.stderr


def test_with_card_puts_a_default_card_on_every_step(tmp_path):
    from reelflow.cards import get_cards

    path = tmp_path / "flow.py"
    path.write_text(FLOW)
    _run(path)
    assert get_cards("WithCardFlow/1/start/1") == []  # no card without --with card
    _run(path, "--with", "card", "--alpha", "0.7")
    [start] = get_cards("WithCardFlow/2/start/1")
    assert (start.id, start.type, start.final) == ("default", "default", True)
    comps = start.document()["components"]
    tables = [c for c in comps if c["type"] == "table"]
    assert ["pathspec", "WithCardFlow/2/start/1"] in tables[0]["rows"]
    assert ["status", "succeeded"] in tables[0]["rows"]
    assert tables[1]["columns"] == ["parameter", "value"] and ["alpha", "0.7"] in tables[1]["rows"]
    assert [c["preview"]["name"] for c in comps if c["type"] == "artifact"] == ["x"]  # alpha is a parameter
    assert "41" in start.html()
    [end] = get_cards("WithCardFlow/2/end/2")  # the step's own @card takes the place of --with card's
    assert (end.id, end.type) == ("own", "blank")
