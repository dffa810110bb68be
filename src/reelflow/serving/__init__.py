"""HTTP serving of registered models: ``reelflow serve NAME@ALIAS``.

Routes (JSON):

- ``POST /v1/models/{name}/recommend`` with ``{"user_id": 1, "k": 10}`` or
  ``{"user_ids": [...], "k": 10}``: top-k items per user, each answer with
  ``"fallback": "popularity"`` where the model does not know the user (else null).
  Integer-id models take JSON integers or ASCII-digit strings in their id range;
  anything else is a 422 naming the id.
- ``GET /healthz`` (liveness, never needs the token), ``GET /readyz`` (``ready``,
  or ``degraded`` with HTTP 200 while the alias names a version that failed to
  load and the previous version keeps serving), ``GET /v1/models``, ``GET /metrics``.

Limits (per worker process): a body over ``MAX_BODY_BYTES`` is a 413 before it is
parsed; users x k over ``MAX_WORK`` is a 422; at most ``MAX_K`` items and
``MAX_BATCH`` users; scoring runs in a few threads off the event loop, and a full
queue is a 503 with Retry-After. With a token (``REELFLOW_SERVE_TOKEN``), every
route but ``/healthz`` needs ``Authorization: Bearer <token>`` (scheme in any
case; two Authorization headers are a 400).
"""

from __future__ import annotations

from .._extras import require

require("serve", "reelflow.serving")

from ._app import MAX_BATCH, MAX_BODY_BYTES, MAX_K, MAX_WORK, ModelHolder, ServeConfig, create_app
from ._serve import serve

__all__ = ["create_app", "serve", "ServeConfig", "ModelHolder", "MAX_K", "MAX_BATCH", "MAX_WORK", "MAX_BODY_BYTES"]
