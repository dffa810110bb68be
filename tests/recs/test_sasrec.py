"""SASRec: optional torch extra, order-aware answers, training controls, checkpoints, safe files."""

import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

from reelflow.errors import MissingExtraError
from reelflow.recs import Interactions, RecommenderBase, SASRec, evaluate, leave_last_out


def test_importing_recs_does_not_import_torch():
    code = "import sys, reelflow.recs; from reelflow.recs import SASRec; SASRec(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_sasrec_without_torch_names_the_extra(monkeypatch):
    import reelflow._extras as extras

    monkeypatch.setattr(extras, "_installed", lambda module: module != "torch")
    data = Interactions.from_frame(pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "t": [1, 2]}), timestamp="t")
    with pytest.raises(MissingExtraError, match=r"reelflow.recs.SASRec needs torch.*pip install 'reelflow\[torch\]'"):
        SASRec().fit(data)


def cycle(reverse=False, n_items=12, n_users=80, seed=0):
    """Users watch consecutive titles of a ring, i, i+1, i+2, ... (by time): after k comes k+1.
    The probe watched 3, 4, 5 and should be offered 6 (or 2 when time runs backwards)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(4, 8))
        for step in range(length):
            t = -step if reverse else step
            rows.append((f"u{u}", (start + step) % n_items, t))
    rows += [("probe", i, (-k if reverse else k)) for k, i in enumerate([3, 4, 5])]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "t"]), timestamp="t")


def small(**kw):
    params = dict(factors=16, layers=1, max_len=8, max_epochs=40, patience=None, learning_rate=0.01, dropout=0.0,
                  threads=1, random_state=0)
    params.update(kw)
    return SASRec(**params)


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "gbce"])
def test_order_matters_the_next_title_follows_the_sequence(loss):
    """6 follows 3, 4, 5 in time; played backwards, 2 does. Same pairs, opposite answers."""
    pytest.importorskip("torch")
    kw = {} if loss == "ce" else {"n_negatives": 8, "max_epochs": 60, "gbce_t": 0.5}
    forward = small(loss=loss, **kw).fit(cycle(), verbose=False)
    backward = small(loss=loss, **kw).fit(cycle(reverse=True), verbose=False)
    f_top = forward.recommend(["probe"], n=9)[0][0].tolist()
    b_top = backward.recommend(["probe"], n=9)[0][0].tolist()
    assert f_top.index(6) < f_top.index(2) and b_top.index(2) < b_top.index(6)
    if loss == "ce":
        assert f_top[0] == 6 and b_top[0] == 2


def test_early_stopping_and_time_budget():
    pytest.importorskip("torch")
    data = cycle()
    stopped = small(max_epochs=200, patience=2, learning_rate=0.05).fit(data, verbose=False)
    assert stopped.epochs_ < 200 and stopped.best_epoch_ == stopped.epochs_ - 2
    assert list(stopped.history_.columns) == ["epoch", "train_loss", "seconds", "valid_ndcg@10"]
    assert stopped.history_["valid_ndcg@10"].max() > 0.5
    t0 = time.perf_counter()
    budget = small(max_epochs=1_000_000, time_budget=1.0).fit(data, verbose=False)
    assert time.perf_counter() - t0 < 60 and budget.epochs_ < 1_000_000 and budget.train_seconds_ < 30


def test_metrics_per_epoch_go_to_current_log_metric():
    pytest.importorskip("torch")
    from reelflow.flows import current
    from reelflow.flows._current import _TaskInfo

    current._bind(_TaskInfo("F", "1", "train", "2", 0, None, "me", frozenset()))
    try:
        m = small(max_epochs=3, patience=5, checkpoint_dir=None).fit(cycle(), verbose=False)
        points = current._take_metrics()
    finally:
        current._bind(None)
    assert [(n, s) for n, _, s, _ in points if n == "valid_ndcg@10"] == [("valid_ndcg@10", e) for e in (1, 2, 3)]
    assert len([p for p in points if p[0] == "train_loss"]) == 3 and m.epochs_ == 3


def test_progress_reports_epochs(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("REELFLOW_PROGRESS_INTERVAL", "0")
    small(max_epochs=3).fit(cycle(), verbose=True)
    err = capsys.readouterr().err
    assert "SASRec fit" in err and "3/3 epoch" in err


KILLED_FIT = """
import sys, pandas as pd
sys.path.insert(0, {tests!r})
from test_sasrec import cycle, small
small(max_epochs=100000, time_budget=None, checkpoint_dir={ckpt!r}).fit(cycle(), verbose=False)
"""


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch")
    ckpt = tmp_path / "ckpt"
    code = KILLED_FIT.format(tests=os.path.dirname(__file__), ckpt=str(ckpt))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "sasrec-checkpoint.npz").exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    with np.load(ckpt / "sasrec-checkpoint.npz", allow_pickle=False) as z:
        import json

        done = json.loads(str(z["meta"]))["epoch"]
    assert done >= 1
    resumed = small(max_epochs=done + 2, checkpoint_dir=str(ckpt)).fit(cycle(), verbose=True)
    assert f"resuming from the checkpoint of epoch {done}" in capsys.readouterr().err
    assert resumed.epochs_ == done + 2 and resumed.history_.epoch.tolist()[-2:] == [done + 1, done + 2]
    assert not (ckpt / "sasrec-checkpoint.npz").exists()  # training finished: the checkpoint is gone
    # another configuration never resumes from it
    other = small(max_epochs=2, factors=8, checkpoint_dir=str(ckpt)).fit(cycle(), verbose=False)
    assert other.epochs_ == 2


def test_weights_are_saved_as_plain_arrays_and_serve_latest_history(tmp_path):
    pytest.importorskip("torch")
    m = small().fit(cycle(), verbose=False)
    m.save(tmp_path / "s.rf")
    with zipfile.ZipFile(tmp_path / "s.rf") as zf:
        names = zf.namelist()
    assert "weights_.item_emb.weight.npy" in names and not any(n.endswith(".pkl") for n in names)
    loaded = RecommenderBase.load(tmp_path / "s.rf")
    np.testing.assert_array_equal(loaded.recommend(["probe"], n=3)[1], m.recommend(["probe"], n=3)[1])
    # the stored sequence is the user's latest max_len items, oldest first
    p = m.user_ids_.tolist().index("probe")
    seq = loaded.sequence_items_[loaded.sequence_indptr_[p] : loaded.sequence_indptr_[p + 1]] - 1
    assert m.item_ids_[seq].tolist() == [3, 4, 5]


def test_evaluates_like_any_model_and_bad_params():
    pytest.importorskip("torch")
    train, test = leave_last_out(cycle(n_users=120))
    r = evaluate(small().fit(train, verbose=False), train, test, k=1, verbose=False)
    assert r.set_index(["metric", "k"]).value[("hr", 1)] > 0.8
    for bad, match in [({"loss": "bpr"}, "choose one of ce, sampled_softmax, gbce"),
                       ({"factors": 10, "heads": 3}, "multiple of heads"), ({"dropout": 1.0}, "dropout"),
                       ({"time_budget": 0}, "time_budget must be a positive")]:
        with pytest.raises(ValueError, match=match):
            small(**bad).fit(train)


def test_a_pickled_model_as_the_registry_stores_it_rebuilds_its_network_on_use():
    pytest.importorskip("torch")
    import pickle

    m = small(max_epochs=5).fit(cycle(), verbose=False)
    state = m.__getstate__()
    assert "_net" not in state and "_train_data" not in state
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.recommend(["probe", "u3"], n=4)[1], m.recommend(["probe", "u3"], n=4)[1])
    np.testing.assert_array_equal(back.recommend(["probe"], n=4)[0], m.recommend(["probe"], n=4)[0])
