"""The base of every sknorm streaming estimator: the plumbing, written once.

:class:`StreamingNormalizer` owns what every estimator of the family must do
the same way: parameter validation on every call, input validation with the
same messages, the fast path for plain arrays, the all-or-nothing update, the
``n_samples_seen_`` rule, ``merge``, tags, versioned checkpoints and the Dask
entry point. An estimator is a module of hooks:

==============================  ===============================================
hook                            what it returns or does
==============================  ===============================================
``_settings()``                 what the parameters mean for the statistics
                                (e.g. a statistics mode); raise ValueError for
                                parameters that conflict. Computed when the
                                parameters change, then cached.
``_empty_state(n, block)``      the state of a stream that has seen nothing
                                (``block`` numbers the parts of a Dask fit)
``_check_state(state)``         raise if the parameters changed in a way the
                                state cannot follow (e.g. another mode)
``_check_batch(X)``             raise for a batch the update cannot take
``_update_state(old, X, w,      the state after one batch; pure: never
on_nonfinite)``                 changes ``old``. If it calls ``on_nonfinite``
                                when it meets a value that may be infinite,
                                ``_defers_infinity_check`` may say so
``_merge_states(old, new)``     the state of two disjoint parts (``new``
                                later); needed for ``merge`` and Dask trees
``_state_merges()``             whether ``_merge_states`` applies now
``_fitted_attributes(state)``   the public fitted attributes, fresh arrays
``_transform_dense(X, out)``    ``transform`` of a float ndarray: the result,
                                written into ``out`` (which may be X) or new;
                                ``_transform_sparse(X)`` in place for CSR/CSC,
                                when sparse is accepted
``_inverse_transform_dense``,   the same for ``inverse_transform`` (the method
``_inverse_transform_sparse``   exists only if the dense hook is overridden)
``_state_to_dict(state)``,      the plain-data checkpoint form and back;
``_state_from_dict(data)``      ``_upgrade_checkpoint`` reads older formats
==============================  ===============================================

and class attributes: ``_sparse_formats`` (accepted scipy.sparse formats),
``_offers_merge`` (a public :meth:`merge`), ``_merge_ignored_params``,
``_transient_attributes`` (caches left out of checkpoints).

**Array API.** A class with ``_array_api_support = True`` also takes the
arrays of any namespace that scikit-learn's array API dispatch accepts
(PyTorch, CuPy, array-api-strict, ...) and keeps its statistics in that
namespace, on that device (see :mod:`sknorm._xp`). Its state is then an
:class:`~sknorm._xp.ArrayState` (the statistics, their ``Space`` and what the
host knows about them), and it supplies the array counterparts of the hooks:

====================================  =========================================
hook                                  what it returns or does
====================================  =========================================
``_empty_array_stats(space, n)``      the statistics of an empty stream
``_update_array_state(old, X, w,      ``(stats, report)``: the statistics
careful)``                            after a batch and a dict of 0-d device
                                      arrays to check. ``careful=False`` is
                                      the fast path; a ``checksum`` that is
                                      not finite asks for the careful one
                                      (NaN). The base adds ``infinite``
                                      unless ``checksum`` or ``infinite`` is
                                      there
``_settle_array_state(old, stats,     the new ArrayState from the report's
values, n_rows)``                     values (or raise, e.g. an overflow)
``_merge_array_states(old, new)``     ``(stats, report)`` of a merge
``_array_fitted_attributes(state)``   the public fitted attributes
``_transform_array(state, X,          ``transform`` of an array of the
in_place)``,                          state's namespace and device (and
``_inverse_transform_array``          ``inverse_transform``)
``_array_stats_to_numpy(stats)``,     the same statistics as a NumPy state
``_array_stats_from_numpy(space,      and back (checkpoints, moving the
stats, move)``                        estimator between namespaces)
====================================  =========================================

The rules: ``partial_fit`` reads the device once (the report; twice for a
batch with NaN), ``transform`` never. Inputs must stay in the namespace and on
the device of the first fit, as scikit-learn requires; a checkpoint (pickle,
skops) holds NumPy data, so a loaded estimator is a NumPy one, which
``sklearn.utils._array_api.move_estimator_to`` moves back where available.

The update is all-or-nothing: the new state is computed from the old one and
the validated batch, and published in one ``__dict__.update``; a call that
raises leaves every attribute as it was. Fitted arrays are never shared with
the state, so writing into one cannot change what is learned next.
"""

