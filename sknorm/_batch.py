"""BatchNormalizer: per-feature normalization with streaming statistics."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _stats
from ._atomic import check_mergeable, unchanged_on_error
from ._checkpoint import dump_estimator_state, load_estimator_state
from ._compat import Interval, _fit_context, validate_params
from ._floats import scale_from_var, split_float32, subtract_in_place
from ._validation import (
    FLOAT_DTYPES,
    check_infinity_allow_nan,
    check_no_infinity,
    check_sample_weight,
    format_indices,
    is_dask_collection,
    is_plain_batch,
)


class SparseCenteringError(ValueError, TypeError):
    """Sparse input given to a normalizer that centers (``with_mean=True``).

    A ValueError, as in ``StandardScaler``; also a TypeError, the exception
    scikit-learn's checks expect from an estimator that rejects a sparse type.
    """


class BatchNormalizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Normalize each feature with statistics that stream over mini-batches.

    ``transform`` computes, for every feature,

    .. math:: z = (x - \mu) / \sqrt{\sigma^2 + \epsilon}

    where :math:`\mu` and :math:`\sigma^2` are running statistics updated by
    every call to :meth:`partial_fit`. How they are updated is the statistics
    mode:

    - exact (default): the mean and (biased) variance of every sample seen,
      equal to one fit on all of them whatever the batch partition;
    - ``momentum=m``: the running statistics of ``torch.nn.BatchNorm1d``, one
      exponential update per batch;
    - ``half_life=h``: exponentially weighted statistics in which a sample
      ``h`` rows older weighs half as much, independent of the batch sizes.

    Missing values (NaN) are ignored when fitting and kept by ``transform``.

    Parameters
    ----------
    eps : float, default=0.0
        Added to the variance before the square root, as ``eps`` in
        ``torch.nn.BatchNorm1d`` (which uses 1e-5).
    with_mean : bool, default=True
        If True, center the data before scaling. Must be False for sparse
        input, which centering would densify.
    with_std : bool, default=True
        If True, scale the data to unit variance.
    copy : bool, default=True
        If False, ``transform`` and ``inverse_transform`` work in place when
        the input is a writable float array of a float dtype.
    momentum : float in (0, 1], default=None
        Momentum mode. After each batch::

            mean_ = (1 - momentum) * mean_ + momentum * batch_mean
            var_  = (1 - momentum) * var_  + momentum * batch_var

        with the unbiased batch variance, as ``torch.nn.BatchNorm1d``. Unlike
        PyTorch, which starts from mean 0 and variance 1, the first batch sets
        the statistics (no warm-up bias): see Notes.
    half_life : float > 0, default=None
        Half-life mode, in samples: a sample of age ``a`` rows (0 for the
        newest; within a batch, later rows are newer) has weight
        ``2**(-a / half_life)`` times its ``sample_weight``.
    clip : float > 0, default=None
        If set, ``transform`` clips its output to ``[-clip, clip]``.
        Clipped values do not round-trip through ``inverse_transform``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
        Running mean of each feature, float64. None when both ``with_mean``
        and ``with_std`` are False. NaN for a feature that had no
        (non-missing, positively weighted) value yet.
    var_ : ndarray of shape (n_features,) or None
        Running variance of each feature, float64; None when
        ``with_std=False``. Biased (population) variance in the exact and
        half-life modes, the running unbiased variance in the momentum mode.
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_ + eps)``, 1.0 where that is 0; None when
        ``with_std=False``.
    n_samples_seen_ : int or ndarray of shape (n_features,)
        Number of samples seen, whatever their weight. As in
        ``StandardScaler``, an int when every feature saw the same number and
        an int64 array of per-feature counts of non-missing values otherwise.
    weight_sum_ : ndarray of shape (n_features,)
        Total weight behind the statistics of each feature: the sum of the
        sample weights in exact and momentum modes, the sum of the decayed
        weights in half-life mode.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Same exact statistics, but loses
        digits when streamed, has no forgetting and no merge.

    Notes
    -----
    **Choosing a statistics mode.**

    ============  =======================================  ==================
    mode          use it when                              state and cost
    ============  =======================================  ==================
    exact         the stream is stationary, or you want    O(n_features);
                  the statistics of all data (equal to a   ``merge`` for
                  one-shot fit, to 1e-12)                  parallel fits
    momentum      porting a PyTorch model, or matching     O(n_features);
                  its running statistics                   depends on batch
                                                           sizes
    half_life     the stream drifts: recent samples        O(n_features);
                  matter more, whatever the batch sizes    ordered ``merge``
    ============  =======================================  ==================

    **Relation to PyTorch.** ``torch.nn.BatchNorm1d(momentum=m)`` in training
    mode applies the momentum update above, starting from
    ``running_mean = 0`` and ``running_var = 1``. To reproduce its running
    statistics exactly, call ``partial_fit`` once on a two-row batch
    ``[-1, 1] / sqrt(2)`` with ``momentum=1.0`` (mean 0, unbiased variance
    1), then ``set_params(momentum=m)`` and stream the same batches. PyTorch
    normalizes training batches with the biased batch variance but stores the
    unbiased one; sknorm's ``transform`` uses the stored ``var_``, as PyTorch
    does in evaluation mode. In PyTorch's cumulative mode (``momentum=None``)
    every batch counts equally whatever its size; the exact mode here weighs
    every sample equally instead.

    The statistics are accumulated in float64 relative to an anchor value of
    each feature, so that streaming loses no more precision than a one-shot
    two-pass computation; float32 input gives float32 output.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import BatchNormalizer
    >>> norm = BatchNormalizer()
    >>> norm = norm.partial_fit(np.array([[1.0, 100.0], [3.0, 300.0]]))
    >>> norm = norm.partial_fit(np.array([[5.0, 200.0]]))
    >>> norm.n_samples_seen_
    3
    >>> norm.mean_.tolist(), np.round(norm.scale_, 3).tolist()
    ([3.0, 200.0], [1.633, 81.65])
    >>> np.round(norm.transform([[5.0, 300.0]]), 3).tolist()
    [[1.225, 1.225]]
    """

    _parameter_constraints: dict = {
        "eps": [Interval(Real, 0, None, closed="left")],
        "with_mean": ["boolean"],
        "with_std": ["boolean"],
        "copy": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="right"), None],
        "half_life": [Interval(Real, 0, None, closed="neither"), None],
        "clip": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        *,
        eps=0.0,
        with_mean=True,
        with_std=True,
        copy=True,
        momentum=None,
        half_life=None,
        clip=None,
    ):
        self.eps = eps
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy
        self.momentum = momentum
        self.half_life = half_life
        self.clip = clip

    # -- fitting ------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the statistics of X, forgetting earlier ones.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The data. NaN marks a missing value.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self : BatchNormalizer
            Fitted normalizer.
        """
        return self._learn(X, sample_weight, reset=True, need_weight=True)

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the statistics with one batch.

        If it raises, the fitted state is left exactly as it was.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The batch. NaN marks a missing value.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample.

        Returns
        -------
        self : BatchNormalizer
            Updated normalizer.
        """
        first_call = not hasattr(self, "_state")
        if first_call:
            validate_params(self)
        return self._learn(X, sample_weight, reset=first_call)

    def _learn(self, X, sample_weight, reset, need_weight=False):
        plain = not reset and is_plain_batch(self, X)
        if not plain and is_dask_collection(X):
            from ._dask import learn_dask  # dask is an optional extra

            return learn_dask(self, X, sample_weight, reset, need_weight)
        # A plain batch changes nothing before _publish's single update, so
        # there is nothing to restore; validate_data may set attributes.
        with nullcontext() if plain else unchanged_on_error(self):
            mode = self._mode()
            if not plain:
                X = self._validate_batch(X, reset=reset)
            # Infinities are looked for only when the batch's column sums, which
            # the statistics compute anyway, are not finite. That is exact
            # without weights (an infinity always reaches the sums) and when no
            # other error can come first; otherwise X is checked here, in the
            # order of _validate_batch.
            old = None if reset else self._state
            mode_kept = reset or self._state_matches(old, mode)
            defer_infinity = (
                sample_weight is None
                and mode != "half_life"
                and (plain or not sp.issparse(X))
                and mode_kept
            )
            if not defer_infinity:
                check_no_infinity(X)
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X.shape[0])
            if need_weight and sample_weight is not None and not sample_weight.any():
                # A stream may pass a batch of zero weights (time still passes
                # in half-life mode), but a fit on it would learn nothing.
                raise ValueError(
                    "All sample weights are zero: fit has nothing to learn from. "
                    "Give at least one sample a positive weight."
                )
            if reset:
                old = self._empty_state(mode, X.shape[1])
            elif not mode_kept:
                self._check_state_matches(old, mode)
            if mode == "momentum" and X.shape[0] < 2:
                raise ValueError(
                    f"The momentum mode needs at least 2 samples per batch, got "
                    f"{X.shape[0]} sample: the unbiased batch variance it averages "
                    "is undefined for 1 sample (torch.nn.BatchNorm1d refuses it "
                    "too). Group rows into batches, or use the exact or half_life "
                    "mode for a stream of single rows."
                )
            on_nonfinite = partial(check_no_infinity, X) if defer_infinity else None
            # Overflow is reported as a ValueError by _publish (the _stats
            # updates run without floating-point warnings).
            state = self._update(mode, old, X, sample_weight, on_nonfinite)
            self._publish(state)
        return self

    def _validate_batch(self, X, reset):
        """``validate_data`` for learning; infinities are checked by the caller."""
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=("csr", "csc"),
            dtype=FLOAT_DTYPES,
            ensure_all_finite=False,
            ensure_min_samples=1,
        )
        self._check_not_centering_sparse(X)
        return X

    def _check_not_centering_sparse(self, X):
        if sp.issparse(X) and self.with_mean:
            raise SparseCenteringError(
                "Cannot center sparse data: pass with_mean=False to scale it "
                "without centering (centering would make it dense)."
            )

    def _mode(self) -> str:
        if self.momentum is not None and self.half_life is not None:
            raise ValueError(
                "momentum and half_life are two different statistics modes; set "
                f"at most one of them (got momentum={self.momentum}, "
                f"half_life={self.half_life})."
            )
        if self.momentum is not None:
            return "momentum"
        if self.half_life is not None:
            return "half_life"
        return "exact"

    @staticmethod
    def _empty_state(mode, n_features):
        if mode == "momentum":
            return _stats.empty_ema_state(n_features)
        return _stats.empty_stream_state(n_features)

    @staticmethod
    def _state_matches(state, mode) -> bool:
        return isinstance(state, _stats.EmaState) == (mode == "momentum")

    @classmethod
    def _check_state_matches(cls, state, mode):
        if not cls._state_matches(state, mode):
            raise ValueError(
                f"The statistics mode changed to {mode!r} after fitting started; "
                "call fit to restart, or keep the mode of the stream."
            )

    def _update(self, mode, old, X, sample_weight, on_nonfinite=None):
        if mode == "momentum":
            return _stats.update_momentum(
                old, X, self.momentum, sample_weight, on_nonfinite=on_nonfinite
            )
        if mode == "half_life":
            return _stats.update_half_life(
                old, X, self.half_life, sample_weight, on_nonfinite=on_nonfinite
            )
        return _stats.update_exact(old, X, sample_weight, on_nonfinite=on_nonfinite)

    def _publish(self, state):
        """Set the fitted attributes from a statistics state, in one update."""
        self.__dict__.update(self._fitted_attributes(state))

    def _fitted_attributes(self, state) -> dict:
        count = state.count
        mean, var = _stats.state_mean_var(state)
        # One sum answers for the common case; NaN (no data yet) or a huge
        # variance sends it to the exact per-feature test.
        if not np.isfinite(np.add.reduce(var)):
            _raise_if_overflowed(state)
        return {
            "n_samples_seen_": (
                int(count[0])
                if count.size and not np.count_nonzero(count - count[0])
                else count.copy()
            ),
            "mean_": mean if (self.with_mean or self.with_std) else None,
            "var_": var if self.with_std else None,
            "scale_": scale_from_var(var, self.eps) if self.with_std else None,
            "weight_sum_": (
                state.weight
                if isinstance(state, _stats.EmaState)
                else state.moments.weight
            ),
            "_state": state,
            "_transform_constants": {},  # filled by transform
        }

    def merge(self, other):
        """Combine with a normalizer fitted on disjoint data; return self.

        Afterwards ``self`` holds the statistics of the union, equal to one fit
        on all the data. In half-life mode, ``other`` is taken as the newer part
        of the stream (an ordered merge), so blocks can be reduced in a tree
        as long as their order is kept. Not defined for the momentum mode.

        Parameters
        ----------
        other : BatchNormalizer
            Fitted on data disjoint from ``self``'s, with the same parameters
            and features.

        Returns
        -------
        self : BatchNormalizer
            The merged normalizer.
        """
        check_mergeable(self, other)
        mode = self._mode()
        if mode == "momentum":
            raise ValueError(
                "merge is not defined for the momentum mode: its statistics "
                "depend on the order of batches, not only on the data. Use the "
                "exact or half_life mode."
            )
        self._check_state_matches(other._state, mode)
        half_life = self.half_life if mode == "half_life" else None
        state = _stats.merge_stream_states(self._state, other._state, half_life)
        self._publish(state)
        return self

    # -- transforming --------------------------------------------------------

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
        if is_plain_batch(self, X):
            copy = self.copy if copy is None else copy
            if not copy and X.flags.writeable:
                # In place: X must be known free of infinities before it changes.
                check_infinity_allow_nan(X, type(self).__name__)
                return self._normalize_rows(X, X, check_infinity=False)
            return self._normalize_rows(X, np.empty_like(X), check_infinity=True)
        check_is_fitted(self)
        if is_dask_collection(X):
            from ._dask import transform_dask  # dask is an optional extra

            return transform_dask(self, X, inverse=False)
        X = self._validate_for_transform(X, copy)
        if not sp.issparse(X):
            return self._normalize_rows(X, X, check_infinity=False)
        if self.scale_ is not None:
            _scale_sparse_columns(X, 1.0 / self.scale_)
        if self.clip is not None:
            np.clip(X.data, -self.clip, self.clip, out=X.data)
        return X

    def _normalize_rows(self, X, out, check_infinity):
        """Write the normalized rows of the dense X to ``out`` (which may be X).

        Works in blocks of rows that stay in cache between the steps. With
        ``check_infinity``, a block that holds NaN or infinity triggers
        scikit-learn's infinity check on X, which is left unchanged.
        """
        with_mean, with_std, clip = self.with_mean, self.with_std, self.clip
        center, center_lo, inv_scale = self._transform_constants_for(X.dtype)
        n_samples, n_features = X.shape
        rows = _stats.block_rows(n_features)
        one_block = n_samples <= rows
        for start in (0,) if one_block else range(0, n_samples, rows):
            if one_block:
                src, dst = X, out
            else:
                src, dst = X[start : start + rows], out[start : start + rows]
            if check_infinity and np.count_nonzero(np.isfinite(src)) != src.size:
                check_infinity_allow_nan(X, type(self).__name__)
                check_infinity = False
            if with_mean:
                # To float32 precision for float32 X: see split_float32.
                np.subtract(src, center, out=dst)
                if center_lo is not None:
                    np.subtract(dst, center_lo, out=dst)
                src = dst
            if with_std:
                np.multiply(src, inv_scale, out=dst)
                src = dst
            if src is not dst:
                dst[...] = src
            if clip is not None:
                np.clip(dst, -clip, clip, out=dst)
        return out

    def _transform_constants_for(self, dtype):
        """``(center, center_lo, inv_scale)`` for transforming data of ``dtype``.

        ``center`` (``+ center_lo`` for float32, see split_float32) is
        ``mean_`` and ``inv_scale`` is ``1 / scale_`` in ``dtype``: multiplying
        by it is faster than dividing, and within one rounding. They are
        remembered in a dict that ``_publish`` replaces, keyed on the identity
        of ``mean_`` and ``scale_``, so they follow every change of those
        attributes; the dict is not pickled.
        """
        mean, scale = self.mean_, self.scale_
        memo = self.__dict__.get("_transform_constants")
        entry = None if memo is None else memo.get(dtype)
        if entry is None or entry[0] is not mean or entry[1] is not scale:
            if mean is None:
                center = center_lo = None
            elif dtype == np.float32:
                center, center_lo = split_float32(mean)
            else:
                center, center_lo = mean, None
            inv_scale = None if scale is None else (1.0 / scale).astype(dtype)
            entry = (mean, scale, center, center_lo, inv_scale)
            if memo is not None:
                memo[dtype] = entry
        return entry[2:]

    def __getstate__(self):
        # A checkpoint holds plain, versioned data (see _checkpoint), and no
        # memo of transform constants, which is rebuilt on demand.
        state = dict(super().__getstate__())
        state.pop("_transform_constants", None)
        return dump_estimator_state(state)

    def __setstate__(self, state):
        super().__setstate__(load_estimator_state(state, type(self).__name__))
        if "_state" in self.__dict__:
            self._transform_constants = {}

    def inverse_transform(self, X, copy=None):
        """Undo ``transform``: scale back, then add the mean.

        Values that ``transform`` clipped do not come back.

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
        if is_plain_batch(self, X):
            check_infinity_allow_nan(X, type(self).__name__)
            copy = self.copy if copy is None else copy
            if copy or not X.flags.writeable:
                X = X.copy(order="K")
        else:
            check_is_fitted(self)
            if is_dask_collection(X):
                from ._dask import transform_dask  # dask is an optional extra

                return transform_dask(self, X, inverse=True)
            X = self._validate_for_transform(X, copy)
        if sp.issparse(X):
            if self.scale_ is not None:
                _scale_sparse_columns(X, self.scale_)
        else:
            if self.with_std:
                X *= self.scale_.astype(X.dtype)
            if self.with_mean:
                subtract_in_place(X, -self.mean_)
        return X

    def _validate_for_transform(self, X, copy):
        X = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc"),
            copy=self.copy if copy is None else copy,
            dtype=FLOAT_DTYPES,
            force_writeable=True,
            ensure_all_finite="allow-nan",
        )
        self._check_not_centering_sparse(X)
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = not self.with_mean
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _raise_if_overflowed(state) -> None:
    bad = np.flatnonzero(_stats.overflowed(state))
    if bad.size:
        raise ValueError(
            f"The statistics of feature(s) {format_indices(bad)} overflow float64: "
            "their spread "
            "is beyond about 1e154, so their variance cannot be represented. "
            "Rescale those features (e.g. divide them by a power of 10) before "
            "normalizing. The normalizer was left unchanged."
        )


def _scale_sparse_columns(X, factor: np.ndarray) -> None:
    """Multiply column j of a CSR/CSC matrix by ``factor[j]`` in place."""
    factor = factor.astype(X.dtype)
    if X.format == "csr":
        X.data *= factor[X.indices]
    else:
        X.data *= np.repeat(factor, np.diff(X.indptr))
