"""The model registry: named model versions 1, 2, 3 … with aliases and their history.

Versions live in the metadata database beside runs; the model object is a blob in
the artifact store, so registering an artifact of a run copies nothing (same
bytes, same key), and loading verifies the blob's hash. Every alias move is
recorded with its time and user.

Inside a run of a ``@project`` flow on any branch but ``prod``, an alias is the branch's
own: ``champion`` is stored as ``<project>.<branch>/champion`` (e.g.
``recs.test.new_ease/champion``), so a branch never moves production's aliases; reading
``name@champion`` there finds the branch's alias, else production's. Outside a run, name
a branch's alias in full: ``models.get("ranker@recs.test.new_ease/champion")``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import NotFoundError, ReelflowError
from ..store import Store, get_store

__all__ = ["ModelVersion", "register", "alias_version", "set_alias", "delete_alias", "get", "load", "list", "versions", "history",
           "parse_spec"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_builtin_list = list


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a named model."""

    name: str
    version: int
    key: str
    size: int
    type: str
    source: str | None
    artifact: str | None
    metrics: dict[str, float]
    description: str | None
    created_at: float
    user: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def spec(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, tz=timezone.utc)

    def load(self) -> Any:
        """The model object (hash-checked)."""
        return get_store(create=False).load(self.key, what=f"model {self.spec}")


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ReelflowError(
            f"{kind} {value!r} is not valid; use letters, digits, '.', '_' or '-' (e.g. 'recs-ease', 'champion')"
        )


_PREFIX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}$")


def _alias(alias: str) -> str:
    """``alias`` checked, as stored for the running task's ``@project`` branch (see ``flows/_project.py``).

    In a run of a project flow on any branch but ``prod`` an alias ``champion`` is stored as
    ``<project>.<branch>/champion``; a name that already has that form is taken as written.
    """
    from ..flows._project import scoped_alias

    if isinstance(alias, str) and "/" in alias:
        prefix, _, bare = alias.rpartition("/")
        if not _PREFIX.match(prefix):
            raise ReelflowError(f"alias {alias!r} is not valid; a branch's alias is PROJECT.BRANCH/ALIAS, "
                                "e.g. 'recs.test.new_ease/champion'")
        _check_name("alias", bare)
        return alias
    _check_name("alias", alias)
    return scoped_alias(alias)


def _row_to_version(row: dict[str, Any], aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=row["name"], version=row["version"], key=row["key"], size=row["size"], type=row["type"],
        source=row["source"], artifact=row["artifact"], metrics=dict(row["metrics"]),
        description=row["description"], created_at=row["created_at"], user=row["user"], aliases=aliases,
    )


def _aliases_by_version(store: Store, name: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, _builtin_list[str]] = {}
    for alias, version in store.metadata.model_aliases(name).items():
        out.setdefault(version, []).append(alias)
    return {v: tuple(sorted(a)) for v, a in out.items()}


def _no_model(store: Store, name: str) -> NotFoundError:
    return NotFoundError(
        f"no model named {name!r} is registered in the store ({store.describe()}); "
        "see `reelflow models list`, or set REELFLOW_HOME to the store that holds it"
    )


