"""Train the sketch-to-background model, measure it against the naive baseline, register it.

    python -m reelflow.generate.train_flow run                      # ~2 minutes on 2 CPU cores
    python -m reelflow.generate.train_flow run --n-train 4000 --epochs 200 --time-budget 840

Data: procedural (sketch, background) pairs (:func:`reelflow.generate.make_pairs`)
plus every approved generated output (the review loop), recorded as the
``training_set_version`` artifact. Metrics per epoch (``loss``, held-out
``val_psnr``), checkpoints as artifacts, then PSNR / SSIM / KID (random-conv
features, see ``reelflow.generate._metrics``) of the model and of the
region-mean baseline on held-out scenes. The model is registered as
``backgrounds`` and becomes ``backgrounds@champion`` when it beats the baseline on
every metric and does not lose PSNR to the current champion.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, cast

from reelflow import FlowSpec, Parameter, card, checkpoint, current, resources, step


class TrainBackgroundsFlow(FlowSpec):
    """Sketch -> background: train, evaluate against the region-mean baseline, register."""

    n_train = Parameter("n-train", default=512, help="procedural training pairs")
    n_test = Parameter("n-test", default=64, help="held-out pairs (seeds disjoint from training)")
    size = Parameter("size", default=64, help="image side in pixels")
    epochs = Parameter("epochs", default=15, help="maximum epochs")
    width = Parameter("width", default=32, help="channels of the first U-Net level")
    time_budget = Parameter("time-budget", default=840.0, help="seconds of training at most (stops after that epoch)")
    checkpoint_every = Parameter("checkpoint-every", default=5, help="keep weights every N epochs as artifacts")
    include_approved = Parameter("include-approved", default=True, help="add approved generated outputs")
    model_name = Parameter("model-name", default="backgrounds", help="registry name")
    seed = Parameter("seed", default=0, help="seed of the data and of the weights")

    @step
    def start(self):
        """Build the training set (procedural + approved outputs) and the held-out set."""
        import numpy as np

        from reelflow.generate import approved_training_set, make_pairs

        sk, bg = make_pairs(self.n_train, seed=self.seed, size=self.size)
        self.test_sketches, self.test_backgrounds = make_pairs(self.n_test, seed=10_000 + self.seed, size=self.size)
        approved = approved_training_set(size=self.size) if self.include_approved else None
        self.n_approved = len(approved) if approved is not None else 0
        self.approved_ids = list(approved.output_ids) if approved is not None else []
        self.training_set_version = approved.version if approved is not None else "procedural-only"
        if self.n_approved:
            sk = np.concatenate([sk, approved.sketches])
            bg = np.concatenate([bg, approved.backgrounds])
        self.sketches, self.backgrounds = sk, bg
        print(f"training on {len(sk)} pairs ({self.n_train} procedural + {self.n_approved} approved, "
              f"training set {self.training_set_version}); {self.n_test} held-out", flush=True)
        self.next(self.train)

    @resources(gpu=1)
    @checkpoint
    @card
    @step
    def train(self):
        """Fit the U-Net (CUDA when a GPU is visible), logging loss and held-out PSNR per epoch.

        Every ``checkpoint-every`` epochs the model goes to ``current.checkpoint``: a retry
        or ``resume`` of a killed training continues from there (with a fresh optimiser)."""
        import os
        import pickle

        from reelflow.cards import ProgressBar, VegaChart
        from reelflow.generate import Sketch2Background, pick_device, psnr, set_threads

        set_threads()
        self.device = pick_device()
        model = Sketch2Background(size=self.size, width=self.width, epochs=self.epochs, time_budget=self.time_budget,
                                  random_state=self.seed)
        ckpt_file = os.path.join(current.checkpoint.directory, "model.pkl")
        if current.checkpoint.is_loaded:
            with open(ckpt_file, "rb") as f:
                model = pickle.load(f)  # noqa: S301 - this task's own checkpoint, hash-checked by the store
            print(f"continuing from the checkpoint of epoch {len(model.history_) - 1}", flush=True)
        bar = ProgressBar(max=self.epochs, label="epochs")
        current.card.append(bar)
        rows: list[dict] = []
        chart = VegaChart({"mark": "line", "data": {"values": rows}})
        current.card.append(chart)
        self.checkpoints = {}

        def on_epoch(epoch: int, row: dict) -> None:
            val = psnr(model.generate(self.test_sketches[:32], seeds=0), self.test_backgrounds[:32])
            current.log_metrics({"loss": row["loss"], "val_psnr": val}, step=epoch)
            rows.append({"epoch": epoch, "loss": row["loss"], "val_psnr": val})
            bar.update(epoch + 1)
            chart.update({"mark": "line", "data": {"values": rows}, "encoding": {
                "x": {"field": "epoch", "type": "quantitative"}, "y": {"field": "val_psnr", "type": "quantitative"}}})
            current.card.refresh()
            if (epoch + 1) % max(1, int(cast(Any, self.checkpoint_every))) == 0:
                self.checkpoints[epoch] = model.__getstate__()["weights_"]
                with open(ckpt_file + ".tmp", "wb") as f:
                    pickle.dump(model, f)
                os.replace(ckpt_file + ".tmp", ckpt_file)
                current.checkpoint.save(metadata={"epoch": epoch})
            print(f"epoch {epoch}: loss {row['loss']:.4f}, held-out PSNR {val:.2f} dB, {row['seconds']:.0f} s",
                  flush=True)

        t0 = time.perf_counter()
        done = len(getattr(model, "history_", []))
        model.epochs = max(0, int(cast(Any, self.epochs)) - done)  # the epochs left after a checkpoint
        model.fit(self.sketches, self.backgrounds, on_epoch=on_epoch)
        model.epochs = int(cast(Any, self.epochs))
        self.train_seconds = time.perf_counter() - t0
        self.history = model.history_
        self.model = model
        self.next(self.evaluate)

    @card
    @step
    def evaluate(self):
        """Held-out PSNR / SSIM / KID of the model and the region-mean baseline; register the model."""
        from reelflow import models
        from reelflow.cards import Image, Table
        from reelflow.errors import NotFoundError
        from reelflow.generate import RegionMeanBaseline, contact_sheet, evaluate_images

        generated = self.model.generate(self.test_sketches, seeds=0)
        base = RegionMeanBaseline().fit(self.sketches, self.backgrounds).generate(self.test_sketches)
        self.metrics = evaluate_images(generated, self.test_backgrounds)
        self.baseline_metrics = evaluate_images(base, self.test_backgrounds)
        current.log_metrics(self.metrics)
        current.log_metrics({f"baseline_{k}": v for k, v in self.baseline_metrics.items()})
        self.beats_baseline = (self.metrics["psnr"] > self.baseline_metrics["psnr"]
                               and self.metrics["ssim"] > self.baseline_metrics["ssim"]
                               and self.metrics["kid"] < self.baseline_metrics["kid"])
        try:
            champion = models.get(f"{self.model_name}@champion").metrics.get("psnr", float("-inf"))
        except NotFoundError:
            champion = float("-inf")
        promote = self.beats_baseline and self.metrics["psnr"] >= champion
        mv = models.register(self.model_name, self.model, alias="champion" if promote else None,
                             metrics={**self.metrics, "train_seconds": self.train_seconds},
                             description=f"training set {self.training_set_version}, {len(self.sketches)} pairs")
        self.registered = mv.spec
        self.promoted = promote
        table = [[k, f"{self.metrics[k]:.4f}", f"{self.baseline_metrics[k]:.4f}"] for k in ("psnr", "ssim", "kid")]
        current.card.append(Table(table, headers=["metric", "model", "region-mean baseline"]))
        with tempfile.TemporaryDirectory() as tmp:
            sheet = contact_sheet([self.test_sketches[:8], generated[:8], self.test_backgrounds[:8]],
                                  f"{tmp}/sheet.png")
            current.card.append(Image(sheet.read_bytes(), label="sketch | generated | ground truth"))
        print(f"model    {self.metrics}\nbaseline {self.baseline_metrics}\nregistered {mv.spec}"
              f"{' as champion' if promote else ''}", flush=True)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TrainBackgroundsFlow()