from __future__ import annotations

import copy as _copy
import inspect
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _xp
from ._atomic import check_mergeable, unchanged_on_error
from ._checkpoint import dump_estimator_state, load_estimator_state
from ._compat import (
    array_device,
    array_namespace,
    can_move_estimators,
    is_writeable_array,
    to_numpy,
    validate_params,
)
from ._validation import (
    FLOAT_DTYPES,
    check_array_sample_weight,
    check_no_infinity,
    check_sample_weight,
    infinity_error,
    is_array_api_input,
    is_dask_collection,
    numpy_from_array_api,
    plain_array,
    plain_array_api,
)
from ._xp import ArrayState

__all__ = ["SparseCenteringError", "StreamingNormalizer", "samples_seen"]


class SparseCenteringError(ValueError, TypeError):
    """Sparse input given to a normalizer that centers (``with_mean=True``).

    A ValueError, as in ``StandardScaler``; also a TypeError, the exception
    scikit-learn's checks expect from an estimator that rejects a sparse type.
    """


def samples_seen(count: np.ndarray) -> int | np.ndarray:
    """``n_samples_seen_`` from per-feature counts, as ``StandardScaler`` has it.

    An int when every feature saw the same number of values, else a fresh
    int64 array of the per-feature counts.
    """
    if count.size and not np.count_nonzero(count - count[0]):
        return int(count[0])
    return np.array(count, dtype=np.int64)


_ALL_ZERO_WEIGHTS = (
    "All sample weights are zero: fit has nothing to learn "
    "from. Give at least one sample a positive weight."
)


def _same_place(space, X) -> bool:
    """Whether X is in the namespace and on the device of ``space``."""
    return array_namespace(X) is space.xp and array_device(X) == space.device


_PARAM_NAMES: dict[type, frozenset] = {}


def _param_names(cls) -> frozenset:
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = frozenset(cls._get_param_names())
    return names


def _param_defaults(cls) -> dict[str, Any]:
    signature = inspect.signature(cls.__init__)
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name != "self" and p.default is not inspect.Parameter.empty
    }


def _overrides(hook: str):
    """``available_if`` check: the estimator's class overrides ``hook``."""

    def check(estimator) -> bool:
        return getattr(type(estimator), hook) is not getattr(StreamingNormalizer, hook)

    return check


class StreamingNormalizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Base class of the sknorm estimators that learn from streams.

    Not public: subclass it through the hooks listed in the module docstring.
    """

    _sparse_formats: ClassVar[tuple[str, ...]] = ()
    _offers_merge: ClassVar[bool] = False
    _merge_ignored_params: ClassVar[tuple[str, ...]] = ("copy",)
    # Caches, left out of checkpoints: the validated settings and the
    # feature names as a pandas Index (see plain_array).
    _transient_attributes: ClassVar[frozenset[str]] = frozenset(
        {"_settings_memo", "_names_index"}
    )
    # Read by the streaming composites: partial_fit is all-or-nothing and
    # replaces fitted attributes instead of writing into them, so a shallow
    # copy of __dict__ is a complete snapshot.
    _sknorm_atomic: ClassVar[bool] = True
    # Whether array API inputs (with dispatch on) are supported.
    _array_api_support: ClassVar[bool] = False

    # -- hooks (see the module docstring) -------------------------------------

    def _settings(self) -> Any:
        return None

    def _empty_state(self, n_features: int, block: int | None = None):
        raise NotImplementedError

    def _check_state(self, state) -> None:
        pass

    def _check_batch(self, X) -> None:
        pass

    def _update_state(self, old, X, sample_weight, on_nonfinite=None):
        raise NotImplementedError

    def _defers_infinity_check(self, X, sample_weight) -> bool:
        return False

    def _merge_states(self, old, new):
        raise NotImplementedError

    def _state_merges(self) -> bool:
        return _overrides("_merge_states")(self)

    def _fitted_attributes(self, state) -> dict[str, Any]:
        raise NotImplementedError

    def _fit_batch_size(self) -> int | None:
        """Rows per batch in which ``fit`` streams X (None: one batch)."""
        return None

    def _transform_dense(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _transform_sparse(self, X):
        raise NotImplementedError

    def _inverse_transform_dense(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _inverse_transform_sparse(self, X):
        raise NotImplementedError

    def _state_to_dict(self, state) -> dict[str, Any]:
        return state

    def _state_from_dict(self, data: dict[str, Any]):
        return data

    def _state_from_legacy(self, stored):
        raise ValueError(
            f"This {type(self).__name__} checkpoint holds a statistics state of "
            f"type {type(stored).__name__}; it is damaged or was not written by "
            "sknorm."
        )

    def _upgrade_checkpoint(self, state: dict, version: int) -> dict:
        return state

    # Array API hooks, for classes with _array_api_support (see the module
    # docstring).

    def _empty_array_stats(self, space, n_features: int):
        raise NotImplementedError

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

    def _initial_array_facts(self):
        return None

    # -- parameters -------------------------------------------------------------

    def __setattr__(self, name, value):
        # A new parameter value (set_params or assignment) is validated again
        # at the next call; until then the cached settings stand.
        if name in _param_names(type(self)):
            self.__dict__.pop("_settings_memo", None)
        object.__setattr__(self, name, value)

    def _checked_settings(self):
        """The validated parameters' settings, computed once per change.

        Parameters are validated as ``fit`` validates them (unless
        scikit-learn's ``skip_parameter_validation`` is set), so a call with
        invalid parameters raises before it changes anything.
        """
        memo = self.__dict__.get("_settings_memo")
        if memo is None:
            if not get_config()["skip_parameter_validation"]:
                validate_params(self)
            memo = self.__dict__["_settings_memo"] = (self._settings(),)
        return memo[0]

    def _state_fits(self, state) -> bool:
        try:
            self._check_state(state)
        except ValueError:
            return False
        return True

    # -- learning ---------------------------------------------------------------

    def _fit(self, X, sample_weight=None):
        """``fit``: forget, then learn X (in batches if the estimator asks)."""
        return self._learn(X, sample_weight, reset=True, need_weight=True)

    def _partial_fit(self, X, sample_weight=None):
        """``partial_fit``: the first call starts the stream."""
        return self._learn(X, sample_weight, reset="_state" not in self.__dict__)

    def _learn(self, X, sample_weight=None, *, reset: bool, need_weight=False):
        settings = self._checked_settings()
        array = None if reset else plain_array(self, X)
        plain = array is not None
        if plain:
            X = array
        elif is_dask_collection(X):
            if not reset:
                self._check_fitted_on_numpy(X, "partial_fit")
            from ._dask import learn_dask  # dask is an optional extra

            return learn_dask(self, X, sample_weight, reset, need_weight)
        else:
            if is_array_api_input(X):
                X = self._array_api_or_numpy(X)
                if not isinstance(X, np.ndarray):
                    return self._learn_array_api(X, sample_weight, reset, need_weight)
            if not reset:
                self._check_fitted_on_numpy(X, "partial_fit")
        # A plain batch changes nothing before the single publishing update,
        # so there is nothing to restore; validate_data may set attributes.
        with nullcontext() if plain else unchanged_on_error(self):
            if not plain:
                X = self._validate_input(X, reset=reset, learning=True)
            old = self._empty_state(X.shape[1]) if reset else self._state
            # The update may look for infinities itself, but an error about
            # the state would come first: then X is checked here.
            defer = self._defers_infinity_check(X, sample_weight) and (
                reset or self._state_fits(old)
            )
            if not defer:
                check_no_infinity(X)
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X.shape[0])
                if need_weight and not sample_weight.any():
                    # A stream may pass a batch of zero weights (time still
                    # passes in half-life mode), but a fit would learn nothing.
                    raise ValueError(_ALL_ZERO_WEIGHTS)
            if not reset:
                self._check_state(old)
            on_nonfinite = (lambda: check_no_infinity(X)) if defer else None
            batch_size = self._fit_batch_size() if reset else None
            if batch_size is None:
                self._check_batch(X)
                state = self._update_state(old, X, sample_weight, on_nonfinite)
            else:
                state = self._update_in_batches(
                    old, X, sample_weight, batch_size, on_nonfinite
                )
            self._publish(state, settings)
        return self

    def _update_in_batches(self, state, X, sample_weight, batch_size, on_nonfinite):
        """Feed X to the update in consecutive batches of ``batch_size`` rows.

        A last batch too small for the update (``_check_batch``) joins the
        batch before it.
        """
        n_samples = X.shape[0]
        starts = list(range(0, n_samples, batch_size))
        if len(starts) > 1:
            try:
                self._check_batch(X[starts[-1] :])
            except ValueError:
                starts.pop()
        bounds = [*starts, n_samples]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            batch = X[start:stop]
            self._check_batch(batch)
            w = None if sample_weight is None else sample_weight[start:stop]
            state = self._update_state(state, batch, w, on_nonfinite)
        return state

    def _publish(self, state, settings=None) -> None:
        """Set the fitted attributes from a state, in one update."""
        if type(state) is ArrayState:
            attributes = self._array_fitted_attributes(state)
        else:
            attributes = self._fitted_attributes(state)
        attributes["_state"] = state
        self.__dict__.update(attributes)

    # -- learning from arrays of other namespaces (array API) -------------------

    def _array_api_or_numpy(self, X):
        """X itself if array API dispatch will handle it here, else as NumPy.

        Without dispatch, scikit-learn converts such arrays with
        ``numpy.asarray``; so does sknorm, keeping float32 float32.
        """
        if not get_config()["array_api_dispatch"]:
            return numpy_from_array_api(X)
        if not self._array_api_support:
            kind = f"{type(X).__module__.split('.')[0]}.{type(X).__name__}"
            raise TypeError(
                f"{type(self).__name__} does not support array API inputs: it got "
                f"a {kind} while scikit-learn's array API dispatch is on "
                "(sklearn.set_config(array_api_dispatch=True)). Convert X to a "
                "NumPy array first (for a PyTorch tensor: X.cpu().numpy()), or "
                "call it with dispatch off (sklearn.config_context("
                "array_api_dispatch=False)), which converts X with numpy.asarray. "
                "BatchNormalizer, LayerNormalizer and GroupNormalizer support "
                "array API inputs."
            )
        return X

    def _learn_array_api(self, X, sample_weight, reset: bool, need_weight: bool):
        """``_learn`` for an array of another namespace (dispatch on).

        The statistics stay on X's device; the batch's checks are read from
        the device in one transfer (see ``_array_step``).
        """
        settings = self._checked_settings()
        old = None if reset else self.__dict__.get("_state")
        fast = type(old) is ArrayState and plain_array_api(self, X, old.space)
        with nullcontext() if fast else unchanged_on_error(self):
            if fast:
                space = old.space
            else:
                X, space = self._validated_array(X, reset=reset, method="partial_fit")
            if reset:
                stats = self._empty_array_stats(space, X.shape[1])
                old = ArrayState(stats, space, self._initial_array_facts())
            else:
                self._check_state(old)
            if sample_weight is None:
                weight_report = {}
            else:
                sample_weight, weight_report = check_array_sample_weight(
                    sample_weight, X.shape[0], space
                )
            batch_size = self._fit_batch_size() if reset else None
            if batch_size is None:
                self._check_batch(X)
                state = self._array_step(
                    old, X, sample_weight, weight_report, need_weight
                )
            else:
                state = old
                for start, stop in self._batch_bounds(X, batch_size):
                    w = None if sample_weight is None else sample_weight[start:stop]
                    state = self._array_step(
                        state, X[start:stop, ...], w, weight_report, need_weight
                    )
                    weight_report, need_weight = {}, False
            self._publish(state, settings)
        return self

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
            raise ValueError(_ALL_ZERO_WEIGHTS)
        return self._settle_array_state(old, stats, values, X.shape[0])

    def _batch_bounds(self, X, batch_size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of the batches ``fit`` streams X in; a last batch
        too small for the update (``_check_batch``) joins the batch before."""
        n_samples = X.shape[0]
        starts = list(range(0, n_samples, batch_size))
        if len(starts) > 1:
            try:
                self._check_batch(X[starts[-1] :, ...])
            except ValueError:
                starts.pop()
        bounds = [*starts, n_samples]
        batches = list(zip(bounds[:-1], bounds[1:], strict=True))
        for start, stop in batches:
            self._check_batch(X[start:stop, ...])
        return batches

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

    def _check_fitted_on_numpy(self, X, method: str) -> None:
        """Raise for NumPy-like input given to an estimator fitted elsewhere."""
        state = self.__dict__.get("_state")
        if type(state) is ArrayState:
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

    def _validate_input(self, X, *, reset: bool, learning: bool, copy=False):
        """``validate_data`` with sknorm's rules: float dtypes, the accepted
        sparse formats, NaN allowed, infinity left to the caller's check."""
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=self._sparse_formats or False,
            dtype=FLOAT_DTYPES,
            ensure_all_finite=False,
            copy=copy,
            force_writeable=not learning,
        )
        if sp.issparse(X) and self._centers_data():
            raise SparseCenteringError(
                "Cannot center sparse data: pass with_mean=False to scale it "
                "without centering (centering would make it dense)."
            )
        return X

    def _centers_data(self) -> bool:
        return bool(getattr(self, "with_mean", False))

    # -- merging ----------------------------------------------------------------

    @available_if(lambda self: self._offers_merge)
    def merge(self, other):
        """Combine with an estimator fitted on disjoint data; return self.

        Afterwards ``self`` holds the statistics of the union, as if one
        estimator had learned all the data (see the class's Notes for the
        order and the guarantee).

        Parameters
        ----------
        other : estimator of the same class
            Fitted on data disjoint from ``self``'s, with the same parameters
            and features.

        Returns
        -------
        self : object
            The merged estimator.
        """
        check_mergeable(self, other, ignored_params=self._merge_ignored_params)
        settings = self._checked_settings()
        mine, theirs = self._state, other._state
        self._check_state(mine)
        self._check_state(theirs)
        if type(mine) is ArrayState or type(theirs) is ArrayState:
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
                    "Cannot merge normalizers fitted on different array "
                    f"namespaces or devices ({where[0]} and {where[1]}): fit "
                    "them on data of one namespace and device, or move one to "
                    "the other's first."
                )
            stats, report = self._merge_array_states(mine, theirs)
            state = self._settle_array_state(mine, stats, _xp.read_report(report), None)
            self._publish(state, settings)
            return self
        self._publish(self._merge_states(mine, theirs), settings)
        return self

    # -- transforming -----------------------------------------------------------

    def transform(self, X, copy=None):
        """Normalize X with the current statistics.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The data. NaN is kept as NaN.
        copy : bool, default=None
            Copy X first; defaults to the ``copy`` parameter.

        Returns
        -------
        X_tr : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Normalized data, of the input's float dtype (float32 stays
            float32; integers become float64).
        """
        return self._apply(X, copy, "transform")

    @available_if(_overrides("_inverse_transform_dense"))
    def inverse_transform(self, X, copy=None):
        """Undo ``transform``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Normalized data.
        copy : bool, default=None
            Copy X first; defaults to the ``copy`` parameter.

        Returns
        -------
        X_original : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Data in the original units.
        """
        return self._apply(X, copy, "inverse_transform")

    def _apply(self, X, copy, method: str):
        """Validate X as ``method`` needs it, then run the method's hook."""
        copy = getattr(self, "copy", True) if copy is None else copy
        inverse = method == "inverse_transform"
        dense = self._inverse_transform_dense if inverse else self._transform_dense
        array = plain_array(self, X)
        if array is not None:
            self._checked_settings()
            check_no_infinity(array)
            in_place = not copy and array.flags.writeable
            return dense(array, array if in_place else np.empty_like(array))
        if is_dask_collection(X):
            check_is_fitted(self)
            self._check_fitted_on_numpy(X, method)
            from ._dask import transform_dask  # dask is an optional extra

            return transform_dask(self, X, method)
        if is_array_api_input(X):
            X = self._array_api_or_numpy(X)
            if not isinstance(X, np.ndarray):
                return self._apply_array_api(X, copy, method)
        X = self._checked_input(X, copy, method)
        if sp.issparse(X):
            return (
                self._inverse_transform_sparse if inverse else self._transform_sparse
            )(X)
        return dense(X, X)

    def _apply_array_api(self, X, copy: bool, method: str):
        """``_apply`` for an array of another namespace (dispatch on): no
        device synchronisation (infinity is not looked for: it comes out as
        +/-inf), and the result keeps X's autograd history."""
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
        # Never in place into an array that autograd tracks: its history
        # would be rewritten (and PyTorch refuses it for a leaf).
        in_place = (
            (converted or not copy)
            and not getattr(X, "requires_grad", False)
            and is_writeable_array(X)
        )
        if method == "inverse_transform":
            return self._inverse_transform_array(state, X, in_place)
        return self._transform_array(state, X, in_place)

    def _checked_input(self, X, copy: bool = False, method: str = "transform"):
        """X validated for a transform, by the same rules as ``transform``:
        the parameters and fit checked, a float array or accepted sparse
        matrix of the fitted width without infinity, owned if ``copy``.

        An array of another namespace (dispatch on) is validated as
        ``transform`` validates it, and returned in its namespace."""
        self._checked_settings()
        array = plain_array(self, X)
        if array is not None:
            check_no_infinity(array)
            return array.copy() if copy or not array.flags.writeable else array
        check_is_fitted(self)
        if is_array_api_input(X):
            X = self._array_api_or_numpy(X)
            if not isinstance(X, np.ndarray):
                X, _ = self._validated_array(X, reset=False, method=method)
                return _xp._copy(self._state.space.xp, X) if copy else X
        self._check_fitted_on_numpy(X, method)
        return self._validated_for_transform(X, copy)

    def _validated_for_transform(self, X, copy: bool):
        """X checked for a transform: an array of the fitted width, without
        infinity, owned by the caller if ``copy``."""
        X = self._validate_input(X, reset=False, learning=False, copy=copy)
        check_no_infinity(X)
        return X

    # -- checkpoints ------------------------------------------------------------

    def __getstate__(self):
        # A checkpoint holds plain, versioned data (see _checkpoint) and no
        # caches, which are rebuilt on demand. Statistics on another array
        # namespace are saved as NumPy data (a checkpoint must load without
        # that library or device): the copy loads as a NumPy-fitted estimator.
        state = super().__getstate__()
        if type(state.get("_state")) is ArrayState:
            state = {**state, **self._numpy_attributes()}
        return dump_estimator_state(self, state)

    def __deepcopy__(self, memo):
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

    def _numpy_attributes(self) -> dict[str, Any]:
        """The state and fitted arrays as NumPy data (floats as float64).

        Converted one by one, so that it needs no valid parameters, as
        every checkpoint; a device without float64 gives float32 values.
        """
        attributes = {"_state": self._array_stats_to_numpy(self._state.stats)}
        for key, value in self.__dict__.items():
            if is_array_api_input(value):
                value = to_numpy(value)
                wide = np.float64 if value.dtype.kind == "f" else np.int64
                attributes[key] = np.array(value, dtype=wide)
        return attributes

    def __sklearn_array_api_convert__(self, converter):
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
            numpy_stats = self._array_stats_to_numpy(state.stats)
        else:
            numpy_stats = state
        probe = converter(np.zeros(1))
        if isinstance(probe, np.ndarray):
            new._publish(numpy_stats)
        else:
            space = _xp.space_of(probe)
            stats = self._array_stats_from_numpy(space, numpy_stats, converter)
            new._publish(self._array_state_from_numpy(space, stats, numpy_stats))
        return new

    def _array_state_from_numpy(self, space, stats, numpy_stats) -> ArrayState:
        """The ArrayState of statistics moved from NumPy (``numpy_stats``)."""
        return ArrayState(stats, space, self._initial_array_facts())

    def __setstate__(self, state):
        state = load_estimator_state(self, state)
        # A parameter added since the checkpoint was written takes its default.
        for name, default in _param_defaults(type(self)).items():
            state.setdefault(name, default)
        super().__setstate__(state)

    # -- tags -------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = bool(self._sparse_formats) and not self._centers_data()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = self._array_api_support
        return tags
