"""A tiny random diffusers pipeline, built from configs (no network): save/load, licence, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

import generate._gen  # noqa: F401  (skips without the gen extra; one thread)

from reelflow.generate import DiffusersGenerator, UnlicensedModelError, resolve_model, save_pipeline


def _tiny_pipeline():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    import torch

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20))


def test_pipeline_round_trips_through_a_local_directory(tmp_path):
    pipe = _tiny_pipeline()
    path = save_pipeline(pipe, tmp_path / "tiny", licence="apache-2.0", provenance={"made": "test, random weights"})
    assert (path / "model_index.json").is_file()
    resolved = resolve_model(str(path))
    assert resolved.kind == "path" and resolved.licence == "apache-2.0"
    assert resolved.provenance["made"] == "test, random weights" and resolved.version.startswith("dir:")
    gen = resolved.model
    assert isinstance(gen, DiffusersGenerator) and gen.scheduler == "DDPMScheduler"
    a = gen.generate([None, None], seeds=[1, 2], steps=3)
    b = gen.generate([None, None], seeds=[1, 2], steps=3)
    assert a.shape == (2, 8, 8, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # same seeds, same images
    assert not np.array_equal(a[0], a[1])
    # the loaded weights are the saved ones: the in-memory pipeline gives the same images
    direct = DiffusersGenerator(pipe).generate([None, None], seeds=[1, 2], steps=3)
    assert np.array_equal(a, direct)


def test_a_model_without_licence_is_refused_unless_allowed(tmp_path):
    pipe = _tiny_pipeline()
    pipe.save_pretrained(str(tmp_path / "nolic"))
    with pytest.raises(UnlicensedModelError, match="records no licence"):
        resolve_model(str(tmp_path / "nolic"))
    assert resolve_model(str(tmp_path / "nolic"), allow_unlicensed=True).licence is None
    (tmp_path / "nolic" / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    assert resolve_model(str(tmp_path / "nolic")).licence == "mit"  # the model card's field
    (tmp_path / "nolic" / "reelflow-model.json").write_text(json.dumps({"licence": "cc-by-4.0"}))
    assert resolve_model(str(tmp_path / "nolic")).licence == "cc-by-4.0"


def test_unknown_references_name_the_fix(tmp_path):
    from reelflow.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown model reference 'nosuch@champion'"):
        resolve_model("nosuch@champion")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no model_index.json"):
        resolve_model(str(tmp_path / "empty"))


def test_a_pipeline_from_a_directory_runs_as_a_generation_job(tmp_path, reelflow_home):
    from reelflow.generate import GenerationItem, GenerationSettings, load_output_image, run_generation
    from reelflow.store import get_store

    path = save_pipeline(_tiny_pipeline(), tmp_path / "tiny", licence="apache-2.0")
    resolved = resolve_model(str(path))
    store = get_store()
    store.preflight()
    items = [GenerationItem(name=f"p{i}", seed=10 + i, prompt=f"a quiet lake at dusk, take {i}") for i in range(3)]
    settings = GenerationSettings(steps=2, guidance=5.0, negative_prompt="people", batch_size=2, device="cpu")
    rows = run_generation(resolved, items, settings, store=store, verbose=False)
    lin = rows[0]["lineage"]
    assert lin["scheduler"] == "DDPMScheduler" and lin["steps"] == 2 and lin["guidance"] == 5.0
    assert lin["prompt"] == "a quiet lake at dusk, take 0" and lin["negative_prompt"] == "people"
    assert lin["seed"] == 10 and lin["licence"] == "apache-2.0" and lin["model_version"].startswith("dir:")
    assert load_output_image(rows[0]["id"]).shape == (8, 8, 3)
    again = run_generation(resolved, items, settings, store=store, verbose=False)
    assert all(r["reused"] for r in again) and [r["key"] for r in again] == [r["key"] for r in rows]