def register(
    name: str,
    obj_or_artifact: Any,
    *,
    alias: str | None = None,
    metrics: dict[str, float] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register a new version of model ``name`` and return it.

    ``obj_or_artifact`` is any picklable model, or a client ``DataArtifact``
    (``Run(...)["train"].task["model"]``), which is registered by reference. Inside a
    running step the task's pathspec is recorded as the version's lineage.
    """
    from ..client import DataArtifact
    from ..flows import current

    _check_name("model name", name)
    if alias is not None:
        alias = _alias(alias)
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    store = get_store()
    artifact = None
    source: str | None
    if isinstance(obj_or_artifact, DataArtifact):
        key, size, type_ = obj_or_artifact.sha, obj_or_artifact.size, obj_or_artifact.type
        source = obj_or_artifact.pathspec.rsplit("/", 1)[0]  # the task
        artifact = obj_or_artifact.id
    else:
        try:
            ref = store.save(obj_or_artifact)
        except Exception as exc:
            raise ReelflowError(f"model {name!r} cannot be saved: {exc}; register a picklable object") from None
        key, size, type_ = ref.key, ref.size, ref.type
        source = current.pathspec if current.is_running_flow else None
    version = store.metadata.register_model_version(
        name, key=key, size=size, type=type_, source=source, artifact=artifact, metrics=metrics,
        description=description, user=store.config.user, created_at=time.time(), alias=alias,
    )
    return get(f"{name}/{version}")


def set_alias(name: str, alias: str, version: int) -> ModelVersion:
    """Point ``name@alias`` at ``version`` (recorded in the alias history; a ``@project`` branch's own alias
    inside a run of a branch other than ``prod``)."""
    alias = _alias(alias)
    store = get_store(create=False)
    store.metadata.set_model_alias(name, alias, int(version), user=store.config.user, at=time.time())
    return get(f"{name}/{version}")


def delete_alias(name: str, alias: str) -> None:
    """Remove ``name@alias`` (recorded in the alias history)."""
    alias = _alias(alias)
    store = get_store(create=False)
    store.metadata.delete_model_alias(name, alias, user=store.config.user, at=time.time())


def parse_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``name@alias`` -> (name, alias, None); ``name/3`` -> (name, None, 3); ``name`` -> latest."""
    if "@" in spec:
        name, alias = spec.split("@", 1)
        return name, alias, None
    if "/" in spec:
        name, v = spec.rsplit("/", 1)
        if not v.isdigit():
            raise ReelflowError(f"model spec {spec!r}: write NAME@ALIAS, NAME/VERSION or NAME")
        return name, None, int(v)
    return spec, None, None


def get(spec: str) -> ModelVersion:
    """The version named by ``"name@alias"``, ``"name/3"`` or ``"name"`` (its latest version)."""
    name, alias, version = parse_spec(spec)
    store = get_store(create=False)
    md = store.metadata
    if alias is not None:
        aliases = md.model_aliases(name)
        scoped = _alias(alias)
        # a branch reads production's alias until it sets its own
        version = aliases.get(scoped, aliases.get(alias) if scoped != alias and "/" not in alias else None)
        if version is None:
            if not aliases and md.model_version_row(name) is None:
                raise _no_model(store, name)
            have = sorted(aliases)
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r}" + (f"; its aliases are {', '.join(have)}" if have else
                "; set one with `reelflow models alias NAME ALIAS VERSION`")
            )
    row = md.model_version_row(name, version)
    if row is None:
        if version is None or md.model_version_row(name) is None:
            raise _no_model(store, name)
        raise NotFoundError(f"model {spec!r} is not registered (no version {version}); see `reelflow models show {name}`")
    return _row_to_version(row, _aliases_by_version(store, name).get(row["version"], ()))


def alias_version(name: str, alias: str) -> int | None:
    """The version ``name@alias`` points at (None if unset): one cheap query, for pollers."""
    md = get_store(create=False).metadata
    scoped = _alias(alias)
    found = md.model_alias_version(name, scoped)
    if found is None and scoped != alias and "/" not in alias:
        found = md.model_alias_version(name, alias)  # a branch reads production's alias until it sets its own
    return found


def load(spec: str) -> Any:
    """The model object of ``"name@alias"`` / ``"name/3"`` / ``"name"``."""
    return get(spec).load()


def versions(name: str) -> _builtin_list[ModelVersion]:
    """Every version of ``name``, oldest first."""
    store = get_store(create=False)
    rows = store.metadata.model_version_rows(name)
    if not rows:
        raise _no_model(store, name)
    aliases = _aliases_by_version(store, name)
    return [_row_to_version(r, aliases.get(r["version"], ())) for r in rows]


def list() -> _builtin_list[ModelVersion]:  # noqa: A001 - the registry's verb
    """The latest version of every registered model."""
    return [get(n) for n in get_store(create=False).metadata.model_names()]


def history(name: str) -> _builtin_list[dict[str, Any]]:
    """Every alias move of ``name``: alias, version (None when deleted), previous version, time, user,
    and ``decision``/``reason`` (with the metric values) where a promotion gate or rollback decided,
    including gates that kept the holder (see :func:`promote`)."""
    from ._promote import annotate_history

    return annotate_history(name, get_store(create=False).metadata.alias_history(name))
