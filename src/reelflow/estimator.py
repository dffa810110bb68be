"""The estimator contract every learnable thing follows (scikit-learn's).

* ``__init__`` takes keyword-only arguments, stores each under its own name, and
  does nothing else; validation happens in ``fit``, which returns ``self``.
* Learned state ends with an underscore; methods that need it raise
  :class:`~reelflow.errors.NotFittedError` before ``fit``.
* ``get_params`` / ``set_params`` / :func:`clone` come from :class:`BaseEstimator`.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, TypeVar

from .errors import NotFittedError

__all__ = ["BaseEstimator", "clone", "check_is_fitted"]

E = TypeVar("E", bound="BaseEstimator")


class BaseEstimator:
    """get_params / set_params / repr from the keyword-only ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: E, **params: Any) -> E:
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {k!r}; its parameters are {', '.join(sorted(valid))}"
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def clone(estimator: E) -> E:
    """A new, unfitted estimator with the same parameters."""
    return type(estimator)(**copy.deepcopy(estimator.get_params()))


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raise NotFittedError unless ``estimator`` has the learned ``attribute``."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call fit(...) before using it"
        )
