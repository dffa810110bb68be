"""A generation job: a catalogue of sketches (or prompts) through a model, sharded over a foreach.

    python -m reelflow.generate.generate_flow run --model backgrounds@champion --sketches DIR
    python -m reelflow.generate.generate_flow run --model ./tiny-pipeline --prompts prompts.txt --steps 20

Every image is a PNG blob (content-addressed) with its lineage in the
``generated`` table (model version, input, prompt, seed, steps, guidance,
scheduler, time, device). A request identical to an earlier one (same model
version, input, seed and settings) is not generated again, so re-running a job
after a kill, or ``resume``, regenerates only what is missing; an identical
re-run stores nothing new. Bad inputs (not an image, wrong size or mode) fail
the ``start`` step with one message naming the file, before any work.
"""

from __future__ import annotations

from reelflow import FlowSpec, Parameter, card, current, resources, step


class GenerateFlow(FlowSpec):
    """Generate one image per catalogue entry with fixed seeds; store each with its lineage."""

    model = Parameter("model", default="backgrounds@champion", help="NAME@ALIAS, a diffusers directory or a hub id")
    sketches = Parameter("sketches", default="", help="folder of sketch PNGs (grayscale, the model's size)")
    prompts = Parameter("prompts", default="", help="text file, one prompt per line (text-to-image models)")
    seed = Parameter("seed", default=0, help="seed of the first image; image i uses seed + i")
    steps = Parameter("steps", default=20, help="denoising steps (diffusion models)")
    guidance = Parameter("guidance", default=7.5, help="classifier-free guidance scale (text-to-image)")
    negative_prompt = Parameter("negative-prompt", default="", help="negative prompt (text-to-image)")
    shards = Parameter("shards", default=2, help="parallel tasks")
    batch_size = Parameter("batch-size", default=8, help="images per forward pass")
    allow_unlicensed = Parameter("allow-unlicensed", default=False, help="use a model that records no licence")

    @step
    def start(self):
        """Read and check the catalogue, resolve the model once (fails fast), split into shards."""
        from pathlib import Path

        from reelflow.errors import ParameterError
        from reelflow.generate import read_sketch, resolve_model

        if bool(self.sketches) == bool(self.prompts):
            raise ParameterError("give exactly one of --sketches DIR (sketch-to-image) or --prompts FILE")
        resolved = resolve_model(self.model, allow_unlicensed=self.allow_unlicensed)
        self.model_version = resolved.version
        self.licence = resolved.licence
        items = []
        if self.sketches:
            folder = Path(self.sketches)
            files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
            if not files:
                raise ParameterError(f"--sketches {folder}: no files there; give a folder of sketch PNGs")
            size = getattr(resolved.model, "size", None)
            if size is None:
                raise ParameterError(f"model {self.model} does not take sketches (it has no size); use --prompts")
            for i, p in enumerate(files):
                items.append({"name": p.name, "seed": self.seed + i, "sketch": read_sketch(p, size)})
        else:
            lines = [ln.strip() for ln in Path(self.prompts).read_text().splitlines() if ln.strip()]
            if not lines:
                raise ParameterError(f"--prompts {self.prompts}: the file has no prompts")
            items = [{"name": f"prompt-{i}", "seed": self.seed + i, "prompt": t} for i, t in enumerate(lines)]
        n = max(1, min(int(self.shards), len(items)))
        self.catalogue_size = len(items)
        self.shard_items = [items[i::n] for i in range(n)]
        print(f"{len(items)} inputs in {n} shards; model {self.model} ({resolved.version}, licence "
              f"{resolved.licence or 'none recorded'})", flush=True)
        self.next(self.generate, foreach="shard_items")

    @resources(gpu=1)
    @card
    @step
    def generate(self):
        """Generate this shard's missing images in batches; record each with its lineage."""
        from reelflow.cards import Markdown, ProgressBar
        from reelflow.generate import GenerationItem, GenerationSettings, resolve_model, run_generation, set_threads
        from reelflow.store import get_store

        set_threads()  # one per core this task may use (REELFLOW_GEN_THREADS overrides)
        items = [GenerationItem(name=d["name"], seed=d["seed"], sketch=d.get("sketch"), prompt=d.get("prompt"))
                 for d in self.input]
        resolved = resolve_model(self.model, allow_unlicensed=self.allow_unlicensed)
        settings = GenerationSettings(steps=int(self.steps), guidance=float(self.guidance),
                                      negative_prompt=self.negative_prompt or None, batch_size=int(self.batch_size))
        bar = ProgressBar(max=max(1, len(items)), label="images")
        note = Markdown(f"Generating {len(items)} images with `{self.model}`")
        current.card.append(note)
        current.card.append(bar)

        def on_progress(done: int, total: int, generated: int) -> None:
            bar.update(done)
            current.card.refresh()

        rows = run_generation(resolved, items, settings, store=get_store(), pathspec=current.pathspec,
                              on_progress=on_progress)
        self.outputs = [{"id": r["id"], "key": r["key"], "input": r["input_name"], "seed": r["lineage"]["seed"],
                         "reused": r["reused"]} for r in rows]
        self.generated = sum(not r["reused"] for r in rows)
        print(f"shard {current.task_id}: {self.generated} generated, {len(rows) - self.generated} already existed",
              flush=True)
        self.next(self.join)

    @step
    def join(self, inputs):
        """Gather every shard's outputs, in catalogue order of ids."""
        self.outputs = sorted((o for i in inputs for o in i.outputs), key=lambda o: o["id"])
        self.generated = sum(i.generated for i in inputs)
        self.model_version = inputs[0].model_version
        print(f"{len(self.outputs)} outputs ({self.generated} new); review them with `reelflow review list`",
              flush=True)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GenerateFlow()
