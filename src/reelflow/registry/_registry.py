"""The model registry: named model versions 1, 2, 3 … with aliases and their history.

Versions live in the metadata database beside runs; the model object is a blob in
the artifact store, so registering an artifact of a run copies nothing (same
bytes, same key), and loading verifies the blob's hash. Every alias move is
recorded with its time and user.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from ..errors import NotFoundError, ReelflowError
from ..store import get_store
from ..store import _schema as s

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
        return get_store().load(self.key, what=f"model {self.spec}")


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ReelflowError(
            f"{kind} {value!r} is not valid; use letters, digits, '.', '_' or '-' (e.g. 'recs-ease', 'champion')"
        )


def _row_to_version(row: Any, aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=row["name"], version=row["version"], key=row["key"], size=row["size"], type=row["type"],
        source=row["source"], artifact=row["artifact"], metrics=json.loads(row["metrics"] or "{}"),
        description=row["description"], created_at=row["created_at"], user=row["user"], aliases=aliases,
    )


def _aliases_of(conn: Any, name: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, _builtin_list[str]] = {}
    for r in conn.execute(select(s.model_aliases).where(s.model_aliases.c.name == name)).mappings():
        out.setdefault(r["version"], []).append(r["alias"])
    return {v: tuple(sorted(a)) for v, a in out.items()}


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
        _check_name("alias", alias)
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
    user = store.config.user
    now = time.time()
    with store.metadata.write(lock=f"model:{name}") as conn:  # version = max + 1, one writer at a time
        top = conn.execute(select(func.max(s.models.c.version)).where(s.models.c.name == name)).scalar()
        version = int(top or 0) + 1
        conn.execute(insert(s.models).values(
            name=name, version=version, key=key, size=size, type=type_, source=source, artifact=artifact,
            metrics=json.dumps(metrics), description=description, created_at=now, user=user,
        ))
        if alias is not None:
            _move_alias(conn, name, alias, version, user, now)
    return get(f"{name}/{version}")


def _move_alias(conn: Any, name: str, alias: str, version: int | None, user: str, now: float) -> None:
    prev = conn.execute(select(s.model_aliases.c.version).where(
        s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
    if version is None:
        if prev is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        conn.execute(delete(s.model_aliases).where(s.model_aliases.c.name == name, s.model_aliases.c.alias == alias))
    elif prev is None:
        conn.execute(insert(s.model_aliases).values(name=name, alias=alias, version=version, updated_at=now, user=user))
    else:
        conn.execute(update(s.model_aliases).where(s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)
                     .values(version=version, updated_at=now, user=user))
    conn.execute(insert(s.alias_history).values(name=name, alias=alias, version=version, previous_version=prev,
                                                at=now, user=user))


def set_alias(name: str, alias: str, version: int) -> ModelVersion:
    """Point ``name@alias`` at ``version`` (recorded in the alias history)."""
    _check_name("alias", alias)
    store = get_store()
    with store.metadata.write() as conn:
        exists = conn.execute(select(s.models.c.id).where(s.models.c.name == name, s.models.c.version == int(version))).first()
        if exists is None:
            known = [r[0] for r in conn.execute(select(s.models.c.version).where(s.models.c.name == name))]
            raise NotFoundError(
                f"model {name!r} has no version {version}" + (f"; its versions are {known}" if known else
                                                              " (no such model is registered)")
            )
        _move_alias(conn, name, alias, int(version), store.config.user, time.time())
    return get(f"{name}/{version}")


def delete_alias(name: str, alias: str) -> None:
    """Remove ``name@alias`` (recorded in the alias history)."""
    store = get_store()
    with store.metadata.write() as conn:
        _move_alias(conn, name, alias, None, store.config.user, time.time())


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
    store = get_store()
    with store.metadata.read() as conn:
        if alias is not None:
            version = conn.execute(select(s.model_aliases.c.version).where(
                s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
            if version is None:
                have = sorted(r[0] for r in conn.execute(select(s.model_aliases.c.alias).where(s.model_aliases.c.name == name)))
                raise NotFoundError(
                    f"model {name!r} has no alias {alias!r}" + (f"; its aliases are {', '.join(have)}" if have else
                    "; set one with `reelflow models alias NAME ALIAS VERSION`")
                )
        q = select(s.models).where(s.models.c.name == name)
        q = q.where(s.models.c.version == version) if version is not None else q.order_by(s.models.c.version.desc())
        row = conn.execute(q).mappings().first()
        if row is None:
            raise NotFoundError(
                f"model {spec!r} is not registered" + ("" if version is None else f" (no version {version})")
                + "; see `reelflow models list`"
            )
        return _row_to_version(row, _aliases_of(conn, name).get(row["version"], ()))


def alias_version(name: str, alias: str) -> int | None:
    """The version ``name@alias`` points at (None if unset): one cheap query, for pollers."""
    store = get_store()
    with store.metadata.read() as conn:
        v = conn.execute(select(s.model_aliases.c.version).where(
            s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
    return None if v is None else int(v)


def load(spec: str) -> Any:
    """The model object of ``"name@alias"`` / ``"name/3"`` / ``"name"``."""
    return get(spec).load()


def versions(name: str) -> _builtin_list[ModelVersion]:
    """Every version of ``name``, oldest first."""
    store = get_store()
    with store.metadata.read() as conn:
        rows = conn.execute(select(s.models).where(s.models.c.name == name).order_by(s.models.c.version)).mappings().all()
        aliases = _aliases_of(conn, name)
    if not rows:
        raise NotFoundError(f"no model named {name!r} is registered; see `reelflow models list`")
    return [_row_to_version(r, aliases.get(r["version"], ())) for r in rows]


def list() -> _builtin_list[ModelVersion]:  # noqa: A001 - the registry's verb
    """The latest version of every registered model."""
    store = get_store()
    with store.metadata.read() as conn:
        names = [r[0] for r in conn.execute(select(s.models.c.name).distinct().order_by(s.models.c.name))]
    return [get(n) for n in names]


def history(name: str) -> _builtin_list[dict[str, Any]]:
    """Every alias move of ``name``: alias, version (None when deleted), previous version, time, user."""
    store = get_store()
    with store.metadata.read() as conn:
        rows = conn.execute(select(s.alias_history).where(s.alias_history.c.name == name)
                            .order_by(s.alias_history.c.id)).mappings().all()
    return [{k: r[k] for k in ("alias", "version", "previous_version", "at", "user")} for r in rows]
