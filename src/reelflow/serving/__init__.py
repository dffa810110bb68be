"""HTTP serving of registered models: ``reelflow serve NAME@ALIAS``."""

from __future__ import annotations

from .._extras import require

require("serve", "reelflow.serving")

from ._app import MAX_BATCH, MAX_BODY_BYTES, MAX_K, MAX_WORK, ModelHolder, ServeConfig, create_app
from ._serve import serve

__all__ = ["create_app", "serve", "ServeConfig", "ModelHolder", "MAX_K", "MAX_BATCH", "MAX_WORK", "MAX_BODY_BYTES"]
