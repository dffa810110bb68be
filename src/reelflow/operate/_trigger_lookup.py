"""How a run was started, read back from the firing that started it (``Run.trigger``)."""

from __future__ import annotations

import json
from typing import Any

from ..flows._triggers import Trigger

__all__ = ["run_trigger"]


def run_trigger(run_id: str, store: Any = None) -> Trigger | None:
    """The :class:`~reelflow.flows.Trigger` of run ``run_id``, or None when it was started by hand."""
    from sqlalchemy import select

    from ..store import get_store
    from ..store._operate_db import OperateSchema, has_operate_tables

    store = store or get_store(create=False)
    if not has_operate_tables(store.metadata):
        return None
    fi = OperateSchema.get().firings
    with store.metadata.read() as conn:
        raw = conn.execute(select(fi.c.trigger).where(fi.c.run_id == str(run_id)).order_by(fi.c.id).limit(1)).scalar()
    return None if raw is None else Trigger.from_json(json.loads(raw))
