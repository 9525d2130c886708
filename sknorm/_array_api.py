"""Array API support: arrays of other libraries through a streaming estimator.

With scikit-learn's array API dispatch on
(``sklearn.set_config(array_api_dispatch=True)``), an estimator that mixes in
:class:`ArrayAPISupport` (``class BatchNormalizer(ArrayAPISupport,
StreamingNormalizer)``) takes the arrays of any namespace that scikit-learn
accepts there (PyTorch, CuPy, array-api-strict, ...), returns arrays of the
input's namespace, device and float dtype, and publishes its fitted
attributes on the input's device. Without dispatch, the base converts such
arrays to NumPy as scikit-learn does (:func:`to_numpy_input`), and an
estimator without the mixin refuses them with dispatch on.

The mixin overrides the base's entry points (``_learn``, ``_apply``,
``_checked_input``, ``_merged_state``, ``_publish``, pickling, deep copies,
tags): each takes arrays of another namespace and states fitted on one, and
hands everything else to the NumPy template of :mod:`sknorm._base`. The state
of an estimator fitted on another namespace is an :class:`~sknorm._xp.ArrayState`:
the statistics, their :class:`~sknorm._xp.Space` and what the host knows
about them. It takes one of two routes, fixed by the Space at the first fit:

- **NumPy views** (PyTorch on the CPU, see :func:`sknorm._xp.numpy_views`):
  the arrays are NumPy memory under another type, so the estimator computes
  with its NumPy hooks on zero-copy views: ``ArrayState.stats`` is a NumPy
  state, the fitted attributes and transform outputs are arrays of the
  namespace wrapping fresh NumPy arrays, and nothing is read from a device.
  Only ``transform`` of an array that requires grad takes the device route,
  so that its output stays differentiable.
- **on the device** (every other namespace and device): the statistics are
  arrays of the namespace on the input's device, computed by the array
  hooks below with :mod:`sknorm._xp`.

The array hooks, for the device route:

====================================  =========================================
hook                                  what it returns or does
====================================  =========================================
``_empty_array_stats(space, n)``      the statistics of an empty stream
``_initial_array_facts()``            what the host knows of them (``facts``)
``_update_array_state(old, X, w,      ``(stats, report)``: the statistics
careful)``                            after a batch and a dict of 0-d device
                                      arrays to check. ``careful=False`` is
                                      the fast path; a ``checksum`` that is
                                      not finite asks for the careful one
                                      (NaN). ``infinite`` is added unless
                                      ``checksum`` or ``infinite`` is there
``_settle_array_state(old, stats,     the new ArrayState from the report's
values, n_rows)``                     values (or raise, e.g. an overflow)
``_merge_array_states(old, new)``     ``(stats, report)`` of a merge
``_array_fitted_attributes(state)``   the public fitted attributes
``_transform_array(state, X,          ``transform`` of an array of the
in_place)``,                          state's namespace and device (and
``_inverse_transform_array``          ``inverse_transform``)
``_array_stats_to_numpy(stats)``,     the same statistics as a NumPy state
``_array_stats_from_numpy(space,      and back (checkpoints, moving the
stats, move)``,                       estimator between namespaces)
``_array_state_from_numpy(space,
stats, numpy_stats)``
====================================  =========================================

The NumPy-views route runs the NumPy hooks of :mod:`sknorm._base` on views,
so a ``_transform_dense`` or ``_inverse_transform_dense`` that reads fitted
attributes must accept them as arrays of the namespace
(:func:`sknorm._compat.to_numpy` gives their NumPy view).

The rules: ``partial_fit`` reads the device once on the device route (the
report; twice for a batch with NaN), ``transform`` never. Inputs must stay in
the namespace and on the device of the first fit, as scikit-learn requires; a
checkpoint (pickle, skops) holds NumPy data, so a loaded estimator is a NumPy
one, which ``sklearn.utils._array_api.move_estimator_to`` moves back where
available.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _xp
from ._atomic import unchanged_on_error
from ._compat import (
    array_device,
    array_namespace,
    can_move_estimators,
    is_array_api_obj,
    is_writeable_array,
    move_to,
    to_numpy,
)
from ._validation import (
    all_zero_weights_error,
    check_sample_weight,
    infinity_error,
    is_dask_collection,
)
from ._xp import ArrayState

if TYPE_CHECKING:
    from sklearn.utils import Tags
    from typing_extensions import Self

    # The mixin's methods call the template's (super()._learn, ...) and its
    # hooks: to a type checker it extends the template. At run time it is a
    # plain mixin, put before StreamingNormalizer among the bases.
    from ._base import StreamingNormalizer as _Base
else:
    _Base = object

__all__ = [
    "ArrayAPISupport",
    "is_array_api_input",
    "numpy_from_array_api",
    "to_numpy_input",
    "plain_array_api",
    "device_sample_weight",
    "numpy_sample_weight",
]


# -- inputs ---------------------------------------------------------------------------


def is_array_api_input(X) -> bool:
    """True for an array of an array API library other than NumPy (a PyTorch
    tensor, a CuPy or array-api-strict array, ...); dask collections, which
    sknorm fits block by block, are not."""
    return (
        not isinstance(X, np.ndarray | np.generic)
        and not sp.issparse(X)
        and is_array_api_obj(X)
        and not is_dask_collection(X)
    )


def numpy_from_array_api(X) -> np.ndarray:
    """X (an array of another library) as NumPy, as scikit-learn converts it
    without array API dispatch, keeping its dtype (float32 stays float32)."""
    try:
        return np.asarray(X)
    except Exception as exc:  # each library raises its own type
        raise TypeError(
            f"Could not convert X (a {type(X).__module__.split('.')[0]}."
            f"{type(X).__name__}) to a NumPy array: {exc} Turn on array API "
            "dispatch to normalize it where it is (sklearn.set_config("
            "array_api_dispatch=True), with the environment variable "
            "SCIPY_ARRAY_API=1), or convert it to NumPy first."
        ) from exc


def to_numpy_input(estimator, X):
    """X for the NumPy path of an estimator without array API support: an
    array of another library converted with :func:`numpy_from_array_api`
    (dispatch off) or refused with a TypeError that says what to do
    (dispatch on); anything else as it is."""
    if not is_array_api_input(X):
        return X
    if not get_config()["array_api_dispatch"]:
        return numpy_from_array_api(X)
    kind = f"{type(X).__module__.split('.')[0]}.{type(X).__name__}"
    raise TypeError(
        f"{type(estimator).__name__} does not support array API inputs: it got "
        f"a {kind} while scikit-learn's array API dispatch is on "
        "(sklearn.set_config(array_api_dispatch=True)). Convert X to a "
        "NumPy array first (for a PyTorch tensor: X.cpu().numpy()), or "
        "call it with dispatch off (sklearn.config_context("
        "array_api_dispatch=False)), which converts X with numpy.asarray. "
        "BatchNormalizer, LayerNormalizer and GroupNormalizer support "
        "array API inputs."
    )


def _dispatched(X) -> tuple[Any, bool]:
    """``(X, True)`` if the array API path takes X (an array of another
    library, dispatch on); else ``(X, False)``, with such an array converted
    to NumPy as scikit-learn converts it without dispatch."""
    if type(X) is np.ndarray or not is_array_api_input(X):
        return X, False
    if get_config()["array_api_dispatch"]:
        return X, True
    return numpy_from_array_api(X), False


def plain_array_api(estimator, X, space) -> bool:
    """:func:`sknorm._validation.is_plain_batch` for an array of another
    namespace: a non-empty 2-D array of a float dtype kept on its device, of
    the fitted width, on the namespace and device of the statistics
    (``space``), for an estimator fitted without feature names."""
    attrs = estimator.__dict__
    return (
        space.holds(X)
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] == attrs.get("n_features_in_")
        and X.dtype in space.input_dtypes
        and "feature_names_in_" not in attrs
    )


def _check_weight_shape(sample_weight, n_samples: int) -> None:
    """The dtype and shape checks of :func:`sknorm._validation.check_sample_weight`
    for weights of another library, without reading their values."""
    w_xp = array_namespace(sample_weight)
    if not w_xp.isdtype(sample_weight.dtype, ("bool", "integral", "real floating")):
        raise TypeError(
            f"sample_weight must contain real numbers, got dtype "
            f"{sample_weight.dtype}; convert it to a float array."
        )
    if sample_weight.ndim != 1:
        raise ValueError(
            f"sample_weight must be 1-D of shape ({n_samples},), "
            f"got shape {tuple(sample_weight.shape)}; pass one weight per row of X."
        )
    if sample_weight.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight has {sample_weight.shape[0]} values but X has "
            f"{n_samples} rows; pass one weight per row of X."
        )


def device_sample_weight(sample_weight, n_samples: int, space):
    """``sample_weight`` for a batch on the device route, and its report.

    Returns the weights as an array of ``space`` (its namespace, device and
    float dtype) and a report of 0-d device arrays (see
    :func:`sknorm._xp.read_report`): ``bad_weights`` (NaN, infinite or
    negative; :func:`~sknorm._validation.check_sample_weight` then says
    which) and ``positive_weight``. Weights on the host are checked here, with
    the messages of ``check_sample_weight``; shape and dtype always are.
    """
    xp, device = space.xp, space.device
    if not is_array_api_obj(sample_weight) or isinstance(sample_weight, np.ndarray):
        w = check_sample_weight(sample_weight, n_samples)
        report = {"positive_weight": int(bool(w.any()))}
        return xp.asarray(w, dtype=space.dtype, device=device), report
    _check_weight_shape(sample_weight, n_samples)
    if getattr(sample_weight, "requires_grad", False):
        sample_weight = sample_weight.detach()
    w = xp.astype(move_to(sample_weight, xp, device), space.dtype)
    report = {
        "bad_weights": xp.any(~xp.isfinite(w) | (w < 0)),
        "positive_weight": xp.any(w > 0),
    }
    return w, report


def numpy_sample_weight(sample_weight, n_samples: int, space):
    """``sample_weight`` for a batch on the NumPy-views route: weights of
    another library (checked for dtype and shape with the messages of the
    device route) as NumPy, a view if they are in ``space``; anything else as
    it is, for :func:`~sknorm._validation.check_sample_weight`."""
    if not is_array_api_input(sample_weight):
        return sample_weight
    _check_weight_shape(sample_weight, n_samples)
    if space.holds(sample_weight):
        return space.numpy_views.to_numpy(sample_weight)
    return to_numpy(sample_weight)


def _same_place(space, X) -> bool:
    """Whether X is in the namespace and on the device of ``space``."""
    return array_namespace(X) is space.xp and array_device(X) == space.device


# -- the mixin ------------------------------------------------------------------------


class ArrayAPISupport(_Base):
    """Mixin of a :class:`~sknorm._base.StreamingNormalizer` subclass that
    supports array API inputs (see the module docstring); put it first among
    the bases, so that it sees every call before the NumPy template."""

    # -- hooks of the device route (see the module docstring) ------------------------

    def _empty_array_stats(self, space, n_features: int):
        raise NotImplementedError

    def _initial_array_facts(self):
        return None

    def _update_array_state(self, old: ArrayState, X, sample_weight, careful: bool):
        raise NotImplementedError

    def _settle_array_state(self, old: ArrayState, stats, values: dict, n_rows):
        return ArrayState(stats, old.space)

    def _merge_array_states(self, old: ArrayState, new: ArrayState):
        raise NotImplementedError

    def _array_fitted_attributes(self, state: ArrayState) -> dict[str, Any]:
        return self._fitted_attributes(state.stats)

    def _transform_array(self, state: ArrayState, X, in_place: bool):
        raise NotImplementedError

    def _inverse_transform_array(self, state: ArrayState, X, in_place: bool):
        raise NotImplementedError

    def _array_stats_to_numpy(self, stats):
        return stats

    def _array_stats_from_numpy(self, space, stats, move):
        return stats

    def _array_state_from_numpy(self, space, stats, numpy_stats) -> ArrayState:
        """The ArrayState of statistics moved from NumPy (``numpy_stats``)."""
        return ArrayState(stats, space, self._initial_array_facts())

    # -- entry points of the base ----------------------------------------------------

    # A NumPy array costs these entry points two type checks.

    def _learn(self, X, sample_weight=None, *, reset: bool, need_weight=False):
        if type(X) is not np.ndarray:
            X, dispatched = _dispatched(X)
            if dispatched:
                return self._learn_array_api(X, sample_weight, reset, need_weight)
        if not reset and type(self.__dict__.get("_state")) is ArrayState:
            self._refuse_if_fitted_elsewhere(X, "partial_fit")
        return super()._learn(X, sample_weight, reset=reset, need_weight=need_weight)

    def _apply(self, X, copy, method: str):
        if type(X) is not np.ndarray:
            X, dispatched = _dispatched(X)
            if dispatched:
                return self._apply_array_api(X, copy, method)
        if type(self.__dict__.get("_state")) is ArrayState:
            self._refuse_if_fitted_elsewhere(X, method)
        return super()._apply(X, copy, method)

    def _checked_input(self, X, copy: bool = False):
        X, dispatched = _dispatched(X)
        if not dispatched:
            self._refuse_if_fitted_elsewhere(X, "transform")
            return super()._checked_input(X, copy)
        # Validated as transform validates it, and left in its namespace.
        self._checked_settings()
        check_is_fitted(self)
        X, space = self._validated_array(X, reset=False, method="transform")
        return _xp._copy(space.xp, X) if copy else X

    def _merged_state(self, mine, theirs):
        if type(mine) is not ArrayState and type(theirs) is not ArrayState:
            return super()._merged_state(mine, theirs)
        if not (
            type(mine) is ArrayState
            and type(theirs) is ArrayState
            and mine.space.same_as(theirs.space)
        ):
            where = [
                f"{s.space.name} on {s.space.device}"
                if type(s) is ArrayState
                else "numpy"
                for s in (mine, theirs)
            ]
            raise ValueError(
                "Cannot merge normalizers fitted on different array namespaces "
                f"or devices ({where[0]} and {where[1]}): fit them on data of one "
                "namespace and device, or move one to the other's first."
            )
        if mine.space.numpy_views is not None:
            return ArrayState(self._merge_states(mine.stats, theirs.stats), mine.space)
        stats, report = self._merge_array_states(mine, theirs)
        return self._settle_array_state(mine, stats, _xp.read_report(report), None)

    def _publish(self, state, settings=None) -> None:
        if type(state) is not ArrayState:
            return super()._publish(state, settings)
        views = state.space.numpy_views
        if views is None:
            attributes = self._array_fitted_attributes(state)
        else:
            # Fresh NumPy arrays (never the state's), wrapped without a copy.
            attributes = {
                key: views.from_numpy(value) if type(value) is np.ndarray else value
                for key, value in self._fitted_attributes(state.stats).items()
            }
        attributes["_state"] = state
        self.__dict__.update(attributes)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    # -- learning --------------------------------------------------------------------

    def _learn_array_api(self, X, sample_weight, reset: bool, need_weight: bool):
        """``_learn`` for an array of another namespace (dispatch on)."""
        settings = self._checked_settings()
        # The fitted state, None for fit or the first partial_fit.
        old = None if reset else self.__dict__.get("_state")
        # The state's space if X is a plain batch for it, else None.
        plain_space = (
            old.space
            if type(old) is ArrayState and plain_array_api(self, X, old.space)
            else None
        )
        # As in the NumPy template: a plain batch changes nothing before the
        # single publishing update; validate_data may set attributes.
        with nullcontext() if plain_space is not None else unchanged_on_error(self):
            if plain_space is not None:
                space = plain_space
            else:
                X, space = self._validated_array(X, reset=reset, method="partial_fit")
            # Past validation, a state that is not None is an ArrayState of X's space.
            if space.numpy_views is not None:
                stats = self._empty_state(X.shape[1]) if old is None else old.stats
                X_np = space.numpy_views.to_numpy(X)
                if sample_weight is not None:
                    sample_weight = numpy_sample_weight(
                        sample_weight, X.shape[0], space
                    )
                stats = self._next_state(
                    stats, X_np, sample_weight, reset=reset, need_weight=need_weight
                )
                state = ArrayState(stats, space)
            else:
                if old is None:
                    stats = self._empty_array_stats(space, X.shape[1])
                    old = ArrayState(stats, space, self._initial_array_facts())
                state = self._learn_on_device(old, X, sample_weight, reset, need_weight)
            self._publish(state, settings)
        return self

    def _learn_on_device(self, old, X, sample_weight, reset: bool, need_weight: bool):
        """The device route's ArrayState after learning X; the batch's checks
        are read from the device in one transfer (see ``_array_step``)."""
        if not reset:
            self._check_state(old)
        if sample_weight is None:
            weight_report = {}
        else:
            sample_weight, weight_report = device_sample_weight(
                sample_weight, X.shape[0], old.space
            )
        batch_size = self._fit_batch_size() if reset else None
        if batch_size is None:
            self._check_batch(X)
            return self._array_step(old, X, sample_weight, weight_report, need_weight)
        state = old
        for start, stop in self._batch_bounds(X, batch_size):
            w = None if sample_weight is None else sample_weight[start:stop]
            state = self._array_step(
                state, X[start:stop, :], w, weight_report, need_weight
            )
            weight_report, need_weight = {}, False
        return state

    def _array_step(
        self, old: ArrayState, X, sample_weight, weight_report, need_weight=False
    ):
        """One batch into an ArrayState, its checks read in one transfer.

        The fast path assumes a batch without NaN or infinity; when its
        report says otherwise (``retry``), the careful path computes the
        batch again, NaN-aware, and reads its checks in a second transfer.
        Errors come in the order of the NumPy path: infinity, then the
        sample weights, then the estimator's (overflow).
        """
        xp = old.space.xp
        check_infinity = not get_config()["assume_finite"]
        # A bad batch is found after the arithmetic: NumPy-backed namespaces
        # must not warn about it first.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            stats, report = self._update_array_state(old, X, sample_weight, False)
            if check_infinity and not ("checksum" in report or "infinite" in report):
                report["infinite"] = xp.any(xp.isinf(X))
            values = _xp.read_report({**report, **weight_report})
            if values.get("retry"):
                stats, report = self._update_array_state(old, X, sample_weight, True)
                if check_infinity:
                    report["infinite"] = xp.any(xp.isinf(X))
                values.update(_xp.read_report(report))
        if values.get("infinite"):
            raise infinity_error(to_numpy(xp.any(xp.isinf(X), axis=0)))
        if values.get("bad_weights"):
            check_sample_weight(to_numpy(sample_weight), X.shape[0])
        if need_weight and values.get("positive_weight") == 0:
            raise all_zero_weights_error()
        return self._settle_array_state(old, stats, values, X.shape[0])

    # -- transforming ----------------------------------------------------------------

    def _apply_array_api(self, X, copy: bool, method: str):
        """``_apply`` for an array of another namespace (dispatch on): no
        device synchronisation (infinity is not looked for: it comes out as
        +/-inf), and the result keeps X's autograd history."""
        copy = getattr(self, "copy", True) if copy is None else copy
        self._checked_settings()
        state = self.__dict__.get("_state")
        if type(state) is ArrayState and plain_array_api(self, X, state.space):
            converted = False
        else:
            check_is_fitted(self)
            original = X
            X, _ = self._validated_array(X, reset=False, method=method)
            state = self._state
            converted = X is not original
        tracked = getattr(X, "requires_grad", False)
        # Never in place into an array that autograd tracks: its history
        # would be rewritten (and PyTorch refuses it for a leaf).
        in_place = (converted or not copy) and not tracked and is_writeable_array(X)
        inverse = method == "inverse_transform"
        views = state.space.numpy_views
        if views is not None and not tracked:
            view = views.to_numpy(X)
            dense = self._inverse_transform_dense if inverse else self._transform_dense
            out = dense(view, view if in_place else np.empty_like(view))
            return X if out is view else views.from_numpy(out)
        if inverse:
            return self._inverse_transform_array(state, X, in_place)
        return self._transform_array(state, X, in_place)

    # -- validation ------------------------------------------------------------------

    def _validated_array(self, X, *, reset: bool, method: str):
        """X, an array of another namespace, validated as ``validate_data``
        validates NumPy input (float dtypes of its device, width, names), and
        the ``Space`` of the statistics. Raises if X is not in the namespace
        and on the device of the fit (unless ``reset``).

        Validation runs on X without autograd history; a converted X (an
        integer dtype, say) is converted from the original, which keeps its
        history for ``transform``.
        """
        state = None if reset else self.__dict__.get("_state")
        if reset:
            space = _xp.space_of(X)
        elif type(state) is ArrayState and _same_place(state.space, X):
            space = state.space
        else:
            fitted = state.space if type(state) is ArrayState else None
            raise self._namespace_mismatch(X, fitted, method)
        plain = X.detach() if getattr(X, "requires_grad", False) else X
        checked = validate_data(
            self,
            plain,
            reset=reset,
            accept_sparse=False,
            dtype=space.input_dtypes,
            ensure_all_finite=False,
        )
        if checked is not plain:
            X = space.xp.astype(X, checked.dtype) if plain is not X else checked
        return X, space

    def _refuse_if_fitted_elsewhere(self, X, method: str) -> None:
        """Raise for NumPy-like input given to an estimator fitted on
        another namespace (after the parameters' own errors)."""
        state = self.__dict__.get("_state")
        if type(state) is ArrayState:
            self._checked_settings()
            raise self._namespace_mismatch(X, state.space, method)

    def _namespace_mismatch(self, X, fitted, method: str) -> ValueError:
        """The error for input of another namespace or device than the fit's
        (``fitted`` the fit's Space, None for NumPy)."""
        name = type(self).__name__
        if fitted is None:
            where, target = "NumPy arrays", "a NumPy array"
        else:
            where = f"{fitted.name} arrays on device {fitted.device}"
            target = f"a {fitted.name} array on device {fitted.device}"
        if is_array_api_input(X) and get_config()["array_api_dispatch"]:
            got = f"{array_namespace(X).__name__.split('.')[-1]} arrays on device "
            got += str(array_device(X))
        else:
            got = f"a {type(X).__module__.split('.')[0]}.{type(X).__name__}"
        hint = ""
        if fitted is not None and not get_config()["array_api_dispatch"]:
            hint = (
                " Array API dispatch is off, so X was converted to NumPy: turn it "
                "on with sklearn.set_config(array_api_dispatch=True)."
            )
        if can_move_estimators():
            move = (
                "move the estimator to X's namespace and device: 'from "
                "sklearn.utils._array_api import get_namespace_and_device, "
                "move_estimator_to; xp, _, device = get_namespace_and_device(X); "
                "estimator = move_estimator_to(estimator, xp, device)'"
            )
        else:
            move = "fit the estimator again on such data"
        return ValueError(
            f"Inputs passed to {name}.{method}() must use the same namespace "
            "and the same device as those passed to fit(): this estimator was "
            f"fitted on {where} and got {got}. Pass X as {target}, or {move}."
            f"{hint}"
        )

    # -- copies, checkpoints and moves -----------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # A checkpoint holds NumPy data (it must load without the library or
        # the device): that of a NumPy-fitted twin, which loads as such.
        if type(self.__dict__.get("_state")) is not ArrayState:
            return super().__getstate__()
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.__dict__.update(self._numpy_attributes())
        return twin.__getstate__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        state = self.__dict__.get("_state")
        if type(state) is not ArrayState:
            # What deepcopy does without this method: copy the checkpoint.
            new.__setstate__(_copy.deepcopy(self.__getstate__(), memo))
            return new
        # Statistics on another namespace stay there (a namespace module
        # cannot be copied; the arrays can).
        kept = {
            key: value
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes and key != "_state"
        }
        new.__dict__.update(_copy.deepcopy(kept, memo))
        stats = _copy.deepcopy(state.stats, memo)
        new.__dict__["_state"] = state._replace(stats=stats)
        new._publish(new._state)
        return new

    def _numpy_stats(self, state: ArrayState):
        """The statistics of an ArrayState as a NumPy state (float64)."""
        if state.space.numpy_views is not None:
            return state.stats
        return self._array_stats_to_numpy(state.stats)

    def _numpy_attributes(self) -> dict[str, Any]:
        """The state and fitted arrays as NumPy data (floats as float64).

        Converted one by one, so that it needs no valid parameters, as
        every checkpoint; a device without float64 gives float32 values.
        """
        attributes = {"_state": self._numpy_stats(self._state)}
        for key, value in self.__dict__.items():
            if is_array_api_input(value):
                value = to_numpy(value)
                wide = np.float64 if value.dtype.kind == "f" else np.int64
                attributes[key] = np.array(value, dtype=wide)
        return attributes

    def __sklearn_array_api_convert__(self, converter: Callable[[Any], Any]) -> Self:
        """A copy with its statistics moved by ``converter`` (the protocol of
        ``sklearn.utils._array_api.move_estimator_to``)."""
        from sklearn.base import clone

        new = clone(self)
        kept = {
            key: value
            for key, value in self.__dict__.items()
            if key not in self._transient_attributes and key not in new.__dict__
        }
        state = kept.pop("_state", None)
        new.__dict__.update(kept)
        if state is None:
            return new
        if type(state) is ArrayState:
            numpy_stats = self._numpy_stats(state)
        else:
            numpy_stats = state
        # The states of the NumPy path are never written into: the copy may
        # share them.
        probe = converter(np.zeros(1))
        if isinstance(probe, np.ndarray):
            new._publish(numpy_stats)
            return new
        space = _xp.space_of(probe)
        if space.numpy_views is not None:
            new._publish(ArrayState(numpy_stats, space))
        else:
            stats = self._array_stats_from_numpy(space, numpy_stats, converter)
            new._publish(self._array_state_from_numpy(space, stats, numpy_stats))
        return new
