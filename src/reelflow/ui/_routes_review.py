"""The review gallery: generated images with their lineage, approve / reject with who and when.

Reads and writes the ``generated`` / ``reviews`` tables of the store
(``reelflow.store._review_db``, the same rows as ``reelflow review``); images are
served from their content-addressed blobs. Needs nothing from the ``gen`` extra.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import NotFoundError, ParameterError

__all__ = ["add_review_routes"]

PAGE = 48
_STATUSES = ("pending", "approved", "rejected")


def add_review_routes(app: Any) -> None:
    render = app.state.render
    checked_form = app.state.checked_form

    def tables() -> Any:
        from ..store._review_db import review_tables

        return review_tables(app.state.store.metadata)

    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request, status: str | None = None) -> HTMLResponse:
        if status not in (None, "", *_STATUSES):
            raise ParameterError(f"status {status!r}: use pending, approved or rejected")
        rows = tables().outputs(status=status or None, limit=PAGE)
        return render(request, "review.html", title="Review", outputs=rows, status=status or "",
                      statuses=_STATUSES, page=PAGE)

    @app.get("/review/{output_id}/image.png")
    def review_image(output_id: int, which: str = "output") -> Response:
        row = tables().output(output_id)
        key = {"output": row["key"], "input": row["input_key"],
               "retouched": (row["decisions"][-1]["image_key"] if row["decisions"] else None)}.get(which)
        if key is None:
            raise NotFoundError(f"output {output_id} has no {which} image")
        data = app.state.store.load(key, what=f"generated output {output_id}")
        if not isinstance(data, bytes) or not data.startswith(b"\x89PNG"):
            raise NotFoundError(f"output {output_id}: the {which} blob is not a PNG")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    @app.post("/review/{output_id}/decision")
    async def review_decide(request: Request, output_id: int) -> Response:
        form = await checked_form(request)
        decision = str(form.get("decision") or "")
        reason = str(form.get("reason") or "").strip() or None
        if decision not in ("approved", "rejected"):
            raise ParameterError(f"decision {decision!r}: approve or reject")
        if decision == "rejected" and not reason:
            raise ParameterError(f"rejecting output {output_id} needs a reason: say what is wrong")
        tables().decide(output_id, decision, user=app.state.user, at=time.time(), reason=reason)
        back = str(form.get("status") or "")
        return RedirectResponse(f"/review?status={back}#o{output_id}" if back in _STATUSES else f"/review#o{output_id}",
                                status_code=303)
