"""The training and generation flows as real runs; review; approvals feed the next training."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from generate._gen import SIZE, write_sketches

from reelflow import Flow, models, namespace
from reelflow.cli import main

ENV = {"REELFLOW_GEN_THREADS": "1", "REELFLOW_PROGRESS": "0"}


def _flow(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", f"reelflow.generate.{module}", "run", *args], capture_output=True,
                       text=True, timeout=600, env={**os.environ, **ENV})
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def _train(*extra: str) -> subprocess.CompletedProcess:
    return _flow("train_flow", "--n-train", "48", "--n-test", "8", "--size", str(SIZE), "--epochs", "3",
                 "--width", "8", "--checkpoint-every", "1", *extra)


def _blob_files(home) -> set:
    return {p.name for p in (home / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_train_generate_review_and_the_loop_back(reelflow_home, tmp_path):
    namespace(None)
    _train()
    run = Flow("TrainBackgroundsFlow").latest_run
    assert run.successful
    train = run["train"].task
    df = train.metrics
    assert sorted(df[df["name"] == "loss"]["step"]) == [0, 1, 2]  # metrics per epoch
    assert len(df[df["name"] == "val_psnr"]) == 3
    assert sorted(train.data.checkpoints) == [0, 1, 2]  # checkpoints as artifacts
    from reelflow.runtime._checkpoint import checkpoint_rows  # and through @checkpoint, for retry / resume
    from reelflow.store import get_store

    assert [c["metadata"]["epoch"] for c in checkpoint_rows(get_store(), "TrainBackgroundsFlow", run.id)] == [2, 1, 0]
    ev = run["evaluate"].task.data
    assert set(ev.metrics) == {"psnr", "ssim", "kid"} and set(ev.baseline_metrics) == {"psnr", "ssim", "kid"}
    assert ev.registered == "backgrounds/1"
    assert models.get("backgrounds/1").metrics["psnr"] == pytest.approx(ev.metrics["psnr"])

    sketches, _ = write_sketches(tmp_path / "sk", 4)
    p = _flow("generate_flow", "--model", "backgrounds/1", "--sketches", str(tmp_path / "sk"), "--shards", "2")
    gen = Flow("GenerateFlow").latest_run
    outs = gen["join"].task.data.outputs
    assert len(outs) == 4 and gen["join"].task.data.generated == 4
    from reelflow.generate import get_output, load_output_image

    row = get_output(outs[0]["id"])
    lineage = row["lineage"]
    for field in ("model", "model_version", "input", "prompt", "negative_prompt", "seed", "steps", "guidance",
                  "scheduler", "created_at", "device", "licence"):
        assert field in lineage, field
    assert lineage["model_version"] == "backgrounds/1" and lineage["device"] == "cpu"
    assert load_output_image(outs[0]["id"]).shape == (SIZE, SIZE, 3)
    # the stored image is what the registered model gives for that sketch and seed
    by_name = {o["input"]: o for o in outs}
    model = models.load("backgrounds/1")
    first = by_name["sketch-000.png"]
    expected = model.generate(sketches[:1], seeds=[first["seed"]], device="cpu")[0]
    assert np.array_equal(load_output_image(first["id"]), expected)

    # an identical re-run generates and stores nothing new
    blobs = _blob_files(reelflow_home)
    _flow("generate_flow", "--model", "backgrounds/1", "--sketches", str(tmp_path / "sk"), "--shards", "2")
    rerun = Flow("GenerateFlow").latest_run["join"].task.data
    assert rerun.generated == 0 and [o["id"] for o in rerun.outputs] == [o["id"] for o in outs]
    # the re-run's own records (its artifacts, cards) are new blobs; no image is
    from reelflow.store import get_store

    store = get_store()
    new_values = [store.load(b) for b in _blob_files(reelflow_home) - blobs]
    assert not [v for v in new_values if isinstance(v, bytes) and v.startswith(b"\x89PNG")]
    assert not ({o["key"] for o in rerun.outputs} - blobs)

    # review from the command line: who and when recorded
    cli = CliRunner()
    ids = [o["id"] for o in outs]
    r = cli.invoke(main, ["review", "approve", str(ids[0]), str(ids[1])])
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["review", "reject", str(ids[2])])
    assert r.exit_code != 0 and "--reason" in r.output
    r = cli.invoke(main, ["review", "reject", str(ids[2]), "--reason", "sky is muddy"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["review", "list", "--status", "approved"])
    assert r.exit_code == 0 and "approved" in r.output and str(ids[2]) not in r.output.split("\n", 1)[1].split()[:1]
    r = cli.invoke(main, ["review", "show", str(ids[2])])
    assert "rejected" in r.output and "sky is muddy" in r.output and "by " in r.output
    r = cli.invoke(main, ["review", "show", "9999"])
    assert r.exit_code == 1 and "no generated output 9999" in r.output

    # approvals become a versioned training set, and the next training run includes them
    from reelflow.generate import approved_training_set

    ts = approved_training_set(size=SIZE)
    assert sorted(ts.output_ids) == sorted(ids[:2]) and ts.sketches.shape == (2, SIZE, SIZE)
    assert np.array_equal(ts.backgrounds[ts.output_ids.index(ids[0])], load_output_image(ids[0]))
    _train()
    nxt = Flow("TrainBackgroundsFlow").latest_run["start"].task.data
    assert nxt.n_approved == 2 and sorted(nxt.approved_ids) == sorted(ids[:2])
    assert nxt.training_set_version == ts.version and len(nxt.sketches) == 48 + 2
    cli.invoke(main, ["review", "approve", str(ids[3])])
    assert approved_training_set(size=SIZE).version != ts.version


def test_generation_fills_in_only_what_is_missing(reelflow_home, tmp_path):
    """A job that stopped part-way (here: its catalogue grew) generates only the missing images."""
    from generate._gen import tiny_model

    models.register("bg", tiny_model(epochs=1, n=8), alias="champion")
    write_sketches(tmp_path / "sk", 3)
    _flow("generate_flow", "--model", "bg@champion", "--sketches", str(tmp_path / "sk"), "--shards", "3")
    write_sketches(tmp_path / "sk", 2, seed=6, start=3)
    _flow("generate_flow", "--model", "bg@champion", "--sketches", str(tmp_path / "sk"), "--shards", "3")
    namespace(None)
    run = Flow("GenerateFlow").latest_run
    assert run["join"].task.data.generated == 2
    per_shard = sorted(t.data.generated for t in run["generate"])
    assert sum(per_shard) == 2 and len(per_shard) == 3


def test_bad_inputs_fail_with_one_line(reelflow_home, tmp_path):
    from generate._gen import tiny_model

    models.register("bg", tiny_model(epochs=1, n=8), alias="champion")
    folder = tmp_path / "sk"
    write_sketches(folder, 1)
    (folder / "readme.txt").write_text("not an image")
    p = _flow("generate_flow", "--model", "bg@champion", "--sketches", str(folder), check=False)
    assert p.returncode != 0 and "readme.txt is not an image" in p.stdout + p.stderr
    (folder / "readme.txt").unlink()
    p = _flow("generate_flow", "--model", "nosuch@champion", "--sketches", str(folder), check=False)
    assert p.returncode != 0 and "unknown model reference 'nosuch@champion'" in p.stdout + p.stderr


def test_resume_after_a_failed_shard_regenerates_only_what_is_missing(reelflow_home, tmp_path):
    from pathlib import Path

    from generate._gen import flaky_model

    from reelflow.generate import list_outputs

    tests_dir = str(Path(__file__).resolve().parents[1])
    marker = tmp_path / "fail-seed"
    marker.write_text("3")
    env = {**os.environ, **ENV, "REELFLOW_TEST_FAIL_SEED_FILE": str(marker),
           "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])}
    models.register("bg", flaky_model(), alias="champion")
    write_sketches(tmp_path / "sk", 4)
    args = ["--model", "bg@champion", "--sketches", str(tmp_path / "sk"), "--shards", "2", "--batch-size", "1"]
    # One worker: the shards run one after the other, in foreach order. With two at once, what shard 0
    # had stored when shard 1 failed depended on timing, because a failed task makes the runtime stop
    # its running siblings (on a loaded machine shard 0 was stopped before storing anything).
    p = subprocess.run([sys.executable, "-m", "reelflow.generate.generate_flow", "run", *args, "--max-workers", "1"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode != 0 and "injected failure on seed 3" in p.stdout + p.stderr
    # shard 0 (seeds 0, 2) finished; shard 1 stored seed 1, then died on seed 3
    namespace(None)
    failed = Flow("GenerateFlow").latest_run
    assert sorted(t.successful for t in failed["generate"]) == [False, True]
    assert sorted(r["lineage"]["seed"] for r in list_outputs(limit=None)) == [0, 1, 2]
    marker.unlink()
    p = subprocess.run([sys.executable, "-m", "reelflow.generate.generate_flow", "resume"], capture_output=True,
                       text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    namespace(None)
    run = Flow("GenerateFlow").latest_run
    assert run.successful and len(run["join"].task.data.outputs) == 4
    assert sorted(r["lineage"]["seed"] for r in list_outputs(limit=None)) == [0, 1, 2, 3]
    # the resumed run generated one image: the shards re-ran (resume re-runs the failed step's tasks),
    # found seeds 0, 1 and 2 stored and generated only seed 3
    assert run["join"].task.data.generated == 1
    assert sorted(t.data.generated for t in run["generate"]) == [0, 1]
