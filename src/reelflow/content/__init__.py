"""Content optimisation: artwork bandits, off-policy evaluation, A/B analysis.

    from reelflow.content.bandits import LinUCB, ArtworkSimulator
    from reelflow.content.ope import IPW, DR, RegressionModel
    from reelflow.content.experiments import compare, cuped, srm_check, msprt
"""

from __future__ import annotations

from .._extras import require

require("content", "reelflow.content")

__all__ = ["bandits", "ope", "experiments"]
