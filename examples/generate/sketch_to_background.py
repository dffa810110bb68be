"""Sketches in, painted backgrounds out: train, generate, look at the result.

    python examples/generate/sketch_to_background.py            # ~3 minutes on 2 CPU cores
    python examples/generate/sketch_to_background.py --quick    # seconds: a tiny model, for a smoke test

1. runs ``TrainBackgroundsFlow`` (procedural scenes + approved outputs; metrics
   per epoch; the model is registered as ``backgrounds``, ``@champion`` when it
   beats the region-mean baseline on PSNR, SSIM and KID);
2. draws 16 new sketches (seeds never used in training) into ``sketches/``;
3. runs ``GenerateFlow`` over them (2 shards, fixed seeds, every PNG stored
   with its lineage) with the model just trained;
4. writes ``contact_sheet.png``: sketch | generated | ground truth per scene.

Then: ``reelflow review list``, ``reelflow review approve ID``, and run this
again: the next model trains on the approved images too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description="train a sketch-to-background model and generate 16 backgrounds")
    ap.add_argument("--out", default="generate-example", help="folder for sketches and the contact sheet")
    ap.add_argument("--quick", action="store_true", help="a tiny model (seconds): for smoke tests")
    args = ap.parse_args()

    from reelflow import Runner, models
    from reelflow.generate import contact_sheet, load_output_image, make_pairs, png_bytes
    from reelflow.generate import generate_flow, train_flow

    out = Path(args.out).resolve()
    size = 32 if args.quick else 64
    train_args = ({"n-train": 64, "n-test": 16, "size": size, "epochs": 2, "width": 8} if args.quick else
                  {"n-train": 768, "n-test": 64, "size": size, "epochs": 12, "width": 24, "time-budget": 150.0})
    print(f"1/3 training a {size}x{size} sketch-to-background model ...", flush=True)
    with Runner(train_flow.__file__, show_output=False) as r:
        train = r.run(**train_args).run
    ev = train["evaluate"].task.data
    print(f"    {ev.registered}: PSNR {ev.metrics['psnr']:.2f} dB (baseline {ev.baseline_metrics['psnr']:.2f}), "
          f"SSIM {ev.metrics['ssim']:.3f} ({ev.baseline_metrics['ssim']:.3f}), "
          f"KID {ev.metrics['kid']:.3f} ({ev.baseline_metrics['kid']:.3f})"
          + ("  -> champion" if ev.promoted else ""), flush=True)

    sketches, truth = make_pairs(16, seed=424_242, size=size)  # scenes the model never saw
    folder = out / "sketches"
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(sketches):
        (folder / f"scene-{i:02d}.png").write_bytes(png_bytes(s))
    print(f"2/3 generating 16 backgrounds from {folder} with {ev.registered} ...", flush=True)
    with Runner(generate_flow.__file__, show_output=False) as r:
        gen = r.run(model=ev.registered, sketches=str(folder), shards=2).run
    outputs = {o["input"]: o for o in gen["join"].task.data.outputs}
    generated = [load_output_image(outputs[f"scene-{i:02d}.png"]["id"]) for i in range(16)]
    images = out / "generated"
    images.mkdir(exist_ok=True)
    for i, img in enumerate(generated):
        (images / f"scene-{i:02d}.png").write_bytes(png_bytes(img))
    sheet = contact_sheet([sketches, generated, truth], out / "contact_sheet.png", scale=3 if size == 64 else 4)
    ids = sorted(o["id"] for o in outputs.values())
    print(f"3/3 done: run {gen.pathspec}; outputs {ids[0]}..{ids[-1]} are stored as PNG blobs with their lineage "
          f"(copies in {images})", flush=True)
    print(f"contact sheet (sketch | generated | ground truth): {sheet}")
    print("review them: reelflow review list; reelflow review approve ID; models: "
          f"{', '.join(v.spec for v in models.versions('backgrounds'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
