"""HTTP serving of registered models: ``reelflow serve NAME@ALIAS``."""

from __future__ import annotations

from .._extras import require

require("serve", "reelflow.serving")

from ._app import MAX_BATCH, MAX_K, ModelHolder, ServeConfig, create_app
from ._serve import serve

__all__ = ["create_app", "serve", "ServeConfig", "ModelHolder", "MAX_K", "MAX_BATCH"]
