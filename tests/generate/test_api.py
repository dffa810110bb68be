"""Public names, the missing-extra error, and approved outputs as bandit arms."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from generate._gen import SIZE, tiny_model

import reelflow.generate as gen


EXPECTED = {
    "make_scene", "make_pairs", "Scene", "MOODS", "Sketch2Background", "pick_device", "psnr", "ssim", "kid",
    "evaluate_images", "RegionMeanBaseline", "ImageInputError", "read_sketch", "png_bytes", "decode_png",
    "ResolvedModel", "DiffusersGenerator", "UnlicensedModelError", "resolve_model", "save_pipeline",
    "GenerationItem", "GenerationSettings", "request_key", "run_generation", "set_threads", "TrainingSet",
    "ArtworkArm", "approved_training_set", "add_artwork_arms", "load_output_image", "list_outputs", "get_output",
    "approve", "reject", "contact_sheet",
}


def test_public_names():
    assert set(gen.__all__) == EXPECTED and len(gen.__all__) == len(EXPECTED)
    for name in gen.__all__:
        assert getattr(gen, name) is not None, name
    assert "Sketch2Background" in dir(gen)


def test_missing_extra_names_the_install(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "diffusers"}:
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, _Block())
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", "import reelflow.generate"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode != 0
    assert "MissingExtraError" in p.stderr and "pip install 'reelflow[gen]'" in p.stderr
    assert "torch" in p.stderr and "diffusers" in p.stderr


def test_approved_outputs_become_bandit_arms(reelflow_home):
    pytest.importorskip("sklearn")
    from reelflow.content.bandits import BernoulliTS, LinUCB
    from reelflow.errors import ReelflowError
    from reelflow.generate import GenerationItem, GenerationSettings, approve, make_pairs, run_generation
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import get_store

    model = tiny_model(epochs=1, n=8)
    sk, _ = make_pairs(3, seed=2, size=SIZE)
    items = [GenerationItem(name=f"s{i}", seed=i, sketch=s) for i, s in enumerate(sk)]
    rows = run_generation(ResolvedModel(model, "test", "registry", "test/1", "test"), items,
                          GenerationSettings(device="cpu"), store=get_store(), verbose=False)
    ids = [r["id"] for r in rows]
    approve(ids[0])
    approve(ids[1])

    rng = np.random.default_rng(0)
    policy = LinUCB(n_actions=3, random_state=0)
    x = rng.normal(size=(50, 4))
    policy.update(x, rng.integers(0, 3, 50), rng.random(50))
    arms = gen.add_artwork_arms(policy, ids[:2])
    assert [a.action for a in arms] == [3, 4] and policy.n_actions == 5
    assert [a.output_id for a in arms] == ids[:2] and arms[0].features.shape == (10,)
    dist = policy.action_distribution(x[:5])
    assert dist.shape == (5, 5) and np.allclose(dist.sum(axis=1), 1)
    policy.update(x[:5], np.array([4, 4, 3, 3, 0]), np.ones(5))  # the new arms learn like the old

    ts = BernoulliTS(n_actions=2, random_state=0)
    ts.update(np.zeros((4, 1)), np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0]))
    gen.add_artwork_arms(ts, ids[:1])
    assert ts.n_actions == 3 and ts.action_distribution(np.zeros((2, 1))).shape[1] == 3

    with pytest.raises(ReelflowError, match="pending, not approved"):
        gen.add_artwork_arms(policy, [ids[2]])


def test_the_example_runs_and_writes_a_contact_sheet(reelflow_home, tmp_path):
    from pathlib import Path

    from PIL import Image

    example = Path(__file__).resolve().parents[2] / "examples" / "generate" / "sketch_to_background.py"
    p = subprocess.run([sys.executable, str(example), "--quick", "--out", str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path,
                       env={**os.environ, "REELFLOW_GEN_THREADS": "1", "REELFLOW_PROGRESS": "0"})
    assert p.returncode == 0, p.stdout + p.stderr
    sheet = tmp_path / "out" / "contact_sheet.png"
    assert f"contact sheet (sketch | generated | ground truth): {sheet}" in p.stdout
    w, h = Image.open(sheet).size
    assert w > 3 * 4 * SIZE and h > 4 * SIZE  # 16 scenes, 4 per row, three images each
    assert len(list((tmp_path / "out" / "generated").glob("*.png"))) == 16


def test_gc_keeps_generated_images_and_their_inputs(reelflow_home):
    from reelflow.generate import GenerationItem, GenerationSettings, load_output_image, make_pairs, run_generation
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import get_store
    from reelflow.store._gc import collect_garbage

    store = get_store()
    store.preflight()
    sk, _ = make_pairs(2, seed=1, size=SIZE)
    rows = run_generation(ResolvedModel(tiny_model(epochs=1, n=8), "t", "registry", "t/1", "x"),
                          [GenerationItem(name=str(i), seed=i, sketch=s) for i, s in enumerate(sk)],
                          GenerationSettings(device="cpu"), store=store, verbose=False)
    orphan = store.save(b"nobody refers to this").key
    collect_garbage(store, grace=0.0)
    assert not store.blobs.exists(orphan)  # gc ran and removed what nothing names
    for r in rows:
        assert load_output_image(r["id"]).shape == (SIZE, SIZE, 3)
        assert store.load(r["input_key"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_retouched_image_is_approved_in_place_of_the_output(reelflow_home, tmp_path):
    from click.testing import CliRunner

    from reelflow.cli import main
    from reelflow.generate import (
        GenerationItem,
        GenerationSettings,
        ImageInputError,
        approve,
        approved_training_set,
        get_output,
        load_output_image,
        make_pairs,
        png_bytes,
        run_generation,
    )
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import get_store

    sk, truth = make_pairs(2, seed=8, size=SIZE)
    rows = run_generation(ResolvedModel(tiny_model(epochs=1, n=8), "t", "registry", "t/1", "x"),
                          [GenerationItem(name=str(i), seed=i, sketch=s) for i, s in enumerate(sk)],
                          GenerationSettings(device="cpu"), store=get_store(), verbose=False)
    a, b = rows[0]["id"], rows[1]["id"]
    with pytest.raises(ImageInputError, match="must be an RGB image of the output's size"):
        approve(a, image=np.zeros((8, 8, 3), np.uint8))
    assert get_output(a)["status"] == "pending"  # a refused retouch records nothing
    approve(a, image=truth[0], reason="fixed the sky")
    (tmp_path / "fix.png").write_bytes(png_bytes(truth[1]))
    r = CliRunner().invoke(main, ["review", "approve", str(b), "--image", str(tmp_path / "fix.png")])
    assert r.exit_code == 0 and "retouched image stored" in r.output, r.output
    ts = approved_training_set(size=SIZE)
    assert ts.output_ids == (a, b)
    assert np.array_equal(ts.backgrounds[0], truth[0]) and np.array_equal(ts.backgrounds[1], truth[1])
    assert not np.array_equal(load_output_image(a), truth[0])  # the raw output is kept as it was
    r = CliRunner().invoke(main, ["review", "approve", str(a), str(b), "--image", str(tmp_path / "fix.png")])
    assert r.exit_code == 1 and "one ID at a time" in r.output


class _FailsOnSeed:
    """A model that fails on one seed: the job stops part-way through."""

    size = SIZE

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def generate(self, sketches, *, seeds, device=None):
        if self.bad in seeds:
            raise RuntimeError(f"injected failure on seed {self.bad}")
        return np.stack([np.full((SIZE, SIZE, 3), s, np.uint8) for s in seeds])


@pytest.mark.parametrize("commit_every", [0.0, 3600.0])
def test_rows_are_committed_together_and_a_failure_keeps_what_was_stored(reelflow_home, commit_every):
    from reelflow.generate import GenerationItem, GenerationSettings, list_outputs, make_pairs, run_generation
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import get_store

    sk, _ = make_pairs(6, seed=3, size=SIZE)
    items = [GenerationItem(name=str(i), seed=i, sketch=s) for i, s in enumerate(sk)]
    settings = GenerationSettings(device="cpu", batch_size=2)
    resolved = ResolvedModel(_FailsOnSeed(4), "t", "registry", "t/1", "x")
    with pytest.raises(RuntimeError, match="injected failure on seed 4"):
        run_generation(resolved, items, settings, store=get_store(), verbose=False, commit_every=commit_every)
    # batches (0, 1) and (2, 3) were stored before the failure: their rows are committed either way
    assert sorted(r["lineage"]["seed"] for r in list_outputs(limit=None)) == [0, 1, 2, 3]
    resolved = ResolvedModel(_FailsOnSeed(-1), "t", "registry", "t/1", "x")
    rows = run_generation(resolved, items, settings, store=get_store(), verbose=False, commit_every=commit_every)
    assert [r["reused"] for r in rows] == [True] * 4 + [False] * 2  # the next run makes only seeds 4 and 5
    assert [r["lineage"]["seed"] for r in rows] == list(range(6)) and len({r["id"] for r in rows}) == 6
