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
``_fit_batch_size()``           rows per batch in which ``fit`` streams X
                                (None: one batch)
``_update_state(old, X, w,      the state after one batch; pure: never
on_nonfinite)``                 changes ``old``. If it calls ``on_nonfinite``
                                when it meets a value that may be infinite,
                                ``_defers_infinity_check`` may say so
``_merge_states(old, new)``     the state of two disjoint parts (``new``
                                later); needed for ``merge`` and Dask trees
``_state_merges()``             whether ``_merge_states`` applies now
``_fitted_attributes(state)``   the public fitted attributes, fresh arrays
                                (never the state's)
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
``_transient_attributes`` (caches left out of checkpoints). An estimator whose
transform can look for infinity in its own pass also supplies
``_transform_finding_infinity(X, out, on_infinity)``: an out-of-place
``transform`` then makes no separate pass over X. One whose transform always
makes a new array (it ignores ``out``) sets ``_writes_in_place = False``, so
that its transforms take that route too.

**Hand-off to the array API path.** Arrays of other libraries (PyTorch
tensors, CuPy arrays, ...) are converted to NumPy here as scikit-learn
converts them without array API dispatch (float32 stays float32), and refused
with dispatch on (:func:`~sknorm._array_api.to_numpy_input`): that is all this
template knows of them. An estimator that supports them mixes in
:class:`~sknorm._array_api.ArrayAPISupport` (first among its bases), which
overrides this template's entry points ``_learn``, ``_apply``,
``_checked_input``, ``_merged_state``, ``_publish``, pickling, deep copies and
tags, takes arrays of other libraries and the states fitted on them, and
hands everything else back here; its module documents its hooks.

The update is all-or-nothing: the new state is computed from the old one and
the validated batch, and published in one ``__dict__.update``; a call that
raises leaves every attribute as it was. Fitted arrays are never shared with
the state, so writing into one cannot change what is learned next.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import to_numpy_input
from ._atomic import check_mergeable, unchanged_on_error
from ._checkpoint import dump_estimator_state, load_estimator_state
from ._compat import _fit_context, available_if, validate_params
from ._typing import MatrixLike, MatrixOutput
from ._validation import (
    FLOAT_DTYPES,
    all_zero_weights_error,
    check_no_infinity,
    check_sample_weight,
    is_dask_collection,
    plain_array,
)

if TYPE_CHECKING:
    from sklearn.utils import Tags
    from typing_extensions import Self

__all__ = [
    "DocumentationLink",
    "SparseCenteringError",
    "StreamingNormalizer",
    "part_seed",
    "samples_seen",
]


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


def part_seed(random_state, block: int | None = None) -> int:
    """A seed for the random choices of one state, from ``random_state``.

    ``block`` numbers the parts of a parallel (Dask) fit: each part draws
    its own seed, derived from the estimator's and its number, so parts do
    not share coins and a fixed ``random_state`` and partition give the same
    result every time.
    """
    generator = check_random_state(random_state)
    seed = int(generator.randint(np.iinfo(np.int64).max, dtype=np.int64))
    if block is not None:
        seed = int(np.random.SeedSequence([seed, block]).generate_state(1)[0])
    return seed


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


class DocumentationLink:
    """Mixin: the estimator's HTML representation links to its API page."""

    _doc_link_module = "sknorm"

    @property
    def _doc_link_template(self) -> str:
        from . import __version__  # sknorm/__init__ imports this module first

        version = "latest" if ".dev" in __version__ else "stable"
        return (
            f"https://sknorm.readthedocs.io/en/{version}/api/generated/"
            "{estimator_module}.{estimator_name}.html"
        )


class StreamingNormalizer(
    DocumentationLink, OneToOneFeatureMixin, TransformerMixin, BaseEstimator
):
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
    # Whether the class's transform finds infinity in its own pass (it
    # overrides _transform_finding_infinity); set by __init_subclass__.
    _finds_infinity: ClassVar[bool] = False
    # Whether a transform with copy=False writes its result into X; one that
    # always makes a new array says False, and then looks for infinity in
    # its own pass (if it finds any).
    _writes_in_place: ClassVar[bool] = True

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

    def _transform_finding_infinity(
        self, X: np.ndarray, out: np.ndarray, on_infinity: Callable[[], None] | None
    ) -> np.ndarray:
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

    # -- parameters -------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> None:
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: MatrixLike, y: object = None) -> Self:
        """Learn from all of X, forgetting what was learned before.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The data. NaN marks a missing value.
        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X)

    def partial_fit(self, X: MatrixLike, y: object = None) -> Self:
        """Learn from one more batch of the stream.

        The first call starts the stream. If it raises, the fitted state is
        left exactly as it was.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The batch. NaN marks a missing value.
        y : None
            Ignored.

        Returns
        -------
        self : object
            Updated estimator.
        """
        return self._partial_fit(X)

    def _fit(self, X, sample_weight=None):
        """``fit``: forget, then learn X (in batches if the estimator asks)."""
        return self._learn(X, sample_weight, reset=True, need_weight=True)

    def _partial_fit(self, X, sample_weight=None):
        """``partial_fit``: the first call starts the stream."""
        return self._learn(X, sample_weight, reset="_state" not in self.__dict__)

    def _learn(self, X, sample_weight=None, *, reset: bool, need_weight=False):
        settings = self._checked_settings()
        array = None if reset else plain_array(self, X)
        if array is not None:
            # A plain batch changes nothing before the single publishing
            # update, so there is nothing to restore.
            state = self._next_state(self._state, array, sample_weight, reset=False)
            self._publish(state, settings)
            return self
        if is_dask_collection(X):
            from ._dask import learn_dask  # dask is an optional extra

            return learn_dask(self, X, sample_weight, reset, need_weight)
        X = to_numpy_input(self, X)  # arrays of other libraries
        # validate_data may set attributes before a later check fails.
        with unchanged_on_error(self):
            X = self._validate_input(X, reset=reset, learning=True)
            old = self._empty_state(X.shape[1]) if reset else self._state
            state = self._next_state(
                old, X, sample_weight, reset=reset, need_weight=need_weight
            )
            self._publish(state, settings)
        return self

    def _next_state(self, old, X, sample_weight, *, reset: bool, need_weight=False):
        """The state after learning X (validated) from ``old``: the checks of
        X, of the weights and of the state, then the update hooks. ``reset``
        for ``fit`` (``old`` is then empty), ``need_weight`` to refuse weights
        that are all zero."""
        # The update may look for infinities itself, but an error about the
        # state would come first: then X is checked here.
        state_fits = reset or self._state_fits(old)
        defer = state_fits and self._defers_infinity_check(X, sample_weight)
        if not defer:
            check_no_infinity(X)
        if sample_weight is not None:
            try:
                sample_weight = check_sample_weight(sample_weight, X.shape[0])
                if need_weight and not sample_weight.any():
                    # A stream may pass a batch of zero weights (time still
                    # passes in half-life mode), but a fit would learn nothing.
                    raise all_zero_weights_error()
            except (ValueError, TypeError):
                if defer:
                    check_no_infinity(X)  # an infinity is reported first
                raise
        if not state_fits:
            self._check_state(old)  # raises
        on_nonfinite = (lambda: check_no_infinity(X)) if defer else None
        batch_size = self._fit_batch_size() if reset else None
        if batch_size is None:
            self._check_batch(X)
            return self._update_state(old, X, sample_weight, on_nonfinite)
        state = old
        for start, stop in self._batch_bounds(X, batch_size):
            w = None if sample_weight is None else sample_weight[start:stop]
            state = self._update_state(state, X[start:stop, :], w, on_nonfinite)
        return state

    def _batch_bounds(self, X, batch_size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of the consecutive batches of ``batch_size`` rows
        in which ``fit`` streams X, each checked by ``_check_batch``; a last
        batch too small for the update joins the batch before it."""
        # Rows as X[start:stop, :]: every axis indexed, which ndarrays, sparse
        # matrices and the array API standard all accept.
        n_samples = X.shape[0]
        starts = list(range(0, n_samples, batch_size))
        if len(starts) > 1:
            try:
                self._check_batch(X[starts[-1] :, :])
            except ValueError:
                starts.pop()
        bounds = [*starts, n_samples]
        batches = list(zip(bounds[:-1], bounds[1:], strict=True))
        for start, stop in batches:
            self._check_batch(X[start:stop, :])
        return batches

    def _publish(self, state, settings=None) -> None:
        """Set the fitted attributes from a state, in one update."""
        attributes = self._fitted_attributes(state)
        attributes["_state"] = state
        self.__dict__.update(attributes)

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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Whether the transform's own pass looks for infinity: set once per
        # class, since every transform asks.
        cls._finds_infinity = (
            cls._transform_finding_infinity
            is not StreamingNormalizer._transform_finding_infinity
        )

    def _centers_data(self) -> bool:
        return bool(getattr(self, "with_mean", False))

    # -- merging ----------------------------------------------------------------

    @available_if(lambda self: self._offers_merge)
    def merge(self, other: Self) -> Self:
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
        self._check_state(self._state)
        self._check_state(other._state)
        self._publish(self._merged_state(self._state, other._state), settings)
        return self

    def _merged_state(self, mine, theirs):
        """The state of ``merge``: ``_merge_states``, unless an array API
        state is involved (see :mod:`sknorm._array_api`)."""
        return self._merge_states(mine, theirs)

    # -- transforming -----------------------------------------------------------

    def transform(self, X: MatrixLike, copy: bool | None = None) -> MatrixOutput:
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
    def inverse_transform(
        self, X: MatrixLike, copy: bool | None = None
    ) -> MatrixOutput:
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
        array = plain_array(self, X)
        if array is not None:
            self._checked_settings()
            in_place = self._writes_in_place and not copy and array.flags.writeable
            if not (in_place or inverse) and self._finds_infinity:
                # The transform's own pass looks for infinity in X (its output
                # is new, so nothing is lost if it raises): no separate pass.
                return self._transform_finding_infinity(
                    array, np.empty_like(array), partial(check_no_infinity, array)
                )
            check_no_infinity(array)
            dense = self._inverse_transform_dense if inverse else self._transform_dense
            return dense(array, array if in_place else np.empty_like(array))
        if is_dask_collection(X):
            check_is_fitted(self)
            from ._dask import transform_dask  # dask is an optional extra

            return transform_dask(self, X, method)
        X = self._checked_input(X, copy)
        if sp.issparse(X):
            return (
                self._inverse_transform_sparse if inverse else self._transform_sparse
            )(X)
        return (self._inverse_transform_dense if inverse else self._transform_dense)(
            X, X
        )

    def _checked_input(self, X, copy: bool = False):
        """X validated for a transform, by the same rules as ``transform``:
        the parameters and fit checked, a float array or accepted sparse
        matrix of the fitted width without infinity, owned if ``copy``."""
        self._checked_settings()
        array = plain_array(self, X)
        if array is not None:
            check_no_infinity(array)
            return array.copy() if copy or not array.flags.writeable else array
        check_is_fitted(self)
        X = to_numpy_input(self, X)  # arrays of other libraries
        return self._validated_for_transform(X, copy)

    def _validated_for_transform(self, X, copy: bool):
        """X checked for a transform: an array of the fitted width, without
        infinity, owned by the caller if ``copy``."""
        X = self._validate_input(X, reset=False, learning=False, copy=copy)
        check_no_infinity(X)
        return X

    # -- checkpoints ------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # A checkpoint holds plain, versioned data (see _checkpoint) and no
        # caches, which are rebuilt on demand.
        return dump_estimator_state(self, super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = load_estimator_state(self, state)
        # A parameter added since the checkpoint was written takes its default.
        for name, default in _param_defaults(type(self)).items():
            state.setdefault(name, default)
        super().__setstate__(state)

    # -- tags -------------------------------------------------------------------

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = bool(self._sparse_formats) and not self._centers_data()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
