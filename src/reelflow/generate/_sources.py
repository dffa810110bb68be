"""Model references a generation job accepts, and diffusers pipelines with licence and provenance.

A reference is one of:

- ``NAME@ALIAS`` / ``NAME/VERSION`` / ``NAME``: a model in reelflow's registry
  (e.g. ``backgrounds@champion``, a :class:`Sketch2Background` trained here);
- a local directory written by diffusers' ``save_pretrained`` (any
  ``DiffusionPipeline``), loaded with ``from_pretrained(path)``;
- a hub id (``org/name``) where the machine has network.

A diffusers model's licence and provenance come from ``reelflow-model.json``
beside its ``model_index.json`` (:func:`save_pipeline` writes it), or else from
the ``license:`` field of the model card (``README.md`` front matter, the hub's
convention). A job refuses a model without a licence unless it is told to
(``allow_unlicensed=True``, ``--allow-unlicensed``): what a model may be used
for is decided by its licence, so "unknown" is not a default.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NotFoundError, ReelflowError

__all__ = ["ResolvedModel", "DiffusersGenerator", "UnlicensedModelError", "resolve_model", "save_pipeline",
           "MODEL_INFO_FILE"]

MODEL_INFO_FILE = "reelflow-model.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnlicensedModelError(ReelflowError):
    """A model has no recorded licence and the job was not told to use it anyway."""


@dataclass
class ResolvedModel:
    """A loaded generation model and what lineage records about it."""

    model: Any
    ref: str
    kind: str  # "registry" | "path" | "hub"
    version: str  # registry version spec, or the directory's content digest / hub id
    licence: str | None
    provenance: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {"model": self.ref, "model_version": self.version, "model_kind": self.kind,
                "licence": self.licence, "provenance": self.provenance}


def save_pipeline(pipeline: Any, path: str | Path, *, licence: str, provenance: dict[str, Any] | None = None) -> Path:
    """``pipeline.save_pretrained(path)`` plus ``reelflow-model.json`` recording its licence and provenance."""
    if not licence or not isinstance(licence, str):
        raise UnlicensedModelError("save_pipeline needs the model's licence, e.g. licence='apache-2.0'")
    p = Path(path)
    pipeline.save_pretrained(str(p))
    (p / MODEL_INFO_FILE).write_text(json.dumps({"licence": licence, "provenance": provenance or {}}, indent=2))
    return p


def _card_licence(p: Path) -> str | None:
    readme = p / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return None
    lic = re.search(r"^licen[cs]e:\s*(\S.*)$", m.group(1), re.M)
    return lic.group(1).strip().strip("'\"") if lic else None


def _dir_info(p: Path) -> tuple[str | None, dict[str, Any]]:
    info_file = p / MODEL_INFO_FILE
    if info_file.is_file():
        try:
            info = json.loads(info_file.read_text())
        except ValueError as exc:
            raise ReelflowError(f"{info_file} is not valid JSON ({exc}); fix or remove it") from None
        lic = info.get("licence") or info.get("license")
        return (str(lic) if lic else None), dict(info.get("provenance") or {})
    return _card_licence(p), {}


def _dir_digest(p: Path) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(f.stat().st_size.to_bytes(8, "little"))
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class DiffusersGenerator:
    """Runs a diffusers pipeline with per-image seeds (``torch.Generator`` each), batched.

    Text-to-image pipelines get ``prompt`` / ``negative_prompt`` / ``guidance_scale``;
    unconditional ones (e.g. ``DDPMPipeline``) get only the batch size.
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        params = inspect.signature(pipeline.__call__).parameters
        self.takes_prompt = "prompt" in params
        self.takes_guidance = "guidance_scale" in params
        self.takes_negative = "negative_prompt" in params
        self.scheduler = type(getattr(pipeline, "scheduler", None)).__name__

    def generate(self, prompts: list[str | None], *, seeds: list[int], steps: int = 20, guidance: float = 7.5,
                 negative_prompt: str | None = None, device: str = "cpu") -> np.ndarray:
        import torch

        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
        self.pipeline.to(device)
        kwargs: dict[str, Any] = {"num_inference_steps": int(steps), "output_type": "np"}
        gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        if self.takes_prompt:
            kwargs["prompt"] = [p or "" for p in prompts]
            if self.takes_guidance:
                kwargs["guidance_scale"] = float(guidance)
            if self.takes_negative and negative_prompt:
                kwargs["negative_prompt"] = [negative_prompt] * len(prompts)
        else:
            kwargs["batch_size"] = len(prompts)
        if "return_dict" in inspect.signature(self.pipeline.__call__).parameters:
            kwargs["return_dict"] = True
        with torch.inference_mode():
            out = self.pipeline(generator=gens, **kwargs)
        images = np.asarray(out.images)
        return (images * 255.0 + 0.5).clip(0, 255).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        return {"kind": "diffusers", "pipeline": type(self.pipeline).__name__, "scheduler": self.scheduler}


