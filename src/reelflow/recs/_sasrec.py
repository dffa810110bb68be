"""``SASRec``: a transformer over each member's viewing sequence that predicts the next title.

Needs the ``torch`` extra (``pip install 'reelflow[torch]'``), imported only when
a SASRec fits or scores: ``import reelflow.recs`` never loads torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._extras import require
from .._progress import note, progress
from ._base import R, RecommenderBase
from ._interactions import Interactions

__all__ = ["SASRec"]

_LOSSES = ("ce", "sampled_softmax", "gbce")
_VALID_USERS = 2048  # validation users scored after each epoch (a fixed random sample)
_CHECKPOINT = "sasrec-checkpoint.npz"


class SASRec(RecommenderBase):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), trained as "SASRec+".

    Each user's interactions, ordered by timestamp, form a sequence; a causal
    transformer reads it and predicts the next item at every position. The default
    loss is a softmax over the **whole catalogue** (Klenitskiy & Vasilev 2023 show
    it beats BERT4Rec and sampled BCE); ``loss="sampled_softmax"`` or ``"gbce"``
    (Petrov & Macdonald 2023) use ``n_negatives`` items shared by the batch instead,
    for large catalogues. A user's recommendations come from their latest
    ``max_len`` interactions in the training data; users without history get the
    popularity fallback, as with every model here.

    Training stops at the first of ``max_epochs``, ``time_budget`` seconds, or
    ``patience`` epochs without a better validation NDCG@10 (each user's last
    training item is held out for it; the best epoch's weights are kept). After
    each epoch it writes a checkpoint to ``checkpoint_dir`` (inside a flow, by
    default, a folder named after the task, so a task that is killed and retried
    by ``@retry`` resumes from its last finished epoch), logs ``train_loss`` and
    ``valid_ndcg@10`` through ``current.log_metric`` when running in a flow, and
    reports progress on stderr. With a seed it is deterministic on the CPU.

    Parameters
    ----------
    factors : embedding size.
    layers, heads : transformer blocks and attention heads.
    max_len : longest history read (the latest ``max_len`` items).
    dropout : dropout rate.
    loss : ``"ce"`` (full softmax), ``"sampled_softmax"`` or ``"gbce"``.
    n_negatives : negatives per batch for the sampled losses.
    gbce_t : gBCE calibration (0: plain BCE; 1: fully calibrated).
    learning_rate, batch_size : Adam step size and sequences per batch.
    max_epochs : most passes over the data.
    patience : epochs without validation improvement before stopping (None: no
        validation, train on every item until ``max_epochs`` or ``time_budget``).
    time_budget : wall-clock seconds of training at most (None: no limit).
    device : ``"auto"`` (a CUDA GPU when there is one, else the CPU), ``"cpu"``, ``"cuda"``...
    mixed_precision : train in bfloat16 autocast (None: where it helps, i.e. on a CUDA GPU
        or a CPU with native bfloat16; scoring is always float32).
    threads : CPU threads for torch during fit and scoring (default: the cores, at most 8).
    random_state : seed of weight initialisation, shuffling, dropout and negatives.
    checkpoint_dir : folder for the per-epoch checkpoint (None: inside a flow step decorated
        with ``@checkpoint``, ``current.checkpoint`` -- kept in the store, restored on ``@retry``
        and ``resume``; in another step, a temporary folder named after the task; no checkpoint
        outside a flow); the local file is removed when training ends.
    all_windows : train on every interaction each epoch: a history longer than ``max_len`` + 1 is
        cut from its end into overlapping windows (False: only each history's latest window).
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        layers: int = 2,
        heads: int = 1,
        max_len: int = 200,
        dropout: float = 0.2,
        loss: str = "ce",
        n_negatives: int = 256,
        gbce_t: float = 0.75,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 200,
        patience: int | None = 5,
        time_budget: float | None = 900.0,
        device: str = "auto",
        mixed_precision: bool | None = None,
        threads: int | None = None,
        random_state: int = 0,
        checkpoint_dir: str | None = None,
        all_windows: bool = True,
    ) -> None:
        self.factors = factors
        self.layers = layers
        self.heads = heads
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.gbce_t = gbce_t
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.time_budget = time_budget
        self.device = device
        self.mixed_precision = mixed_precision
        self.threads = threads
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.all_windows = all_windows

    # -- fitting -------------------------------------------------------------------
    def fit(self: R, train: Interactions, *, verbose: bool | None = None) -> R:
        """Learn from ``train``, ordering each user's interactions by timestamp; returns self.

        Without timestamps the row order of ``train`` is taken as the viewing order.
        """
        require("torch", "reelflow.recs.SASRec")
        self._train_data = train
        try:
            return super().fit(train, verbose=verbose)
        finally:
            self.__dict__.pop("_train_data", None)

    def _validate_params(self) -> None:
        self._check_positive(factors=self.factors, layers=self.layers, heads=self.heads, max_len=self.max_len,
                             learning_rate=self.learning_rate, batch_size=self.batch_size, max_epochs=self.max_epochs,
                             n_negatives=self.n_negatives)
        if self.loss not in _LOSSES:
            raise ValueError(f"SASRec(loss={self.loss!r}): choose one of {', '.join(_LOSSES)}")
        if self.factors % self.heads:
            raise ValueError(f"SASRec(factors={self.factors}, heads={self.heads}): factors must be a multiple of heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRec(dropout={self.dropout!r}): dropout must be in [0, 1)")
        if self.patience is not None:
            self._check_positive(patience=self.patience)
        if self.time_budget is not None:
            self._check_positive(time_budget=self.time_budget)
        if not 0.0 <= self.gbce_t <= 1.0:
            raise ValueError(f"SASRec(gbce_t={self.gbce_t!r}): gbce_t must be in [0, 1]")

    def _fit(self, X: sp.csr_matrix) -> None:
        from . import _sasrec_net as nt

        data: Interactions = self._train_data
        seqs = _sequences(data)
        self._release_network()
        device = nt.pick_device(self.device)
        with nt.thread_scope(self.threads):
            gen = nt.set_seed(int(self.random_state))
            net = nt.SASRecNet(data.n_items, self.factors, self.layers, self.heads, self.max_len, self.dropout)
            net.to(device)
            opt = nt.torch.optim.Adam(net.parameters(), lr=self.learning_rate)
            summary = _Trainer(self, net, opt, gen, device, seqs).run()
        for name, value in summary.items():
            setattr(self, name, value)
        keep = [s[-self.max_len:] for s in seqs]
        self.sequence_items_ = (np.concatenate(keep) if keep else np.zeros(0)).astype(np.int32)
        self.sequence_indptr_ = np.concatenate([[0], np.cumsum([len(s) for s in keep])]).astype(np.int64)
        self.weights_ = nt.state_arrays(net)
        self._net = net.cpu().eval()

    # -- scoring -------------------------------------------------------------------
    def _network(self) -> Any:
        net = self.__dict__.get("_net")
        if net is None:
            require("torch", "reelflow.recs.SASRec")
            from . import _sasrec_net as nt

            n_items = self.weights_["item_emb.weight"].shape[0] - 1
            net = nt.SASRecNet(n_items, self.factors, self.layers, self.heads, self.max_len, self.dropout)
            nt.load_arrays(net, self.weights_)
            self._net = net.eval()
        return net

    def _release_network(self) -> None:
        self.__dict__.pop("_net", None)

    def _score(self, users: np.ndarray) -> np.ndarray:
        from . import _sasrec_net as nt

        net = self._network()
        ptr, items = self.sequence_indptr_, self.sequence_items_
        seqs = [items[ptr[u] : ptr[u + 1]] for u in users.tolist()]
        with nt.thread_scope(self.threads):
            h = nt.last_hidden(net, seqs, nt.torch.device("cpu"))
        return np.asarray(h @ self.weights_["item_emb.weight"][1:].T, dtype=np.float32)

    def _item_vectors(self) -> np.ndarray:
        return np.asarray(self.weights_["item_emb.weight"][1:])

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_net", None)  # rebuilt from weights_ on first use
        state.pop("_train_data", None)
        return state


def _sequences(data: Interactions) -> list[np.ndarray]:
    """Each user's items (internal index + 1; 0 is padding), oldest first."""
    if data.timestamps is None:
        note("SASRec: the interactions have no timestamps; their row order is taken as the viewing order")
        order = np.lexsort((np.arange(len(data)), data.users))
    else:
        order = np.lexsort((np.arange(len(data)), data.timestamps, data.users))
    items = data.items[order].astype(np.int64) + 1
    bounds = np.concatenate([[0], np.cumsum(np.bincount(data.users, minlength=data.n_users))])
    return [items[bounds[u] : bounds[u + 1]] for u in range(data.n_users)]


