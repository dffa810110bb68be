"""Model files that cannot carry code: plain arrays plus a JSON header, in a zip.

A model file is a zip archive (the ``.npz`` layout) holding

* ``reelflow-model.json``: format version, the model's class, its parameters
  (``get_params``), learned scalars, how each learned attribute is rebuilt from the
  arrays, and a SHA-256 over the header and every array (integrity, not
  authenticity: it catches a damaged file, not a forged one);
* one ``.npy`` entry per array, read back with ``allow_pickle=False`` (a dict of named
  arrays, such as a neural model's weights, is one entry per array).

Loading reads the header first and checks the class it names against the
recommender classes already defined in this process *before* reading any array;
nothing in the file is imported, unpickled or executed. Files written by older
reelflow versions (``RFMODEL1``: a pickle) are refused unless the caller passes
``trusted=True``, which unpickles them: only do that for a file you wrote yourself,
then save it again to convert it.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import CorruptModelFileError, ModelFileError

if TYPE_CHECKING:
    from ._base import RecommenderBase

__all__ = ["save_model", "load_model", "LEGACY_MAGIC"]

FORMAT = "reelflow-model"
FORMAT_VERSION = 1
HEADER = "reelflow-model.json"
LEGACY_MAGIC = b"RFMODEL1"
_ZIP_MAGIC = b"PK\x03\x04"
_SCALARS = (bool, int, float, str, type(None))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- encoding learned state -----------------------------------------------------------
def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _plain_array(a: np.ndarray, where: str) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """An array numpy stores without pickle, how to restore its dtype, and a missing-value mask."""
    if a.dtype != object:
        return np.ascontiguousarray(a), {}, None
    values = a.ravel().tolist()
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64).reshape(a.shape), {"object": True}, None
    missing = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=len(values))
    if all(isinstance(v, str) or m for v, m in zip(values, missing.tolist())):
        text = np.asarray(["" if m else v for v, m in zip(values, missing.tolist())], dtype=str).reshape(a.shape)
        return text, {"object": True}, (missing.reshape(a.shape) if missing.any() else None)
    kinds = sorted({type(v).__name__ for v in values})
    raise TypeError(
        f"{where} holds Python objects of type {', '.join(kinds)}; a model file stores plain arrays only "
        "(use int or str ids, and text or numeric metadata)"
    )


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, a: np.ndarray, what: str | None = None) -> dict[str, Any]:
        plain, extra, missing = _plain_array(a, what or f"attribute {name!r}")
        self.arrays[name] = plain
        if missing is not None:
            self.arrays[f"{name}.missing"] = missing
            extra["missing"] = True
        return {"kind": "ndarray", "array": name, **extra}

    def value(self, name: str, v: Any) -> dict[str, Any]:
        if isinstance(v, _SCALARS):
            return {"kind": "scalar", "value": v}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return {"kind": "scalar", "value": v.item()}
        if isinstance(v, np.ndarray):
            return self.array(name, v)
        if sp.issparse(v):
            m = v.tocsr()
            for part in ("data", "indices", "indptr"):
                self.arrays[f"{name}.{part}"] = np.ascontiguousarray(getattr(m, part))
            return {"kind": "csr", "array": name, "shape": list(m.shape), "format": v.format}
        if isinstance(v, pd.DataFrame):
            return self.frame(name, v)
        if isinstance(v, dict) and all(isinstance(k, str) and isinstance(a, np.ndarray) for k, a in v.items()):
            # named weight tensors (e.g. a neural model's state), each its own plain array
            return {"kind": "arrays", "entries": {k: self.array(f"{name}.{k}", a) for k, a in v.items()}}
        raise TypeError(
            f"learned attribute {name!r} is a {type(v).__name__}; a model file stores arrays, sparse "
            "matrices, data frames of numbers or text, and scalars"
        )

    def frame(self, name: str, df: pd.DataFrame) -> dict[str, Any]:
        columns = list(df.columns)
        bad = [c for c in columns if not isinstance(c, str)]
        if bad:
            raise TypeError(f"data frame {name!r} has a non-text column name {bad[0]!r}; rename it to save the model")
        info = [self.array(f"{name}.col{i}", df.iloc[:, i].to_numpy(), f"column {c!r} of {name!r}")
                for i, c in enumerate(columns)]
        index = self.array(f"{name}.index", df.index.to_numpy(), f"the index of {name!r}")
        return {"kind": "frame", "columns": columns, "column_arrays": info, "index": index,
                "index_name": df.index.name if isinstance(df.index.name, str) else None}


def _decode(spec: Any, arrays: dict[str, np.ndarray], name: str) -> Any:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"attribute {name!r} has no valid description")
    kind = spec["kind"]
    if kind == "scalar":
        return spec["value"]
    if kind == "ndarray":
        a = arrays[spec["array"]]
        if not spec.get("object"):
            return a
        out = a.astype(object)
        if spec.get("missing"):
            out[arrays[spec["array"] + ".missing"]] = np.nan
        return out
    if kind == "csr":
        key = spec["array"]
        m = sp.csr_matrix((arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]),
                          shape=tuple(spec["shape"]))
        return m.asformat(spec.get("format", "csr"))
    if kind == "arrays":
        return {k: _decode(e, arrays, name) for k, e in spec["entries"].items()}
    if kind == "frame":
        cols = [_decode(s, arrays, name) for s in spec["column_arrays"]]
        index = pd.Index(_decode(spec["index"], arrays, name), name=spec.get("index_name"))
        frame = pd.DataFrame(dict(enumerate(cols)), index=index)
        frame.columns = pd.Index(spec["columns"])
        return frame
    raise ValueError(f"attribute {name!r} has unknown kind {kind!r}")


def _digest(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _jsonable(params: dict[str, Any], cls_name: str) -> dict[str, Any]:
    try:
        json.dumps(params, allow_nan=True)
    except TypeError as e:
        raise TypeError(f"{cls_name}'s parameters must be plain values (numbers, text, lists) to save it: {e}") from None
    return params


# -- save -----------------------------------------------------------------------------------
def save_model(model: RecommenderBase, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` atomically (a zip of arrays plus a JSON header)."""
    from .. import __version__

    cls = type(model)
    enc = _Encoder()
    state: dict[str, Any] = {}
    for name, value in model.__dict__.items():
        if name.endswith("_") and not name.startswith("_"):
            state[name] = enc.value(name, value)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": _qualname(cls),
        "params": _jsonable(model.get_params(), cls.__name__),
        "state": state,
        "arrays": sorted(enc.arrays),
        "reelflow_version": __version__,
    }
    header["sha256"] = _digest(header, enc.arrays)
    tmp = Path(f"{os.fspath(path)}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(HEADER, json.dumps(header, indent=1, sort_keys=True))
            for name, a in enc.arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- load -------------------------------------------------------------------------------------
def _known_classes() -> dict[str, type]:
    from ._base import RecommenderBase

    out: dict[str, type] = {}
    todo: list[type] = [RecommenderBase]
    while todo:
        c = todo.pop()
        out[_qualname(c)] = c
        todo.extend(c.__subclasses__())
    return out


def _read_header(zf: zipfile.ZipFile, path: str) -> dict[str, Any]:
    try:
        raw = zf.read(HEADER)
    except KeyError:
        raise ModelFileError(f"{path} is not a reelflow model file (a zip without {HEADER})") from None
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise CorruptModelFileError(f"model file {path} has an unreadable header ({e}); save the model again") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a reelflow model file (its header names no {FORMAT!r} format)")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path} has format version {version!r}; this reelflow reads up to "
            f"{FORMAT_VERSION}: upgrade reelflow to load it"
        )
    return header


