"""Lazy access to a task's artifacts: nothing is read from the store until asked for."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError

if TYPE_CHECKING:
    from ..store import ArtifactRef, Store

__all__ = ["ArtifactScope", "InputView", "Inputs", "foreach_value"]


def foreach_value(store: Store, frame: dict[str, Any]) -> Any:
    """The item a foreach frame stands for (its sequence is loaded once per frame)."""
    if "value" not in frame:
        seq = store.load(frame["key"], what=f"foreach artifact {frame['param']!r}")
        try:
            frame["value"] = seq[frame["index"]]
        except TypeError:  # an iterable without indexing: Metaflow walks it
            import itertools

            frame["value"] = next(itertools.islice(iter(seq), frame["index"], None))
    return frame["value"]


class ArtifactScope:
    """A mapping of artifact names to blob references, loaded on first access and cached."""

    def __init__(self, store: Store, refs: Mapping[str, ArtifactRef], where: str) -> None:
        self.store = store
        self.refs = dict(refs)
        self.where = where  # pathspec or step name, for error messages
        self._cache: dict[str, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.refs

    def load(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        ref = self.refs.get(name)
        if ref is None:
            raise NotFoundError(f"{self.where} has no artifact {name!r}")
        value = self.store.load(ref.key, what=f"artifact {name!r} of {self.where}")
        self._cache[name] = value
        return value


class InputView:
    """One input of a join step: its artifacts by attribute (``inp.score``)."""

    def __init__(self, step_name: str, pathspec: str, scope: ArtifactScope,
                 frames: list[dict[str, Any]] | None = None) -> None:
        self.__dict__["_step"] = step_name
        self.__dict__["_pathspec"] = pathspec
        self.__dict__["_scope"] = scope
        self.__dict__["_frames"] = frames or []

    @property
    def index(self) -> int | None:
        """This input's index in its innermost foreach (None outside a foreach)."""
        frames = self.__dict__["_frames"]
        return frames[-1]["index"] if frames else None

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` of each foreach around this input, outermost first."""
        scope: ArtifactScope = self.__dict__["_scope"]
        return [(f["index"], f["num_splits"], foreach_value(scope.store, f)) for f in self.__dict__["_frames"]]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        scope: ArtifactScope = self.__dict__["_scope"]
        if name not in scope:
            raise AttributeError(
                f"input {self.__dict__['_pathspec']} (step {self.__dict__['_step']!r}) has no artifact {name!r}; "
                f"it has {', '.join(sorted(scope.refs)) or 'none'}"
            )
        return scope.load(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"inputs of a join are read-only; assign to self.{name} instead")

    def __repr__(self) -> str:
        return f"<input {self.__dict__['_pathspec']}>"


class Inputs:
    """The ``inputs`` argument of a join: iterable, indexable and, for static branches,
    addressable by step name (``inputs.train_a``)."""

    def __init__(self, views: list[InputView]) -> None:
        self._views = views

    def __iter__(self) -> Iterator[InputView]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __getitem__(self, i: int) -> InputView:
        return self._views[i]

    def __getattr__(self, name: str) -> InputView:
        if name.startswith("_"):
            raise AttributeError(name)
        for v in self._views:
            if v.__dict__["_step"] == name:
                return v
        steps = sorted({v.__dict__["_step"] for v in self._views})
        raise AttributeError(f"inputs has no branch {name!r}; the branches are {', '.join(steps)}")
