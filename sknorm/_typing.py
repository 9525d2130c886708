"""Type aliases for sknorm's signatures.

A scikit-learn estimator takes many kinds of data through one parameter, and
with the array API it takes the arrays of several libraries, which share no
static type. The aliases here are ``Any`` where nothing more precise is true;
each says in words what it stands for, so that a signature reads like its
docstring. They are for type checkers and readers only: nothing checks them
at run time.

``Self`` (the type of the instance a method returns) is imported from
``typing_extensions`` under ``TYPE_CHECKING`` in the modules that use it, so
that sknorm never imports ``typing_extensions`` at run time.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = [
    "ArrayNamespace",
    "MatrixLike",
    "MatrixOutput",
    "NamespaceArray",
    "Estimator",
    "SparseMatrix",
    "VectorLike",
]

#: Data of shape (n_samples, n_features): an array-like (a NumPy array,
#: nested sequences), a scipy.sparse matrix or array, a pandas or polars
#: DataFrame, a dask array or DataFrame, or, with scikit-learn's array API
#: dispatch on, an array of another array API library (a PyTorch tensor, a
#: CuPy array, ...). Each estimator's docstring says which of these it takes.
MatrixLike: TypeAlias = Any

#: Values of shape (n_samples,), such as targets or sample weights: an
#: array-like, a pandas or polars Series, a dask array, or an array of
#: another array API library.
VectorLike: TypeAlias = Any

#: What a transform returns: a NumPy array, a scipy.sparse matrix, a pandas or
#: polars DataFrame (after ``set_output``), a lazy dask collection, or an
#: array of the input's array API namespace and device.
MatrixOutput: TypeAlias = Any

#: A scipy.sparse matrix or array (CSR, CSC, COO, ...); SciPy is not typed
#: for sknorm's type checks.
SparseMatrix: TypeAlias = Any

#: An array of one array API namespace: a NumPy array, or with array API
#: dispatch a PyTorch tensor, a CuPy array, ... (as the input was).
NamespaceArray: TypeAlias = Any

#: A scikit-learn estimator (or an object that follows its API); scikit-learn
#: is not typed.
Estimator: TypeAlias = Any

#: An array API namespace (a module such as ``array_api_strict``, or the
#: compatibility wrapper of ``torch`` or ``numpy``).
ArrayNamespace: TypeAlias = Any
