"""The model registry's tables behind methods of the metadata store.

:mod:`reelflow.registry` calls only these methods, so the registry never sees SQL
and a future metadata backend implements one interface. Mixed into
:class:`~reelflow.store.MetadataStore`.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError
from ._lazy import lazy_module

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import Connection

    from . import _schema as s
else:  # loaded on first use (a run never needs the registry)
    sa = lazy_module("sqlalchemy")
    s = lazy_module("reelflow.store._schema")

__all__ = ["RegistryTables"]


class RegistryTables:
    """Model versions, aliases and alias history (mixin of the metadata store)."""

    if TYPE_CHECKING:
        url: str

        def write(self, lock: str | None = None) -> AbstractContextManager[Connection]: ...

        def read(self) -> AbstractContextManager[Connection]: ...

    def register_model_version(
        self,
        name: str,
        *,
        key: str,
        size: int,
        type: str,
        source: str | None,
        artifact: str | None,
        metrics: dict[str, float],
        description: str | None,
        user: str,
        created_at: float,
        alias: str | None = None,
    ) -> int:
        """Add version ``max + 1`` of ``name`` (and move ``alias`` to it) in one transaction; return it."""
        with self.write(lock=f"model:{name}") as conn:  # max + 1, one writer at a time
            top = conn.execute(sa.select(sa.func.max(s.models.c.version)).where(s.models.c.name == name)).scalar()
            version = int(top or 0) + 1
            conn.execute(sa.insert(s.models).values(
                name=name, version=version, key=key, size=size, type=type, source=source, artifact=artifact,
                metrics=json.dumps(metrics), description=description, created_at=created_at, user=user,
            ))
            if alias is not None:
                _move_alias(conn, name, alias, version, user, created_at)
        return version

    def set_model_alias(self, name: str, alias: str, version: int, *, user: str, at: float) -> None:
        """Point ``name@alias`` at an existing ``version`` (recorded in the history)."""
        with self.write() as conn:
            exists = conn.execute(sa.select(s.models.c.id).where(
                s.models.c.name == name, s.models.c.version == version)).first()
            if exists is None:
                known = [r[0] for r in conn.execute(
                    sa.select(s.models.c.version).where(s.models.c.name == name).order_by(s.models.c.version))]
                raise NotFoundError(
                    f"model {name!r} has no version {version}" + (
                        f"; its versions are {known}" if known else
                        f" (no model named {name!r} is registered in the store at {self.url})")
                )
            _move_alias(conn, name, alias, version, user, at)

    def delete_model_alias(self, name: str, alias: str, *, user: str, at: float) -> None:
        """Remove ``name@alias`` (recorded in the history)."""
        with self.write() as conn:
            _move_alias(conn, name, alias, None, user, at)

    def model_alias_version(self, name: str, alias: str) -> int | None:
        """The version ``name@alias`` points at, or None: one cheap query."""
        with self.read() as conn:
            v = conn.execute(sa.select(s.model_aliases.c.version).where(
                s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
        return None if v is None else int(v)

    def model_aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and the version it points at."""
        with self.read() as conn:
            return {r["alias"]: int(r["version"]) for r in conn.execute(
                sa.select(s.model_aliases).where(s.model_aliases.c.name == name)).mappings()}

    def model_version_row(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """The row of ``name``'s ``version`` (its latest when None), or None."""
        q = sa.select(s.models).where(s.models.c.name == name)
        q = q.where(s.models.c.version == version) if version is not None else q.order_by(s.models.c.version.desc())
        with self.read() as conn:
            row = conn.execute(q.limit(1)).mappings().first()
        return None if row is None else _model_dict(row)

    def model_version_rows(self, name: str) -> list[dict[str, Any]]:
        """Every version row of ``name``, oldest first."""
        with self.read() as conn:
            rows = conn.execute(sa.select(s.models).where(s.models.c.name == name)
                                .order_by(s.models.c.version)).mappings().all()
        return [_model_dict(r) for r in rows]

    def model_names(self) -> list[str]:
        """Names of every registered model, sorted."""
        with self.read() as conn:
            return [r[0] for r in conn.execute(sa.select(s.models.c.name).distinct().order_by(s.models.c.name))]

    def model_blob_keys(self) -> set[str]:
        """Blob keys of every registered version (the garbage collector keeps them)."""
        with self.read() as conn:
            return {r[0] for r in conn.execute(sa.select(s.models.c.key).distinct())}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of ``name``, oldest first."""
        with self.read() as conn:
            rows = conn.execute(sa.select(s.alias_history).where(s.alias_history.c.name == name)
                                .order_by(s.alias_history.c.id)).mappings().all()
        return [{k: r[k] for k in ("alias", "version", "previous_version", "at", "user")} for r in rows]


def _model_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"] or "{}")
    return d


def _move_alias(conn: Connection, name: str, alias: str, version: int | None, user: str, now: float) -> None:
    prev = conn.execute(sa.select(s.model_aliases.c.version).where(
        s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)).scalar()
    if version is None:
        if prev is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        conn.execute(sa.delete(s.model_aliases).where(s.model_aliases.c.name == name, s.model_aliases.c.alias == alias))
    elif prev is None:
        conn.execute(sa.insert(s.model_aliases).values(name=name, alias=alias, version=version, updated_at=now, user=user))
    else:
        conn.execute(sa.update(s.model_aliases).where(s.model_aliases.c.name == name, s.model_aliases.c.alias == alias)
                     .values(version=version, updated_at=now, user=user))
    conn.execute(sa.insert(s.alias_history).values(name=name, alias=alias, version=version, previous_version=prev,
                                                at=now, user=user))
