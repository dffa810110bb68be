"""The generation core shared by the generation flow and the server: batched, seeded,
content-addressed, skipping what an identical request already produced.

Each item of a job is one *request*: an input (a sketch's pixels, or a prompt),
a seed and the settings (steps, guidance, negative prompt, scheduler, size) for
one model version. Its ``request_key`` hashes all of that; an output row with that
key means the image exists, so it is neither generated nor stored again. Images
are stored as PNG bytes, one content-addressed blob each, and recorded with
their lineage (model version, input, prompt, seed, steps, guidance, scheduler,
time, device).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._images import png_bytes
from ._sources import ResolvedModel

__all__ = ["GenerationItem", "GenerationSettings", "request_key", "run_generation", "set_threads"]


@dataclass(frozen=True)
class GenerationItem:
    """One input of a job: ``name`` plus either ``sketch`` (H, W) uint8 or ``prompt``; its ``seed``."""

    name: str
    seed: int
    sketch: np.ndarray | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class GenerationSettings:
    """Settings every image of a job shares (part of each request's identity)."""

    steps: int = 20
    guidance: float = 7.5
    negative_prompt: str | None = None
    batch_size: int = 8
    device: str = "auto"


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``REELFLOW_GEN_THREADS``, else the CPUs this
    process may use (one thread per core: more only contends). Returns the number set."""
    import torch

    n = threads or int(os.environ.get("REELFLOW_GEN_THREADS", "0") or 0) or len(os.sched_getaffinity(0))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def request_key(model_version: str, item: GenerationItem, settings: GenerationSettings, scheduler: str,
                input_key: str | None) -> str:
    """The identity of one request: same model version, input, seed and settings, same key."""
    import xxhash

    ident = {"model": model_version, "input": input_key, "prompt": item.prompt, "seed": int(item.seed),
             "steps": settings.steps, "guidance": settings.guidance, "negative_prompt": settings.negative_prompt,
             "scheduler": scheduler}
    return xxhash.xxh3_128_hexdigest(json.dumps(ident, sort_keys=True).encode())


def run_generation(
    resolved: ResolvedModel,
    items: Sequence[GenerationItem],
    settings: GenerationSettings,
    *,
    store: Any,
    pathspec: str | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    verbose: bool | None = None,
) -> list[dict[str, Any]]:
    """Generate every item that has no output yet; return one output row per item, in order.

    Rows carry ``id``, ``key`` (the PNG's blob), ``lineage`` and ``reused`` (True when an
    identical earlier request already produced it). ``on_progress(done, total, generated)``
    is called after every batch.
    """
    from .._progress import progress
    from ..store._review_db import review_tables
    from ._model import pick_device

    tables = review_tables(store.metadata)
    model = resolved.model
    desc = model.describe() if callable(getattr(model, "describe", None)) else {}
    scheduler = str(desc.get("scheduler") or "none")
    device = pick_device(settings.device)
    threads = set_threads()
    rows: list[dict[str, Any] | None] = [None] * len(items)
    todo: list[tuple[int, str, str | None]] = []
    for i, item in enumerate(items):
        input_key = store.save(png_bytes(item.sketch)).key if item.sketch is not None else None
        rk = request_key(resolved.version, item, settings, scheduler, input_key)
        found = tables.find(rk)
        if found is not None:
            found["reused"] = True
            rows[i] = found
        else:
            todo.append((i, rk, input_key))
    done = len(items) - len(todo)
    if on_progress is not None:
        on_progress(done, len(items), 0)
    generated = 0
    with progress(total=len(todo), desc=f"generating with {resolved.ref}", unit="image", verbose=verbose) as bar:
        for b in range(0, len(todo), max(1, settings.batch_size)):
            batch = todo[b:b + settings.batch_size]
            batch_items = [items[i] for i, _, _ in batch]
            seeds = [it.seed for it in batch_items]
            t0 = time.time()
            if batch_items[0].sketch is not None:
                images = model.generate(np.stack([np.asarray(it.sketch) for it in batch_items]), seeds=seeds, device=device)
            else:
                images = model.generate([it.prompt for it in batch_items], seeds=seeds, steps=settings.steps,
                                        guidance=settings.guidance, negative_prompt=settings.negative_prompt,
                                        device=device)
            seconds = (time.time() - t0) / len(batch)
            for (i, rk, input_key), item, img in zip(batch, batch_items, images):
                lineage = {**resolved.lineage(), "input": item.name, "input_key": input_key, "prompt": item.prompt,
                           "negative_prompt": settings.negative_prompt, "seed": int(item.seed),
                           "steps": settings.steps, "guidance": settings.guidance, "scheduler": scheduler,
                           "device": device, "threads": threads, "created_at": time.time(),
                           "seconds": round(seconds, 4), "pathspec": pathspec,
                           "shape": list(np.asarray(img).shape)}
                data = png_bytes(np.asarray(img), {"reelflow:request": rk, "reelflow:model": resolved.version,
                                                   "reelflow:seed": str(item.seed)})
                ref = store.save(data)
                row = tables.add_output(request_key=rk, key=ref.key, size=len(data), input_key=input_key,
                                        input_name=item.name, model=resolved.ref, pathspec=pathspec,
                                        lineage=lineage, created_at=time.time(), user=store.config.user)
                row["reused"] = False
                rows[i] = row
                generated += 1
            done += len(batch)
            bar.update(len(batch))
            if on_progress is not None:
                on_progress(done, len(items), generated)
    return [r for r in rows if r is not None]
