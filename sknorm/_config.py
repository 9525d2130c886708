"""The backend switch: which implementation runs sknorm's numeric kernels.

Two backends compute the same statistics and transforms:

- ``"numpy"``: the reference implementation, always available;
- ``"numba"``: kernels compiled by numba (the optional extra
  ``pip install "sknorm[fast]"``), which fuse the passes over a batch and the
  update of the statistics into one call each. They agree with NumPy to about
  1e-15 relative in float64 (the tests require 1e-12).

The backend is chosen once, when sknorm is imported: the environment variable
``SKNORM_BACKEND`` (``"auto"``, ``"numpy"`` or ``"numba"``) if it is set, else
``"auto"``, which takes numba when it is installed. :func:`set_config` and
:func:`config_context` change it afterwards, for the whole process (threads
included). Importing sknorm never imports numba: the kernels are compiled on
first use and cached on disk by numba, so only the first process pays for the
compilation.

Only dense NumPy float arrays go to the compiled kernels; sparse matrices and
anything else take the NumPy path under either backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Literal, TypeAlias

import numpy as np

__all__ = [
    "get_config",
    "set_config",
    "config_context",
    "compiled_kernels",
    "kernels_for",
]

BACKENDS = ("numpy", "numba")
#: The values of ``backend`` in :func:`set_config` and :func:`config_context`.
BackendChoice: TypeAlias = Literal["auto", "numpy", "numba"]
_ENVIRONMENT_VARIABLE = "SKNORM_BACKEND"


def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def _resolve(backend: str, origin: str) -> str:
    """The backend that ``backend`` (as given in ``origin``) selects."""
    if backend == "auto":
        return "numba" if _numba_installed() else "numpy"
    if backend not in BACKENDS:
        raise ValueError(
            f"{origin} must be 'auto', 'numpy' or 'numba', got {backend!r}."
        )
    if backend == "numba" and not _numba_installed():
        raise ValueError(
            f"{origin} asks for the numba backend, but numba is not installed: "
            "install it with pip install 'sknorm[fast]', or choose 'numpy'."
        )
    return backend


# Whether the backend was chosen by "auto": a numba that is installed but
# cannot be imported then falls back to NumPy with a warning instead of failing.
_automatic = os.environ.get(_ENVIRONMENT_VARIABLE, "auto") in ("auto", "")
_backend = _resolve(
    os.environ.get(_ENVIRONMENT_VARIABLE) or "auto",
    f"The environment variable {_ENVIRONMENT_VARIABLE}",
)
_kernels: ModuleType | None = None


def get_config() -> dict[str, str]:
    """The current sknorm configuration.

    Returns
    -------
    config : dict
        ``{"backend": name}``, the backend that runs the numeric kernels:
        ``"numpy"`` or ``"numba"`` (``"auto"`` is resolved when it is set).

    Examples
    --------
    >>> import sknorm
    >>> sknorm.get_config()["backend"] in ("numpy", "numba")
    True
    """
    return {"backend": _backend}


def set_config(*, backend: BackendChoice | None = None) -> None:
    """Choose the backend of sknorm's numeric kernels, for the whole process.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba"}, default=None
        ``"numpy"``: the reference implementation. ``"numba"``: compiled
        kernels (needs numba, ``pip install "sknorm[fast]"``). ``"auto"``:
        numba if it is installed, else NumPy. None leaves it unchanged. The
        environment variable ``SKNORM_BACKEND`` sets the choice made at
        import.

    Raises
    ------
    ValueError
        For an unknown backend, or ``"numba"`` when numba is not installed.

    See Also
    --------
    config_context : The same for a ``with`` block.

    Examples
    --------
    >>> import sknorm
    >>> before = sknorm.get_config()["backend"]
    >>> sknorm.set_config(backend="numpy")
    >>> sknorm.get_config()
    {'backend': 'numpy'}
    >>> sknorm.set_config(backend=before)
    """
    global _backend, _automatic
    if backend is not None:
        _backend = _resolve(backend, "backend")
        _automatic = backend == "auto"


@contextmanager
def config_context(*, backend: BackendChoice | None = None) -> Iterator[None]:
    """Change the backend inside a ``with`` block, then restore it.

    The change holds for the whole process while the block runs (threads
    included), so do not enter contexts with different backends from several
    threads at once.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba"}, default=None
        As in :func:`set_config`.

    Examples
    --------
    >>> import numpy as np
    >>> import sknorm
    >>> with sknorm.config_context(backend="numpy"):
    ...     norm = sknorm.BatchNormalizer().fit(np.array([[1.0], [3.0]]))
    ...     sknorm.get_config()["backend"]
    'numpy'
    >>> norm.mean_.tolist()
    [2.0]
    """
    saved = (_backend, _automatic)
    set_config(backend=backend)
    try:
        yield
    finally:
        _restore(saved)


def _restore(saved: tuple[str, bool]) -> None:
    global _backend, _automatic
    _backend, _automatic = saved


def compiled_kernels() -> ModuleType | None:
    """The compiled kernels' module under the numba backend, else None.

    The module (and numba) is imported on the first call that needs it. If an
    automatically chosen numba cannot be imported (e.g. a build that does not
    match the installed NumPy), sknorm warns once and continues on NumPy; if
    numba was asked for by name, that is a ValueError.
    """
    if _backend == "numpy":
        return None
    return _kernels if _kernels is not None else _load_kernels()


def _load_kernels() -> ModuleType | None:
    global _kernels, _backend
    try:
        kernels = importlib.import_module("sknorm._numba_kernels")
    except ImportError as exc:
        if not _automatic:
            raise ValueError(
                f"The numba backend was chosen, but numba could not be imported "
                f"({exc}). Install a numba that matches this NumPy (pip install "
                "-U 'sknorm[fast]'), or choose the NumPy backend with "
                "SKNORM_BACKEND=numpy or sknorm.set_config(backend='numpy')."
            ) from exc
        warnings.warn(
            f"numba is installed but could not be imported ({exc}); sknorm "
            "continues with its NumPy backend. Set SKNORM_BACKEND=numpy to "
            "silence this warning.",
            RuntimeWarning,
            stacklevel=3,
        )
        _backend = "numpy"
        return None
    _kernels = kernels
    return _kernels


_KERNEL_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def kernels_for(X: object) -> ModuleType | None:
    """:func:`compiled_kernels` if they can take X, else None.

    They take a NumPy array of native float32 or float64 (any memory
    layout); sparse matrices and other types stay on the NumPy path.
    """
    if _backend == "numpy" or type(X) is not np.ndarray:
        return None
    if X.dtype not in _KERNEL_DTYPES:
        return None
    return _kernels if _kernels is not None else _load_kernels()
