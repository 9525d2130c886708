"""All-or-nothing updates: an estimator call that raises changes nothing."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted


class unchanged_on_error:  # noqa: N801  (used as a context manager, like a function)
    """Context manager that restores ``estimator.__dict__`` if its block raises.

    The snapshot is shallow: it is enough because fitting replaces fitted
    arrays instead of writing into them (``validate_data`` may also set
    ``n_features_in_`` and ``feature_names_in_`` before an error comes).
    """

    __slots__ = ("_estimator", "_snapshot")

    def __init__(self, estimator):
        self._estimator = estimator
        self._snapshot = dict(estimator.__dict__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            attributes = self._estimator.__dict__
            attributes.clear()
            attributes.update(self._snapshot)
        return False


def check_mergeable(estimator, other, ignored_params=("copy",)) -> None:
    """Check that ``other`` can be merged into ``estimator``.

    Both must be fitted, of the same class, with the same parameters (except
    ``ignored_params``), the same number of features and the same feature
    names.
    """
    check_is_fitted(estimator)
    name = type(estimator).__name__
    if not isinstance(other, type(estimator)):
        raise TypeError(f"merge expects a fitted {name}, got {type(other).__name__}.")
    check_is_fitted(other)
    ours = {k: v for k, v in estimator.get_params().items() if k not in ignored_params}
    theirs = {k: v for k, v in other.get_params().items() if k not in ignored_params}
    if ours != theirs:
        raise ValueError(
            f"Cannot merge normalizers with different parameters: {ours} vs {theirs}."
        )
    if estimator.n_features_in_ != other.n_features_in_:
        raise ValueError(
            f"Cannot merge: self has {estimator.n_features_in_} features, other has "
            f"{other.n_features_in_}."
        )
    names_self = getattr(estimator, "feature_names_in_", None)
    names_other = getattr(other, "feature_names_in_", None)
    if names_self is None or names_other is None:
        different_names = (names_self is None) != (names_other is None)
    else:
        different_names = not np.array_equal(names_self, names_other)
    if different_names:
        raise ValueError(
            "Cannot merge: the two normalizers were fitted on different feature names."
        )
