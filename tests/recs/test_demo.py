"""The main job: `reelflow demo` end to end on the bundled data."""

import subprocess
import sys

from reelflow import Flow


def demo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "reelflow.cli", "demo", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_demo_trains_compares_and_picks_a_champion(tmp_path):
    p = demo("--models", '["MostPopular", "EASE"]', cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Champion (best on validation)" in p.stdout and "because you watched" in p.stdout
    assert "reelflow runs show RecsDemoFlow/" in p.stdout
    for stage in ("Loading MovieLens", "Splitting", "EASE: tuning 3 candidate setting(s)", "refitting it on all",
                  "testing it on the held-out period", "EASE: test ndcg@10", "champion on validation ndcg@10"):
        assert stage in p.stdout, stage  # the demo says what it is doing at each stage
    assert "\r" not in p.stdout + p.stderr and "\x1b" not in p.stdout + p.stderr
    run = Flow("RecsDemoFlow").latest_run
    table = run.data.comparison
    assert sorted(table.model) == ["EASE", "MostPopular"]
    assert run.data.champion_name == table.model[0]
    assert table["test ndcg@10"].between(0, 1).all()
    assert len(run["train_model"].tasks()) == 2


def test_demo_rejects_unknown_model(tmp_path):
    p = demo("--models", '["Nope"]', "--quiet", cwd=tmp_path)
    assert p.returncode == 1
    assert "unknown model 'Nope'" in p.stderr


def test_demo_compares_the_hybrid_and_the_time_boxed_transformer_and_says_why(tmp_path):
    import pytest

    pytest.importorskip("torch")
    p = demo("--models", '["EASE", "HybridEASE", "SASRec"]', "--sasrec-budget", "2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "HybridEASE: test ndcg@10" in p.stdout and "SASRec: test ndcg@10" in p.stdout
    why = next(line.partition("Why ")[2] for line in p.stdout.splitlines() if "Why " in line)
    run = Flow("RecsDemoFlow").latest_run
    assert why.startswith(f"{run.data.champion_name} won: the best validation ndcg@10")
    assert "over the runner-up" in why and "SASRec trained" in why and "2 s budget" in why
    assert sorted(run.data.comparison.model) == ["EASE", "HybridEASE", "SASRec"]


def test_default_models_include_the_new_ones_where_they_fit():
    import importlib.util

    from reelflow.recs.demo_flow import DEFAULT_MODELS, GRIDS

    assert "HybridEASE" in DEFAULT_MODELS and set(DEFAULT_MODELS) <= set(GRIDS)
    assert ("SASRec" in DEFAULT_MODELS) == (importlib.util.find_spec("torch") is not None)