class _Trainer:
    """One fit's epochs: batches, validation, early stopping, budget, checkpoints, metrics."""

    def __init__(self, model: SASRec, net: Any, opt: Any, gen: Any, device: Any, seqs: list[np.ndarray]) -> None:
        self.m, self.net, self.opt, self.gen, self.device = model, net, opt, gen, device
        validate = model.patience is not None
        self.valid_users = np.array([u for u, s in enumerate(seqs) if len(s) >= 3]) if validate else np.zeros(0, int)
        self.train_seqs = [s[:-1] if validate and len(s) >= 3 else s for s in seqs]
        rng = np.random.default_rng(model.random_state)
        if len(self.valid_users) > _VALID_USERS:
            self.valid_users = np.sort(rng.choice(self.valid_users, _VALID_USERS, replace=False))
        self.valid_seqs = [seqs[u] for u in self.valid_users.tolist()]
        # Every training interaction is a target once per epoch: a history longer than max_len + 1 is cut,
        # from its end, into windows of max_len + 1 items that overlap by one (the older part would be lost).
        width = int(model.max_len) + 1
        self.chunks: list[np.ndarray] = []
        for s in self.train_seqs:
            end = len(s)
            while end >= 2:
                self.chunks.append(s[max(0, end - width) : end])
                end -= width - 1
                if not model.all_windows:
                    break
        self.ckpt = _checkpoint_path(model)
        self.fingerprint = _fingerprint(model, seqs)

    # -- checkpoints -----------------------------------------------------------------
    def _save(self, st: dict[str, Any]) -> None:
        if self.ckpt is None:
            return
        from . import _sasrec_net as nt

        arrays: dict[str, np.ndarray] = {f"net.{k}": v for k, v in nt.state_arrays(self.net).items()}
        arrays.update({f"opt.{k}": v for k, v in nt.optimizer_arrays(self.opt).items()})
        if st["best"] is not None:
            arrays.update({f"best.{k}": v for k, v in st["best"].items()})
        arrays["generator"] = self.gen.get_state().numpy()
        meta = {k: v for k, v in st.items() if k != "best"}
        arrays["meta"] = np.array(json.dumps({**meta, "fingerprint": self.fingerprint}))
        self.ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt.with_name(f"{self.ckpt.name}.tmp-{os.getpid()}.npz")
        savez: Any = np.savez  # plain arrays only: read back with allow_pickle=False
        savez(tmp, **arrays)
        os.replace(tmp, self.ckpt)
        flow_ckpt = _flow_checkpointer()
        if flow_ckpt is not None and self.m.checkpoint_dir is None:
            # Under @checkpoint the folder goes to the store: a retry or a resumed run restores it.
            flow_ckpt.save(metadata={"model": "SASRec", "epoch": int(st["epoch"])}, name="sasrec")

    def _resume(self, st: dict[str, Any]) -> None:
        if self.ckpt is None or not self.ckpt.exists():
            return
        from . import _sasrec_net as nt

        try:
            with np.load(self.ckpt, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("fingerprint") != self.fingerprint:
                    note(f"SASRec: {self.ckpt} is from other data or settings; training from scratch")
                    return
                part = {p: {k.partition(".")[2]: z[k] for k in z.files if k.startswith(p + ".")}
                        for p in ("net", "opt", "best")}
                nt.load_arrays(self.net, part["net"])
                self.net.to(self.device)
                nt.load_optimizer_arrays(self.opt, part["opt"])
                self.gen.set_state(nt.torch.from_numpy(z["generator"]))
        except (OSError, ValueError, KeyError) as e:
            note(f"SASRec: checkpoint {self.ckpt} is unreadable ({type(e).__name__}); training from scratch")
            return
        st.update({k: v for k, v in meta.items() if k != "fingerprint"})
        st["best"] = part["best"] or None
        note(f"SASRec: resuming from the checkpoint of epoch {st['epoch']} in {self.ckpt}")

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train; returns the learned summary attributes (history_, epochs_, best_epoch_, train_seconds_)."""
        m = self.m
        st: dict[str, Any] = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "bad_epochs": 0, "elapsed": 0.0,
                              "history": [], "best": None}
        self._resume(st)
        budget = float("inf") if m.time_budget is None else float(m.time_budget)
        start = time.perf_counter() - float(st["elapsed"])
        desc = (f"SASRec fit ({len(self.chunks):,} sequences, {self.net.item_emb.num_embeddings - 1:,} items, "
                f"{m.loss} loss, budget {'none' if m.time_budget is None else f'{budget:.0f} s'})")
        out_of_time = False
        with progress(int(m.max_epochs), desc, unit="epoch") as bar:
            bar.update(int(st["epoch"]))
            while st["epoch"] < m.max_epochs and not out_of_time:
                t0 = time.perf_counter()
                loss, out_of_time = self._epoch(start, budget)
                st["epoch"] += 1
                row: dict[str, Any] = {"epoch": st["epoch"], "train_loss": loss, "seconds": time.perf_counter() - t0}
                metrics = {"train_loss": loss}
                if len(self.valid_users):
                    score = self._validate()
                    row["valid_ndcg@10"] = metrics["valid_ndcg@10"] = score
                    if score > st["best_score"]:
                        from . import _sasrec_net as nt

                        st.update(best_score=score, best_epoch=st["epoch"], bad_epochs=0, best=nt.state_arrays(self.net))
                    else:
                        st["bad_epochs"] += 1
                st["history"].append(row)
                st["elapsed"] = time.perf_counter() - start
                _log_metrics(metrics, st["epoch"])
                bar.update(1, loss=round(loss, 4), valid_ndcg10=round(metrics.get("valid_ndcg@10", float("nan")), 4))
                stop = m.patience is not None and st["bad_epochs"] >= m.patience
                if not stop and st["epoch"] < m.max_epochs and not out_of_time:
                    self._save(st)
                if stop:
                    break
        if st["best"] is not None:
            from . import _sasrec_net as nt

            nt.load_arrays(self.net, st["best"])
        if self.ckpt is not None:
            self.ckpt.unlink(missing_ok=True)
        return {
            "history_": pd.DataFrame(st["history"]),
            "epochs_": int(st["epoch"]),
            "best_epoch_": int(st["best_epoch"]) if st["best"] is not None else int(st["epoch"]),
            "train_seconds_": float(time.perf_counter() - start),
        }

    def _epoch(self, start: float, budget: float) -> tuple[float, bool]:
        from . import _sasrec_net as nt

        torch = nt.torch
        m, net = self.m, self.net
        net.train()
        perm = torch.randperm(len(self.chunks), generator=self.gen).numpy()
        total, count = 0.0, 0
        amp = nt.autocast(self.device, m.mixed_precision)
        for lo in range(0, len(perm), int(m.batch_size)):
            batch = nt.pad_batch([self.chunks[u] for u in perm[lo : lo + int(m.batch_size)].tolist()],
                                 int(m.max_len) + 1)
            x = torch.from_numpy(batch).to(self.device)
            with amp:
                loss = nt.batch_loss(net, x[:, :-1], x[:, 1:], loss=m.loss, n_negatives=int(m.n_negatives),
                                     gbce_t=float(m.gbce_t), generator=self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach())
            count += 1
            if time.perf_counter() - start > budget:
                return total / max(count, 1), True
        return total / max(count, 1), False

    def _validate(self) -> float:
        """NDCG@10 of each validation user's held-out last item, full catalogue, seen items excluded."""
        from . import _sasrec_net as nt

        inputs = [s[:-1] for s in self.valid_seqs]
        h = nt.last_hidden(self.net, inputs, self.device)
        items = self.net.item_weights().detach().float().cpu().numpy()
        total = 0.0
        for lo in range(0, len(inputs), 512):
            scores = h[lo : lo + 512] @ items.T
            for r, s in enumerate(inputs[lo : lo + 512]):
                scores[r, s[-self.m.max_len:] - 1] = -np.inf
            target = np.array([s[-1] - 1 for s in self.valid_seqs[lo : lo + 512]])
            t_score = scores[np.arange(len(target)), target]
            rank = (scores > t_score[:, None]).sum(axis=1)
            total += float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).sum())
        return total / max(len(inputs), 1)


