"""Differences between the scikit-learn versions that sknorm supports.

Everything sknorm needs from scikit-learn's private API is imported here, so
that a change in scikit-learn is fixed in one place.
"""

from sklearn.base import _fit_context  # noqa: F401  (private, stable since 1.3)

# The constraint types of ``_parameter_constraints``; scikit-learn has no
# public import path for them (stable since 1.2).
from sklearn.utils._param_validation import Interval, StrOptions  # noqa: F401


def validate_params(estimator) -> None:
    """Check an estimator's parameters against its ``_parameter_constraints``."""
    estimator._validate_params()


def output_container_requested(estimator) -> bool:
    """Whether ``set_output`` (the estimator's or the global configuration)
    asks ``transform`` for a DataFrame rather than the default output."""
    from sklearn.utils._set_output import _get_output_config

    return _get_output_config("transform", estimator)["dense"] != "default"
