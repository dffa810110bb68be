"""Optional dependency groups ("extras") and the error for a missing one.

The core install (flows, runtime, store, client, registry) needs no numerical
stack; each toolkit checks for its own dependencies when first imported so the
user reads which extra to install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

# extra name -> the importable modules it provides (what the toolkit imports)
EXTRAS: dict[str, tuple[str, ...]] = {
    "recs": ("numpy", "scipy", "pandas", "implicit", "threadpoolctl"),
    "content": ("numpy", "scipy", "pandas", "sklearn"),
    "serve": ("numpy", "scipy", "pandas", "implicit", "fastapi", "uvicorn", "prometheus_client"),
    "pandas": ("pandas",),
    "torch": ("torch",),
    "gen": ("numpy", "scipy", "torch", "diffusers", "PIL"),
    "operate": ("croniter",),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` is importable.

    ``what`` names the feature for the message (``"reelflow.recs"``, ``"Run.metrics"``).
    """
    missing = [m for m in (modules or EXTRAS[extra]) if not _installed(m)]
    if missing:
        target = "recs" if extra == "pandas" else extra
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
            f"install them with: pip install 'reelflow[{target}]'"
        )