def _log_metrics(metrics: dict[str, float], epoch: int) -> None:
    from ..flows import current

    if current.is_running_flow:
        current.log_metrics(metrics, step=epoch)


def _checkpoint_path(model: SASRec) -> Path | None:
    if model.checkpoint_dir is not None:
        return Path(model.checkpoint_dir) / _CHECKPOINT
    from ..flows import current

    if not current.is_running_flow:
        return None
    flow_ckpt = _flow_checkpointer()
    if flow_ckpt is not None:  # the step's @checkpoint folder, restored from the store
        return Path(flow_ckpt.directory) / _CHECKPOINT
    # No @checkpoint: one folder per task: a retry of the task (same pathspec) finds its predecessor's checkpoint.
    return Path(tempfile.gettempdir(), "reelflow-checkpoints", *str(current.pathspec).split("/"), _CHECKPOINT)


def _flow_checkpointer() -> Any:
    """``current.checkpoint`` when running in a step decorated with ``@checkpoint``, else None."""
    from ..flows import current

    return current._checkpointer()


def _fingerprint(model: SASRec, seqs: list[np.ndarray]) -> str:
    """Settings and data a checkpoint belongs to (a checkpoint of anything else is not resumed)."""
    h = hashlib.sha256(json.dumps({k: v for k, v in model.get_params().items() if k not in ("checkpoint_dir",
                                   "max_epochs", "time_budget", "device", "threads",
                                   "mixed_precision")}, sort_keys=True).encode())
    for s in seqs:
        h.update(np.asarray(s, np.int64).tobytes() + b"|")
    return h.hexdigest()