def _resolve_class(header: dict[str, Any], cls: type[RecommenderBase], path: str) -> type[RecommenderBase]:
    name = header.get("class")
    found = _known_classes().get(name) if isinstance(name, str) else None
    if found is None:
        raise ModelFileError(
            f"{path} holds a {name!r}, which is not a recommender class defined here; "
            "import the module that defines it, then load it with that class"
        )
    if not issubclass(found, cls):
        raise ModelFileError(f"{path} holds a {name}, not a {cls.__name__}; load it with {found.__name__}.load")
    return found


def _read_arrays(zf: zipfile.ZipFile, names: Any, path: str) -> dict[str, np.ndarray]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CorruptModelFileError(f"model file {path} has a damaged header (array list); save the model again")
    arrays = {}
    for name in names:
        with zf.open(f"{name}.npy") as f:
            try:
                arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e):
                    raise ModelFileError(
                        f"model file {path}: array {name!r} holds pickled Python objects, which could run "
                        "code; reelflow model files hold plain arrays only, so it was not loaded"
                    ) from None
                raise
    return arrays


def load_model(cls: type[RecommenderBase], path: str | os.PathLike[str], *, trusted: bool = False) -> Any:
    """Read a model file written by :func:`save_model` (see the module docstring)."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(LEGACY_MAGIC))
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {where} does not exist") from None
    if head == LEGACY_MAGIC:
        return _load_legacy(cls, where, trusted)
    if not head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{where} is not a reelflow model file (written by something else, or damaged)")
    try:
        with zipfile.ZipFile(path) as zf:
            header = _read_header(zf, where)
            found = _resolve_class(header, cls, where)
            state, params = header.get("state"), header.get("params")
            if not isinstance(state, dict) or not isinstance(params, dict):
                raise CorruptModelFileError(f"model file {where} has a damaged header; save the model again")
            arrays = _read_arrays(zf, header.get("arrays"), where)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, ValueError) as e:
        if isinstance(e, (ModelFileError, FileNotFoundError)):
            raise
        raise CorruptModelFileError(
            f"model file {where} is damaged or truncated ({type(e).__name__}: {e}); save the model again"
        ) from None
    expected = header.pop("sha256", None)
    if expected != _digest(header, arrays):
        raise CorruptModelFileError(
            f"model file {where} failed its integrity check (content does not match its SHA-256); "
            "it was damaged after it was written: save the model again"
        )
    unknown = set(params) - set(found._param_names())
    if unknown:
        raise ModelFileError(
            f"model file {where} gives {found.__name__} parameters it does not have ({', '.join(sorted(unknown))}); "
            "it was written by another version of that class"
        )
    model = found.__new__(found)
    for k, v in params.items():
        setattr(model, k, v)
    try:
        for name, spec in state.items():
            if not (isinstance(name, str) and name.endswith("_") and not name.startswith("_")):
                raise ValueError(f"{name!r} is not a learned attribute")
            setattr(model, name, _decode(spec, arrays, name))
    except (KeyError, ValueError, TypeError) as e:
        raise CorruptModelFileError(f"model file {where} has a damaged header ({e}); save the model again") from None
    model._after_load()
    return model


def _load_legacy(cls: type[RecommenderBase], where: str, trusted: bool) -> Any:
    if not trusted:
        raise ModelFileError(
            f"{where} is an old-format reelflow model file (a pickle, written before reelflow 0.2); "
            "loading a pickle can run code from the file, so it was not loaded. If you wrote it yourself, "
            f"convert it once: {cls.__name__}.load(path, trusted=True).save(path)"
        )
    from ..store._serialize import decode

    data = bytearray(Path(where).read_bytes())
    n = int.from_bytes(data[8:10], "little")
    name = data[10 : 10 + n].decode(errors="replace")
    key = data[10 + n : 10 + n + 32].decode(errors="replace")
    model = decode(memoryview(data)[10 + n + 32 :], key, what=f"model file {where}")
    if not isinstance(model, cls):
        raise ModelFileError(f"{where} holds a {name}, not a {cls.__name__}; load it with that class")
    return model

