"""Events: named payloads recorded in the metadata database; ``@trigger`` deployments consume them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ParameterError

__all__ = ["publish", "list_events", "check_event_name", "check_payload"]

MAX_PAYLOAD = 1024 * 1024  # bytes of JSON


def check_event_name(name: Any) -> str:
    """``name`` if it is a usable event name, else ParameterError saying what one looks like."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or name.strip() != name:
        raise ParameterError(f"event name {name!r}: write 1-200 characters without surrounding spaces, "
                             "e.g. 'ratings.arrived'")
    return name


def check_payload(name: str, payload: Mapping[str, Any], deployments: Any = None) -> None:
    """ParameterError if ``payload`` cannot become the parameters of a deployment triggered by ``name``
    (a mapped field missing, or a value that is not of the parameter's type)."""
    from ._deploy import list_deployments
    from ._scheduler import _convert

    for dep in list_deployments(event=name) if deployments is None else deployments:
        for ev in dep.triggers.get("events", []):
            if ev["name"] != name:
                continue
            for pname, field in ev["parameters"].items():
                if field not in payload:
                    raise ParameterError(
                        f"event {name!r}: deployment {dep.name!r} maps payload field {field!r} to its parameter "
                        f"{pname!r}, and the payload has no {field!r}; publish it with that field")
                try:
                    _convert(dep.param_types.get(pname, "str"), payload[field])
                except ValueError as exc:
                    raise ParameterError(
                        f"event {name!r}: payload field {field!r}={payload[field]!r} cannot be parameter {pname!r} "
                        f"({dep.param_types.get(pname)}) of deployment {dep.name!r}: {exc}") from None


def publish(name: str, payload: Mapping[str, Any] | None = None, *, at: float | None = None,
            check: bool = True) -> int:
    """Record event ``name`` with ``payload`` (a JSON-able dict); return its id.

    Deployments with ``@trigger(event=name)`` start a run for it (once each, whichever
    scheduler sees it first). With ``check`` (default) a payload that cannot become the
    parameters of such a deployment (a mapped field missing, a value of the wrong type)
    is refused with a ParameterError and nothing is recorded; the scheduler checks
    again and records a firing it cannot start as failed, with the reason.

    Examples
    --------
    >>> from reelflow import events            # doctest: +SKIP
    >>> events.publish("ratings.arrived", {"day": "2026-01-01"})
    """
    from sqlalchemy import insert

    from ..store import get_store
    from ..store._operate_db import operate_tables

    check_event_name(name)
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise ParameterError(f"event {name!r}: the payload must be a JSON object (a dict), not "
                             f"{type(payload).__name__}")
    try:
        text = json.dumps(dict(payload), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"event {name!r}: the payload is not JSON ({exc}); use str, numbers, bools, "
                             "lists and dicts") from None
    if len(text) > MAX_PAYLOAD:
        raise ParameterError(f"event {name!r}: the payload is {len(text)} bytes of JSON; the limit is {MAX_PAYLOAD}")
    if check:
        check_payload(name, payload)
    store = get_store()
    sch = operate_tables(store.metadata)
    when = time.time() if at is None or not math.isfinite(at) else at
    with store.metadata.write(flush_blobs=False) as conn:
        res = conn.execute(insert(sch.events).values(name=name, payload=text, created_at=when,
                                                     user=store.config.user))
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])


def list_events(name: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest events (of ``name``), newest first: ``id``, ``name``, ``payload``, ``created_at``, ``user``."""
    from sqlalchemy import select

    from ..store import get_store
    from ..store._operate_db import operate_tables

    store = get_store()
    sch = operate_tables(store.metadata)
    q = select(sch.events).order_by(sch.events.c.id.desc()).limit(limit)
    if name is not None:
        q = q.where(sch.events.c.name == name)
    with store.metadata.read() as conn:
        rows = conn.execute(q).mappings().all()
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]