def _load_pipeline(where: str) -> Any:
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(where)


def resolve_model(ref: str, *, allow_unlicensed: bool = False) -> ResolvedModel:
    """Load the model ``ref`` names (registry spec, local diffusers directory, or hub id).

    Raises
    ------
    NotFoundError
        ``ref`` is neither a registered model, an existing directory nor a reachable hub id.
    UnlicensedModelError
        A diffusers model records no licence and ``allow_unlicensed`` is False.
    """
    from .. import registry

    if not isinstance(ref, str) or not ref.strip():
        raise ReelflowError("the model reference is empty; give NAME@ALIAS, a directory or a hub id")
    p = Path(ref).expanduser()
    if p.is_dir():
        if not (p / "model_index.json").is_file():
            raise NotFoundError(f"{p} has no model_index.json: it is not a diffusers pipeline saved with "
                                "save_pretrained (or reelflow.generate.save_pipeline)")
        licence, provenance = _dir_info(p)
        _check_licence(ref, licence, allow_unlicensed)
        try:
            pipe = _load_pipeline(str(p))
        except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds
            raise ReelflowError(f"cannot load the diffusers pipeline in {p}: {type(exc).__name__}: {exc}") from None
        provenance = {"path": str(p.resolve()), **provenance}
        return ResolvedModel(DiffusersGenerator(pipe), ref, "path", f"dir:{_dir_digest(p)}", licence, provenance)
    if p.exists():
        raise NotFoundError(f"model reference {ref!r} is a file, not a model; give NAME@ALIAS, a diffusers "
                            "directory or a hub id")
    name, _, version = registry.parse_spec(ref)
    registered = False
    try:
        from ..store import get_store

        registered = get_store(create=False).metadata.model_version_row(name) is not None
    except NotFoundError:
        registered = False
    if registered or "@" in ref or version is not None or not _HUB_ID.match(ref):
        if not registered:
            raise NotFoundError(f"unknown model reference {ref!r}: no model {name!r} is registered, and it is not "
                                "a directory; give NAME@ALIAS (see `reelflow models list`), a diffusers directory "
                                "or a hub id (org/name)")
        mv = registry.get(ref)
        model = mv.load()
        if not callable(getattr(model, "generate", None)):
            raise ReelflowError(f"model {mv.spec} is a {type(model).__name__}, not a generation model (it has no "
                                "generate method); register a reelflow.generate model such as Sketch2Background")
        desc = model.describe() if callable(getattr(model, "describe", None)) else {}
        return ResolvedModel(model, ref, "registry", mv.spec, desc.get("licence"),
                             {"source": mv.source, "registered_by": mv.user, "blob": mv.key})
    # a hub id: only where the machine has network
    try:
        from huggingface_hub import model_info

        info = model_info(ref)
        card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
        licence = getattr(card, "license", None) if card is not None else None
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, auth
        raise NotFoundError(f"unknown model reference {ref!r}: not registered, not a directory, and the hub "
                            f"could not be asked about it ({type(exc).__name__}); check the name or the network") \
            from None
    _check_licence(ref, licence, allow_unlicensed)
    pipe = _load_pipeline(ref)
    return ResolvedModel(DiffusersGenerator(pipe), ref, "hub", f"hub:{ref}@{getattr(info, 'sha', '')}", licence,
                         {"hub_id": ref, "revision": getattr(info, "sha", None)})


def _check_licence(ref: str, licence: str | None, allow: bool) -> None:
    if not licence and not allow:
        raise UnlicensedModelError(
            f"model {ref!r} records no licence (no {MODEL_INFO_FILE} with a 'licence' field and no 'license:' in "
            "its model card); add one, or pass allow_unlicensed=True (--allow-unlicensed) if you know you may use it"
        )
