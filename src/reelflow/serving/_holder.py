"""The model being served, and the poller that hot-swaps in new versions of its alias.

A background thread polls the registry; when ``NAME@ALIAS`` points at a new
version it loads it off the request path and swaps it in with one reference
assignment, so requests see either the old or the new model, never neither. A
version that fails to load (corrupt blob, foreign object) is logged and the old
one keeps serving; the holder is then *degraded* until the alias points at a
version that serves, and ``/readyz`` and ``/metrics`` say so.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import registry
from ..errors import ReelflowError
from ._ids import IdSpace, id_space

__all__ = ["ModelHolder", "Loaded", "LoadFailure", "check_servable"]

log = logging.getLogger("reelflow.serving")

RETRY_FAILED_AFTER = 30.0  # seconds before a version that failed to load is tried again


@dataclass(frozen=True)
class Loaded:
    """One loaded version and what requests need from it, computed once at load."""

    version: int
    model: Any
    loaded_at: float
    titles: dict[Any, str]
    ids: IdSpace
    user_pos: Mapping[Any, int] | None
    has_history: np.ndarray | None
    n_items: int

    def fallbacks(self, users: list[Any]) -> list[str | None]:
        """Per user, ``"popularity"`` where the model answers with its popularity
        fallback (unknown user, or no training history); None where it personalises
        or where this model does not say."""
        if self.user_pos is None:
            return [None] * len(users)
        out: list[str | None] = []
        for u in users:
            p = self.user_pos.get(u, -1)
            personal = p >= 0 and (self.has_history is None or bool(self.has_history[p]))
            out.append(None if personal else "popularity")
        return out


def _loaded(version: int, model: Any, freeze_gc: bool = False) -> Loaded:
    titles: dict[Any, str] = {}
    meta = getattr(model, "item_meta_", None)
    if meta is not None and "title" in getattr(meta, "columns", ()):
        titles = {k: str(v) for k, v in meta["title"].items()}  # plain dict: no pandas on the request path
    user_ids = getattr(model, "user_ids_", None)
    user_pos: Mapping[Any, int] | None = getattr(model, "_user_pos", None)
    if user_pos is None and user_ids is not None:
        user_pos = {u: i for i, u in enumerate(np.asarray(user_ids).tolist())}
    ui = getattr(model, "user_items_", None)
    has_history = np.diff(ui.indptr) > 0 if ui is not None and hasattr(ui, "indptr") else None
    item_ids = getattr(model, "item_ids_", None)
    loaded = Loaded(version, model, time.time(), titles, id_space(model), user_pos, has_history,
                    len(item_ids) if item_ids is not None else 0)
    if freeze_gc:
        # Long-lived objects (model, imports) leave the GC's scans: no multi-ms pauses in
        # requests. Only in a server process: an app embedded elsewhere keeps its GC.
        gc.collect()
        gc.freeze()
    return loaded


def check_servable(model: Any, spec: str) -> None:
    if callable(getattr(model, "generate", None)) and getattr(model, "size", None):
        return  # a generation model (reelflow.generate): served by serving/_generate.py's routes
    if not callable(getattr(model, "recommend", None)):
        raise ReelflowError(
            f"model {spec} is a {type(model).__name__}, not a recommender (it has no recommend method); "
            "register a fitted reelflow.recs model"
        )
    if getattr(model, "item_ids_", None) is None:
        raise ReelflowError(
            f"model {spec} ({type(model).__name__}) has no item_ids_: it is not fitted; fit it, then register it"
        )


@dataclass(frozen=True)
class LoadFailure:
    """Why the alias's version is not the one serving."""

    version: int | None  # None: the alias no longer points anywhere
    error: str
    since: float


class ModelHolder:
    """The model being served and the poller that swaps in new versions of its alias."""

    def __init__(self, spec: str, poll_interval: float = 1.0, *, freeze_gc: bool = False) -> None:
        self.spec = spec
        self.freeze_gc = freeze_gc
        self.name, self.alias, _ = registry.parse_spec(spec)
        self.poll_interval = poll_interval
        mv = registry.get(spec)
        model = mv.load()
        check_servable(model, spec)
        self.current = _loaded(mv.version, model, freeze_gc)
        self.failure: LoadFailure | None = None
        self.load_failures = 0  # versions that failed to load, counted per attempt
        self._failed: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last_error(self) -> str | None:
        return self.failure.error if self.failure else None

    @property
    def degraded(self) -> bool:
        return self.failure is not None

    def readiness(self) -> dict[str, Any]:
        """The body of ``/readyz``: ready, or degraded (still serving, but not what the alias names)."""
        cur, failure = self.current, self.failure
        body: dict[str, Any] = {"status": "ready", "model": self.name, "alias": self.alias, "version": cur.version}
        if failure is not None:
            body.update(status="degraded", failed_version=failure.version, error=failure.error,
                        since=failure.since, detail=f"still serving version {cur.version}")
        return body

    def start(self) -> None:
        if self.alias is None or self.poll_interval <= 0:
            return  # a pinned version never changes
        self._thread = threading.Thread(target=self._poll, name="reelflow-model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the poller must survive anything
                log.error("polling %s failed: %s", self.spec, exc)

    def _fail(self, version: int | None, error: str) -> None:
        previous = self.failure
        if previous is None or previous.version != version or previous.error != error:
            self.failure = LoadFailure(version, error, time.time())
            log.error("%s: %s; still serving version %s", self.spec, error, self.current.version)

    def _recover(self) -> None:
        if self.failure is not None:
            log.info("%s: alias is back on version %s, which is serving", self.spec, self.current.version)
            self.failure = None

    def refresh(self) -> bool:
        """Swap in the alias's version if it moved; True when a swap happened."""
        if self.alias is not None:  # the cheap check first: requests share this process's GIL
            v = registry.alias_version(self.name, self.alias)
            if v is None:
                self._fail(None, f"alias {self.name}@{self.alias} no longer points at any version")
                return False
            if v == self.current.version:
                self._recover()
                return False
        mv = registry.get(self.spec)
        if mv.version == self.current.version:
            self._recover()
            return False
        if time.time() - self._failed.get(mv.version, -1e9) < RETRY_FAILED_AFTER:
            return False  # retry a broken version only now and then; stay degraded meanwhile
        try:
            model = mv.load()
            check_servable(model, f"{self.name}/{mv.version}")
        except Exception as exc:  # noqa: BLE001 - keep serving the old version
            self._failed[mv.version] = time.time()
            self.load_failures += 1
            self._fail(mv.version, f"version {mv.version} failed to load: {exc}")
            return False
        self.current = _loaded(mv.version, model, self.freeze_gc)  # one atomic reference swap
        self.failure = None
        self._failed.pop(mv.version, None)
        log.info("%s: now serving version %s", self.spec, mv.version)
        return True
