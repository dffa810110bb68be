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
from concurrent.futures import Future, ThreadPoolExecutor, wait
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


def _pixels_digest(image: np.ndarray | None) -> str | None:
    import xxhash

    if image is None:
        return None
    a = np.ascontiguousarray(image)
    return xxhash.xxh3_128_hexdigest(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def request_key(model_version: str, item: GenerationItem, settings: GenerationSettings, scheduler: str,
                input_digest: str | None) -> str:
    """The identity of one request: same model version, input pixels, seed and settings, same key."""
    import xxhash

    ident = {"model": model_version, "input": input_digest, "prompt": item.prompt, "seed": int(item.seed),
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
    commit_every: float = 1.0,
) -> list[dict[str, Any]]:
    """Generate every item that has no output yet; return one output row per item, in order.

    Rows carry ``id``, ``key`` (the PNG's blob), ``lineage`` and ``reused`` (True when an
    identical earlier request already produced it). ``on_progress(done, total, generated)``
    is called after every batch. Rows are committed together, at most every ``commit_every``
    seconds and at the end (a failure part-way commits what was stored before it).
    """
    from .._progress import progress
    from ..store._review_db import review_tables
    from ._model import pick_device

    tables = review_tables(store.metadata)
    model = resolved.model
    desc = model.describe() if callable(getattr(model, "describe", None)) else {}
    scheduler = str(desc.get("scheduler") or "none")
    device = pick_device(settings.device)
    import torch

    threads = torch.get_num_threads()  # the caller's choice (the flow step calls set_threads())
    rows: list[dict[str, Any] | None] = [None] * len(items)
    # a request is identified by its input's pixels; the input's PNG blob is written only when it is generated
    inputs: list[str | None] = [None] * len(items)
    keys = [request_key(resolved.version, it, settings, scheduler, _pixels_digest(it.sketch)) for it in items]
    found = tables.find_many(keys)  # one query: what identical requests already produced
    todo: list[int] = []
    for i, rk in enumerate(keys):
        if rk in found:
            rows[i] = {**found[rk], "reused": True}
        else:
            todo.append(i)
    done = len(items) - len(todo)
    if on_progress is not None:
        on_progress(done, len(items), 0)
    lineage_base = resolved.lineage()
    counts = {"done": done, "generated": 0}
    # Rows of stored images wait here until the next commit (in the writer thread only).
    waiting: list[tuple[int, dict[str, Any]]] = []
    last_commit = [time.monotonic()]

    def commit() -> None:
        """Record the waiting rows in one transaction (their blobs are already written)."""
        if not waiting:
            return
        batch = list(waiting)
        for (i, _), row in zip(batch, tables.add_outputs([r for _, r in batch])):
            rows[i] = {**row, "reused": False}
        del waiting[:len(batch)]
        last_commit[0] = time.monotonic()

    def store_batch(batch: list[int], images: Any, now: float, seconds: float, bar: Any) -> None:
        """Encode and store one batch (in the writer thread, while the next batch generates); its rows
        are committed with the next commit, at most ``commit_every`` seconds later."""
        for i, img in zip(batch, images):
            item, rk = items[i], keys[i]
            if item.sketch is not None:
                inputs[i] = store.save(png_bytes(item.sketch)).key
            lineage = {**lineage_base, "input": item.name, "input_key": inputs[i], "prompt": item.prompt,
                       "negative_prompt": settings.negative_prompt, "seed": int(item.seed),
                       "steps": settings.steps, "guidance": settings.guidance, "scheduler": scheduler,
                       "device": device, "threads": threads, "created_at": now,
                       "seconds": round(seconds, 4), "pathspec": pathspec, "shape": list(np.asarray(img).shape)}
            data = png_bytes(np.asarray(img), {"reelflow:request": rk, "reelflow:model": resolved.version,
                                               "reelflow:seed": str(item.seed)})
            ref = store.save(data)
            waiting.append((i, {"request_key": rk, "key": ref.key, "size": len(data), "input_key": inputs[i],
                                "input_name": item.name, "model": resolved.ref, "pathspec": pathspec,
                                "lineage": lineage, "created_at": now, "user": store.config.user}))
        if time.monotonic() - last_commit[0] >= commit_every:
            commit()
        counts["generated"] += len(batch)
        counts["done"] += len(batch)
        bar.update(len(batch))
        if on_progress is not None:
            on_progress(counts["done"], len(items), counts["generated"])

    step = max(1, settings.batch_size)
    # Storing overlaps generating: PNG encoding, hashing and file writes release the GIL, so
    # with one writer thread the platform's own work hides behind the model's. Rows are
    # committed in one transaction per ``commit_every`` seconds, not per batch: each commit
    # costs a syncfs (blobs durable before rows name them) and a database transaction. A
    # failure commits what was stored before it; a kill loses at most that long of rows,
    # whose images the next run regenerates (their blobs are found, not written again).
    with progress(total=len(todo), desc=f"generating with {resolved.ref}", unit="image", verbose=verbose) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="reelflow-gen-writer") as writer:
        pending: Future[None] | None = None
        try:
            for b in range(0, len(todo), step):
                batch = todo[b:b + step]
                batch_items = [items[i] for i in batch]
                seeds = [it.seed for it in batch_items]
                t0 = time.time()
                if batch_items[0].sketch is not None:
                    images = model.generate(np.stack([np.asarray(it.sketch) for it in batch_items]), seeds=seeds,
                                            device=device)
                else:
                    images = model.generate([it.prompt for it in batch_items], seeds=seeds, steps=settings.steps,
                                            guidance=settings.guidance, negative_prompt=settings.negative_prompt,
                                            device=device)
                now = time.time()
                if pending is not None:
                    pending.result()  # at most one batch in flight; its errors surface here
                pending = writer.submit(store_batch, batch, images, now, (now - t0) / len(batch), bar)
            if pending is not None:
                pending.result()
        except BaseException:
            if pending is not None:
                wait([pending])  # the batch in flight, if any, is stored before its rows are committed
            try:
                writer.submit(commit).result()  # what was stored before the failure is kept
            except Exception:  # noqa: BLE001 - the first error is the one to show
                pass
            raise
        writer.submit(commit).result()
    return [r for r in rows if r is not None]
