"""Content generation: sketch-to-background models, generation jobs, review, and the loop back.

::

    from reelflow.generate import make_pairs, Sketch2Background, evaluate_images

    sketches, backgrounds = make_pairs(512, seed=0, size=64)     # procedural, offline
    model = Sketch2Background(epochs=30).fit(sketches, backgrounds)
    images = model.generate(sketches[:4], seeds=[0, 1, 2, 3])    # same seed, same image

The flows (``reelflow.generate.train_flow``: train, evaluate against the
region-mean baseline, register ``backgrounds@champion``;
``reelflow.generate.generate_flow``: shard a catalogue over a foreach and store
every image with its lineage), ``reelflow review`` and ``reelflow serve`` build
on these. Needs ``pip install 'reelflow[gen]'`` (torch, diffusers, pillow);
install PyTorch's CPU wheel first where there is no GPU.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._extras import require

require("gen", "reelflow.generate")

__all__ = [
    "make_scene",
    "make_pairs",
    "Scene",
    "MOODS",
    "Sketch2Background",
    "pick_device",
    "psnr",
    "ssim",
    "kid",
    "evaluate_images",
    "RegionMeanBaseline",
    "ImageInputError",
    "read_sketch",
    "png_bytes",
    "decode_png",
    "ResolvedModel",
    "DiffusersGenerator",
    "UnlicensedModelError",
    "resolve_model",
    "save_pipeline",
    "GenerationItem",
    "GenerationSettings",
    "request_key",
    "run_generation",
    "set_threads",
    "TrainingSet",
    "ArtworkArm",
    "approved_training_set",
    "add_artwork_arms",
    "load_output_image",
    "list_outputs",
    "get_output",
    "approve",
    "reject",
    "contact_sheet",
]

_LAZY = {
    "make_scene": "_scenes", "make_pairs": "_scenes", "Scene": "_scenes", "MOODS": "_scenes",
    "Sketch2Background": "_model", "pick_device": "_model",
    "psnr": "_metrics", "ssim": "_metrics", "kid": "_metrics", "evaluate_images": "_metrics",
    "RegionMeanBaseline": "_metrics",
    "ImageInputError": "_images", "read_sketch": "_images", "png_bytes": "_images", "decode_png": "_images",
    "ResolvedModel": "_sources", "DiffusersGenerator": "_sources", "UnlicensedModelError": "_sources",
    "resolve_model": "_sources", "save_pipeline": "_sources",
    "GenerationItem": "_jobs", "GenerationSettings": "_jobs", "request_key": "_jobs", "run_generation": "_jobs",
    "set_threads": "_jobs",
    "TrainingSet": "_loop", "ArtworkArm": "_loop", "approved_training_set": "_loop", "add_artwork_arms": "_loop",
    "load_output_image": "_loop",
    "list_outputs": "_review", "get_output": "_review", "approve": "_review", "reject": "_review",
    "contact_sheet": "_sheet",
}

if TYPE_CHECKING:
    from ._images import ImageInputError, decode_png, png_bytes, read_sketch
    from ._jobs import GenerationItem, GenerationSettings, request_key, run_generation, set_threads
    from ._loop import ArtworkArm, TrainingSet, add_artwork_arms, approved_training_set, load_output_image
    from ._metrics import RegionMeanBaseline, evaluate_images, kid, psnr, ssim
    from ._model import Sketch2Background, pick_device
    from ._review import approve, get_output, list_outputs, reject
    from ._scenes import MOODS, Scene, make_pairs, make_scene
    from ._sheet import contact_sheet
    from ._sources import DiffusersGenerator, ResolvedModel, UnlicensedModelError, resolve_model, save_pipeline


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'reelflow.generate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
