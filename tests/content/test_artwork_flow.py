"""The content example flow runs end to end."""

from pathlib import Path

from helpers import run_py

from reelflow import Flow

FLOW = Path(__file__).resolve().parents[2] / "examples" / "content" / "artwork_flow.py"


def test_artwork_flow_trains_evaluates_and_picks(tmp_path):
    p = run_py(FLOW, "run", "--n-logged", "4000", "--policies", '["LinUCB", "EpsilonGreedy"]')
    assert p.returncode == 0, p.stderr
    assert "best by DR" in p.stdout
    for stage in ("LinUCB: fitting on 4,000 logged impressions", "computing its artwork probabilities",
                  "fitting the reward model for DR", "EpsilonGreedy: off-policy estimates IPW"):
        assert stage in p.stdout, stage  # each task says what it is doing
    run = Flow("ArtworkFlow").latest_run
    table = run.data.table
    assert sorted(table.policy) == ["EpsilonGreedy", "LinUCB"]
    assert ((table["DR"] - table["true value"]).abs() < 0.03).all()
    assert run.data.random < table["true value"].min()
