"""Differences between the scikit-learn versions that sknorm supports.

Everything sknorm needs from scikit-learn's private API is imported here, so
that a change in scikit-learn is fixed in one place.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

# scikit-learn ships no type information, so to a type checker its decorators
# would make every method they decorate Any. Declared here as what they are:
# decorators that keep the method's signature.
if TYPE_CHECKING:
    _F = TypeVar("_F", bound=Callable[..., Any])

    def _fit_context(*, prefer_skip_nested_validation: bool) -> Callable[[_F], _F]:
        """scikit-learn's ``sklearn.base._fit_context``."""

    def available_if(check: Callable[[Any], bool]) -> Callable[[_F], _F]:
        """scikit-learn's ``sklearn.utils.metaestimators.available_if``."""

else:
    from sklearn.base import _fit_context  # noqa: F401  (private, stable since 1.3)
    from sklearn.utils.metaestimators import available_if  # noqa: F401

# The constraint types of ``_parameter_constraints``; scikit-learn has no
# public import path for them (stable since 1.2).
from sklearn.utils._param_validation import Interval, StrOptions  # noqa: F401


def validate_params(estimator) -> None:
    """Check an estimator's parameters against its ``_parameter_constraints``."""
    estimator._validate_params()


# -- composites and imputation ---------------------------------------------------
#
# What the streaming column transformer reuses of ColumnTransformer's helpers:
# its conversion of X (lists, ``__dataframe__``), its message for a scalar
# column selection, the transform (times the weight) its helpers call, column
# indexing, and the output container of set_output. StreamingImputer reads
# SimpleImputer's constraint on ``missing_values`` and the input names that
# ``get_feature_names_out`` starts from.
from sklearn.compose._column_transformer import (  # noqa: E402
    _ERR_MSG_1DCOLUMN as ERR_MSG_1DCOLUMN,  # noqa: F401
)
from sklearn.compose._column_transformer import (  # noqa: E402
    _check_X as check_column_transformer_X,  # noqa: F401
)
from sklearn.pipeline import _transform_one as transform_one  # noqa: E402, F401
from sklearn.utils import _safe_indexing as safe_indexing  # noqa: E402, F401
from sklearn.utils._set_output import (  # noqa: E402
    _get_output_config as get_output_config,
)
from sklearn.utils.validation import (  # noqa: E402
    _check_feature_names_in as check_feature_names_in,  # noqa: F401
)


def missing_values_constraint() -> list:
    """SimpleImputer's constraint on ``missing_values``."""
    from sklearn.impute import SimpleImputer

    return SimpleImputer._parameter_constraints["missing_values"]


def output_container_requested(estimator) -> bool:
    """Whether ``set_output`` (the estimator's or the global configuration)
    asks ``transform`` for a DataFrame rather than the default output."""
    return get_output_config("transform", estimator)["dense"] != "default"


# -- array API -----------------------------------------------------------------
#
# scikit-learn's array API helpers live in the private module
# ``sklearn.utils._array_api`` and change between versions: everything sknorm
# uses from it goes through these functions. ``array_api_compat`` is vendored by
# scikit-learn >= 1.7 and a separate (optional) package before.

try:
    from sklearn.externals import array_api_compat as _array_api_compat
except ImportError:  # scikit-learn < 1.7
    try:
        import array_api_compat as _array_api_compat
    except ImportError:
        _array_api_compat = None


def is_array_api_obj(X) -> bool:
    """Whether X is an array of an array API library (NumPy included)."""
    if _array_api_compat is not None:
        return _array_api_compat.is_array_api_obj(X)
    return hasattr(X, "__array_namespace__")


def array_namespace(X):
    """The array API namespace of X (a compatibility wrapper where needed),
    whatever the ``array_api_dispatch`` setting."""
    if _array_api_compat is None:
        return X.__array_namespace__()
    return _array_api_compat.array_namespace(X)


def array_device(X):
    """The device of X, as its namespace names it."""
    if _array_api_compat is None:
        return X.device
    return _array_api_compat.device(X)


def is_writeable_array(X) -> bool:
    """Whether X can be written into (False for a read-only or immutable array)."""
    check = getattr(_array_api_compat, "is_writeable_array", None)
    if check is not None:
        return check(X)
    flags = getattr(X, "flags", None)
    return bool(getattr(flags, "writeable", True))


def get_namespace_and_device(X):
    """``(xp, device)`` of X as scikit-learn sees it under array API dispatch."""
    from sklearn.utils._array_api import get_namespace_and_device

    xp, _, device = get_namespace_and_device(X)
    return xp, device


def real_float_dtypes(xp, device) -> tuple:
    """The real floating dtypes of ``xp`` on ``device``, widest first.

    Only float64 and float32 are considered, as in scikit-learn. Uses the
    namespace's inspection API (array API 2023.12), else assumes that only
    PyTorch's MPS device lacks float64, as scikit-learn 1.6 does.
    """
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        available = info().dtypes(kind="real floating", device=device)
        return tuple(
            available[name] for name in ("float64", "float32") if name in available
        )
    if "torch" in xp.__name__ and str(device).startswith("mps"):
        return (xp.float32,)
    return (xp.float64, xp.float32)


def move_to(array, xp, device):
    """``array`` (NumPy, a list, or any namespace) as an ``xp`` array on ``device``."""
    from sklearn.utils import _array_api

    if isinstance(array, list | tuple):
        array = np.asarray(array)
    move = getattr(_array_api, "move_to", None)
    if move is not None:
        return move(array, xp=xp, device=device)
    # scikit-learn < 1.9: through NumPy, unless the array is already there.
    if not isinstance(array, np.ndarray):
        if array_namespace(array) is xp and array_device(array) == device:
            return array
        array = to_numpy(array)
    if array.dtype == np.float64 and len(real_float_dtypes(xp, device)) < 2:
        array = array.astype(np.float32)  # a device without float64
    return xp.asarray(array, device=device)


def to_numpy(array) -> np.ndarray:
    """A NumPy copy (or view) of an array of any namespace and device (its
    values only: no autograd history)."""
    if isinstance(array, np.ndarray):
        return array
    if getattr(array, "requires_grad", False):
        array = array.detach()
    from sklearn.utils import _array_api

    move = getattr(_array_api, "move_to", None)
    if move is not None:
        return move(array, xp=np, device="cpu")
    # scikit-learn < 1.9: the conversions its _convert_to_numpy makes, and
    # array-api-strict's devices other than the CPU's.
    name = array_namespace(array).__name__
    if "torch" in name:
        return array.cpu().numpy()
    if "cupy" in name:
        return array.get()
    if "array_api_strict" in name:
        import array_api_strict

        array = array_api_strict.asarray(
            array, device=array_api_strict.Device("CPU_DEVICE")
        )
    return np.asarray(array)


def can_move_estimators() -> bool:
    """Whether scikit-learn offers ``move_estimator_to`` (it calls
    ``__sklearn_array_api_convert__``)."""
    from sklearn.utils import _array_api

    return hasattr(_array_api, "move_estimator_to")
