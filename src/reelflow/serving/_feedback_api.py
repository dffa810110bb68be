"""``POST /v1/feedback``: the route that feeds :class:`~._feedback.FeedbackLog` (see there)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from ._feedback import FeedbackLog

__all__ = ["mount_feedback", "FeedbackRequest"]

log = logging.getLogger("reelflow.serving")


class FeedbackRequest(BaseModel):
    """One feedback event on a served recommendation."""

    model_config = ConfigDict(extra="forbid")

    request_id: StrictStr = Field(max_length=64)
    user_id: StrictInt | StrictStr
    item_id: StrictInt | StrictStr
    event: StrictStr = Field(min_length=1, max_length=64)
    value: StrictFloat | StrictInt = 1.0


def mount_feedback(app: Any, holder: Any, *, flush_interval: float = 1.0) -> FeedbackLog | None:
    """Add ``POST /v1/feedback`` to ``app`` and return the log (None, with a warning, without pyarrow)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        log.warning("feedback logging is off: it needs pyarrow (pip install 'reelflow[serve]')")
        return None
    try:
        fb = FeedbackLog(holder.name, flush_interval=flush_interval)
    except OSError as exc:  # a read-only store still serves; it just cannot log
        log.warning("feedback logging is off: cannot write its folder (%s); set REELFLOW_HOME to a writable "
                    "store or REELFLOW_SERVE_FEEDBACK=0", exc)
        return None

    @app.post("/v1/feedback", status_code=202)
    async def post_feedback(req: FeedbackRequest) -> dict[str, Any]:
        """Feedback on a served recommendation: ``{"request_id", "user_id", "item_id", "event": "play" |
        "click" | ..., "value"}``. An id this server did not issue is a 422."""
        if not fb.known_request_id(req.request_id):
            raise HTTPException(422, f"request_id {req.request_id[:64]!r} was not issued by this server; send the "
                                     "request_id of a /v1/models/.../recommend response (also in its X-Request-Id "
                                     "header)")
        fb.feedback(req.request_id, req.user_id, req.item_id, req.event, float(req.value))
        return {"accepted": True}

    return fb
