"""Hostile and damaged model files: loading one never runs code from it and fails with a
clear error naming the file (issue #8, "a model file runs code when loaded")."""

from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelflow.errors import CorruptModelFileError, ModelFileError, ReelflowError
from reelflow.recs import EASE, Interactions, ItemKNN, MostPopular, RecommenderBase


class Exploit:
    """Unpickling this writes a marker file: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.write_text, (self.marker, "code ran"))


@pytest.fixture(scope="module")
def data() -> Interactions:
    rows = [(u, i) for u in range(12) for i in range(8) if (u + i) % 3]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]))


def legacy_file(path: Path, obj: object) -> None:
    """A model file as reelflow 0.1 wrote it: magic, class name, content key, pickle blob."""
    from reelflow.store._serialize import encode

    blob = encode(obj)
    name = b"reelflow.recs._popular.MostPopular"
    with open(path, "wb") as f:
        f.write(b"RFMODEL1" + len(name).to_bytes(2, "little") + name + blob.key.encode())
        for c in blob.chunks:
            f.write(c)


def crafted_zip(path: Path, header: dict, arrays: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("reelflow-model.json", json.dumps(header))
        for name, raw in arrays.items():
            zf.writestr(f"{name}.npy", raw)


def pickled_object_array(obj: object) -> bytes:
    buf = io.BytesIO()
    a = np.empty(1, dtype=object)
    a[0] = obj
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def header_for(path: Path, data: Interactions) -> dict:
    """The header of a genuine MostPopular file, to tamper with."""
    MostPopular().fit(data).save(path)
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("reelflow-model.json"))


def test_npz_with_a_pickled_object_array_runs_nothing(data, tmp_path):
    marker = tmp_path / "pwned"
    header = header_for(tmp_path / "genuine.rf", data)
    crafted = tmp_path / "crafted.rf"
    with zipfile.ZipFile(tmp_path / "genuine.rf") as zf:
        arrays = {n[:-4]: zf.read(n) for n in zf.namelist() if n.endswith(".npy")}
    arrays["scores_"] = pickled_object_array(Exploit(marker))
    crafted_zip(crafted, header, arrays)
    with pytest.raises(ModelFileError, match=f"model file {crafted}: array 'scores_' holds pickled Python objects"):
        MostPopular.load(crafted)
    with pytest.raises(ModelFileError, match="pickled Python objects"):
        MostPopular.load(crafted, trusted=True)  # trusted only opens old pickle files, never object arrays
    assert not marker.exists()


def test_old_pickle_format_is_refused_unless_trusted(data, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.rf"
    legacy_file(evil, Exploit(marker))
    with pytest.raises(ModelFileError, match=r"old-format reelflow model file .*can run code.*trusted=True"):
        MostPopular.load(evil)
    assert not marker.exists()
    # A file the user wrote with reelflow 0.1 converts in one line when they vouch for it.
    model = MostPopular().fit(data)
    old = tmp_path / "old.rf"
    legacy_file(old, model)
    MostPopular.load(old, trusted=True).save(old)
    np.testing.assert_array_equal(MostPopular.load(old).scores_, model.scores_)


@pytest.mark.parametrize("name", ["os.system", "reelflow.recs._popular.Nope", "builtins.eval", 7])
def test_class_named_in_the_file_is_never_imported(data, tmp_path, name):
    header = header_for(tmp_path / "genuine.rf", data)
    header["class"] = name
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.rf"
    crafted_zip(crafted, header, {"scores_": pickled_object_array(Exploit(marker))})
    with pytest.raises(ModelFileError, match="not a recommender class defined here"):
        RecommenderBase.load(crafted)
    assert not marker.exists()


def test_wrong_class_is_refused_before_any_array_is_read(data, tmp_path):
    marker = tmp_path / "pwned"
    header = header_for(tmp_path / "genuine.rf", data)
    crafted = tmp_path / "crafted.rf"
    crafted_zip(crafted, header, {"scores_": pickled_object_array(Exploit(marker))})
    with pytest.raises(ModelFileError, match="holds a reelflow.recs._popular.MostPopular, not a EASE"):
        EASE.load(crafted)
    assert not marker.exists()


def test_tampered_header_fails_the_integrity_check(data, tmp_path):
    path = tmp_path / "m.rf"
    header = header_for(path, data)
    with zipfile.ZipFile(path) as zf:
        arrays = {n[:-4]: zf.read(n) for n in zf.namelist() if n.endswith(".npy")}
    header["state"]["item_ids_"], header["state"]["user_ids_"] = header["state"]["user_ids_"], header["state"]["item_ids_"]
    crafted_zip(path, header, arrays)
    with pytest.raises(CorruptModelFileError, match="failed its integrity check"):
        MostPopular.load(path)


def test_random_damage_is_always_a_clear_error(data, tmp_path):
    """Flip bytes all over a real file: every load either round-trips or raises a ReelflowError."""
    path = tmp_path / "m.rf"
    ItemKNN(k=3).fit(data).save(path)
    raw = path.read_bytes()
    reference = ItemKNN.load(path).recommend([0, 1], n=3)[1]
    rng = np.random.default_rng(0)
    errors = ok = 0
    for trial in range(150):
        damaged = bytearray(raw)
        if trial % 3 == 0:
            damaged = damaged[: int(rng.integers(0, len(raw)))]
        else:
            for pos in rng.integers(0, len(raw), 1 + trial % 4):
                damaged[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(damaged))
        try:
            loaded = ItemKNN.load(path)
        except ReelflowError as e:
            assert str(path) in str(e)
            errors += 1
        else:  # damage the zip format ignores (e.g. a timestamp) must not change the model
            np.testing.assert_array_equal(loaded.recommend([0, 1], n=3)[1], reference)
            ok += 1
    print(f"model-file faults: {errors + ok} damaged files, {errors} clear errors, {ok} harmless, 0 tracebacks")
    assert errors > 100


def test_save_is_atomic_and_leaves_no_temporary_file(data, tmp_path):
    path = tmp_path / "m.rf"
    MostPopular().fit(data).save(path)
    before = path.read_bytes()

    class Unsaveable(MostPopular):
        pass

    bad = Unsaveable().fit(data)
    bad.extra_ = {"a": object()}  # a learned attribute a model file cannot hold
    with pytest.raises(TypeError, match="learned attribute 'extra_' is a dict"):
        bad.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.rf"]
