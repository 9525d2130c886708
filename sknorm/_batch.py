"""BatchNormalizer: per-feature normalization with streaming statistics."""

from __future__ import annotations

from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _stats, _xp
from ._array_api import ArrayAPISupport
from ._base import StreamingNormalizer
from ._compat import Interval, _fit_context, to_numpy
from ._floats import ColumnTransform, column_transform, denormalize_columns
from ._modes import ExactMode, HalfLifeMode, MomentumMode, statistics_mode
from ._modes import state_from_dict as _mode_state_from_dict
from ._typing import MatrixLike, NamespaceArray, VectorLike
from ._validation import format_indices
from ._xp import ArrayState

if TYPE_CHECKING:
    from typing_extensions import Self


class BatchNormalizer(ArrayAPISupport, StreamingNormalizer):
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
    batch_size : int >= 1, default=None
        If set, ``fit(X)`` learns X in consecutive batches of ``batch_size``
        rows, as ``partial_fit`` would on a stream, so that the momentum mode
        means in ``fit`` what it means on a stream (and ``GridSearchCV`` can
        tune ``momentum``); in momentum mode a last batch of one row joins
        the batch before it. None learns X as one batch. The exact and
        half-life statistics do not depend on it. ``partial_fit`` and Dask
        collections (whose row blocks are the batches) ignore it.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
        Running mean of each feature, float64 (an array of X's library on
        X's device with array API dispatch, see Notes). None when both
        ``with_mean`` and ``with_std`` are False. NaN for a feature that had no
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
                                                           sizes: ``fit``
                                                           is one batch
                                                           unless
                                                           ``batch_size``
                                                           is set
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

    **Array API.** With scikit-learn's array API dispatch on
    (``sklearn.set_config(array_api_dispatch=True)``, with the environment
    variable ``SCIPY_ARRAY_API=1``), X may be an array of any library that
    scikit-learn supports there (a PyTorch tensor on any device, a CuPy
    array, ...). The fitted attributes are then arrays of that library on
    X's device, float64 where the device has it; a device without float64
    (PyTorch MPS) accumulates in float32 with compensated sums, which keeps
    the variance of a ``1e6 + N(0, 1)`` stream to about 1e-7. ``transform``
    returns X's library, device and float dtype, differentiable with respect
    to X (autograd); the statistics never keep autograd history, and
    ``copy=False`` never writes into an array that requires a gradient.
    ``partial_fit`` reads from the device once (twice for a batch with NaN),
    ``transform`` never, so it does not look for infinity there: an infinite
    value comes out infinite (or clipped). PyTorch tensors on the CPU are
    computed on by the NumPy code, on zero-copy views (the same numbers as
    NumPy input; a tensor that requires grad is transformed by PyTorch, so
    that the output is differentiable). Later inputs must be of the same
    library and device; a checkpoint (pickle, skops) holds NumPy data and
    loads as a NumPy-fitted normalizer. Without dispatch, such arrays are
    converted with ``numpy.asarray`` (float32 stays float32).

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
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    _sparse_formats = ("csr", "csc")
    _offers_merge = True
    _transient_attributes = StreamingNormalizer._transient_attributes | {
        "_transform_constants"
    }

    def __init__(
        self,
        *,
        eps: float = 0.0,
        with_mean: bool = True,
        with_std: bool = True,
        copy: bool = True,
        momentum: float | None = None,
        half_life: float | None = None,
        clip: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.eps = eps
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy
        self.momentum = momentum
        self.half_life = half_life
        self.clip = clip
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: MatrixLike,
        y: object = None,
        sample_weight: VectorLike | None = None,
    ) -> Self:
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
        return self._fit(X, sample_weight)

    def partial_fit(
        self,
        X: MatrixLike,
        y: object = None,
        sample_weight: VectorLike | None = None,
    ) -> Self:
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
        return self._partial_fit(X, sample_weight)

    # -- hooks of StreamingNormalizer ----------------------------------------

    def _settings(self):
        return statistics_mode(self.momentum, self.half_life)

    def _empty_state(self, n_features, block=None):
        return self._checked_settings().empty(n_features)

    def _check_state(self, state):
        mode = self._checked_settings()
        if type(state) is ArrayState:
            state = state.stats
        if not mode.owns(state):
            raise ValueError(
                f"The statistics mode changed to {mode.name!r} after fitting "
                "started; call fit to restart, or keep the mode of the stream."
            )

    def _check_batch(self, X):
        rows = self._checked_settings().min_batch_rows
        if X.shape[0] < rows:
            raise ValueError(
                f"The momentum mode needs at least {rows} samples per batch, got "
                f"{X.shape[0]} sample: the unbiased batch variance it averages "
                "is undefined for 1 sample (torch.nn.BatchNorm1d refuses it "
                "too). Group rows into batches, or use the exact or half_life "
                "mode for a stream of single rows."
            )

    def _defers_infinity_check(self, X, sample_weight):
        return self._checked_settings().sums_see_infinity(X, sample_weight)

    def _update_state(self, old, X, sample_weight, on_nonfinite=None):
        # With eps, a compiled update also computes what _fitted_attributes
        # will publish, in the same call.
        return self._checked_settings().update(
            old, X, sample_weight, on_nonfinite, self.eps
        )

    def _merge_states(self, old, new):
        return self._checked_settings().merge(old, new)

    def _state_merges(self):
        return self._checked_settings().mergeable

    def _fit_batch_size(self):
        return self.batch_size

    def _fitted_attributes(self, state) -> dict:
        mode = self._checked_settings()
        published = mode.publish(state, self.eps)
        # NaN (no data yet) or a huge variance sends it to the exact
        # per-feature test.
        if not published.finite:
            _raise_if_overflowed(mode.overflowed(state))
        return {
            "n_samples_seen_": published.samples_seen,
            "mean_": published.mean if (self.with_mean or self.with_std) else None,
            "var_": published.var if self.with_std else None,
            "scale_": published.scale if self.with_std else None,
            "weight_sum_": published.weight,
            "_transform_constants": {},  # filled by transform
        }

    def _state_to_dict(self, state):
        # By the state's own type: a checkpoint needs no valid parameters.
        mode = MomentumMode if isinstance(state, _stats.EmaState) else ExactMode
        return mode.to_dict(state)

    def _state_from_dict(self, data):
        return _mode_state_from_dict(data)

    def _state_from_legacy(self, stored):
        # Format 0 pickled the named tuple itself, with the moments' sum of
        # squared deviations where the variance is now.
        if isinstance(stored, _stats.EmaState):
            return stored
        if isinstance(stored, _stats.StreamState):
            weight, mean, m2 = stored.moments
            return _mode_state_from_dict(
                {
                    "kind": "moments",
                    "shift": stored.shift,
                    "weight": weight,
                    "mean": mean,
                    "m2": m2,
                    "count": stored.count,
                    "n_rows": stored.n_rows,
                }
            )
        return super()._state_from_legacy(stored)

    def _transform_dense(self, X, out):
        return self._transform_finding_infinity(X, out, None)

    def _transform_finding_infinity(self, X, out, on_infinity):
        return self._column_transform(X.dtype)(X, out, on_infinity)

    def _transform_sparse(self, X):
        if self.scale_ is not None:
            _scale_sparse_columns(X, 1.0 / self.scale_)
        if self.clip is not None:
            np.clip(X.data, -self.clip, self.clip, out=X.data)
        return X

    def _inverse_transform_dense(self, X, out):
        mean, scale = self._numpy_statistics()
        return denormalize_columns(
            X,
            out,
            scale if self.with_std else None,
            mean if self.with_mean else None,
        )

    def _inverse_transform_sparse(self, X):
        if self.scale_ is not None:
            _scale_sparse_columns(X, self.scale_)
        return X

    def _column_transform(self, dtype) -> ColumnTransform:
        """The transform of data of ``dtype``, as a :class:`ColumnTransform`.

        Its ``center`` (``+ center_lo`` for float32, see split_float32) is
        ``mean_`` and its ``inv_scale`` is ``1 / scale_`` in ``dtype``:
        multiplying by it is faster than dividing, and within one rounding.
        It is remembered in a dict that ``_publish`` replaces, keyed on the
        parameters it depends on and the identity of ``mean_`` and
        ``scale_``, so it follows every change of those; the dict is not
        pickled.
        """
        mean, scale = self.mean_, self.scale_
        memo = self.__dict__.get("_transform_constants")
        key = ("columns", dtype, self.with_mean, self.with_std, self.clip)
        entry = None if memo is None else memo.get(key)
        if entry is None or entry[0] is not mean or entry[1] is not scale:
            numpy_mean, numpy_scale = self._numpy_statistics()
            transform = column_transform(
                numpy_mean if self.with_mean else None,
                numpy_scale if self.with_std else None,
                dtype,
                self.clip,
            )
            entry = (mean, scale, transform)
            if memo is not None:
                memo[key] = entry
        return entry[2]

    def _numpy_statistics(self):
        """``(mean_, scale_)`` as NumPy arrays: themselves, or NumPy views of
        the CPU tensors that the array API path publishes on its NumPy-views
        route (remembered with the transform constants)."""
        mean, scale = self.mean_, self.scale_
        if (mean is None or type(mean) is np.ndarray) and (
            scale is None or type(scale) is np.ndarray
        ):
            return mean, scale
        memo = self.__dict__.get("_transform_constants")
        entry = None if memo is None else memo.get("numpy")
        if entry is None or entry[0] is not mean or entry[1] is not scale:
            views = tuple(None if a is None else to_numpy(a) for a in (mean, scale))
            entry = (mean, scale, *views)
            if memo is not None:
                memo["numpy"] = entry
        return entry[2:]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_state" in self.__dict__:
            self._transform_constants: dict[object, tuple] = {}

    # -- array API hooks (device route, see sknorm._array_api) -----------------

    def _empty_array_stats(self, space, n_features):
        if isinstance(self._checked_settings(), MomentumMode):
            return _xp.empty_ema_state(space, n_features)
        return _xp.empty_stream_state(space, n_features)

    def _initial_array_facts(self):
        return _ArrayFacts(settled=False, counts_equal=True, count0=0)

    def _update_array_state(self, old, X, sample_weight, careful):
        mode = self._checked_settings()
        space = old.space
        stats, guard = _update_array_stats(
            mode, space, old.stats, X, sample_weight, old.facts.settled, careful
        )
        if careful:
            return stats, _careful_report(space, stats)
        # A NaN or infinity anywhere in the batch reaches the variances (and,
        # with weights, the guard): one number says whether to look closer.
        check = _xp.checksum(space, stats)
        if guard is not None:
            check = check + guard
        report = {"checksum": check}
        if sample_weight is not None or mode.reweights_rows:
            # Weights of 0 (or underflowing with age) may leave features
            # without data.
            report["settled"] = _xp.settled(space, stats)
        return stats, report

    def _settle_array_state(self, old, stats, values, n_rows):
        space = old.space
        if values.get("overflow"):
            _raise_if_overflowed(to_numpy(_xp.overflowed(space, stats)))
        if "count0" in values:
            counts_equal, count0 = bool(values["equal"]), int(values["count0"])
        else:  # a batch without NaN adds its rows to every count
            counts_equal = old.facts.counts_equal
            count0 = old.facts.count0 + n_rows
        settled = bool(values.get("settled", True))
        return ArrayState(stats, space, _ArrayFacts(settled, counts_equal, count0))

    def _merge_array_states(self, old, new):
        mode = self._checked_settings()
        if not mode.mergeable:
            mode.merge(old.stats, new.stats)  # raises, saying why
        half_life = mode.half_life if isinstance(mode, HalfLifeMode) else None
        stats = _xp.merge_stream_states(old.space, old.stats, new.stats, half_life)
        return stats, _careful_report(old.space, stats)

    def _array_fitted_attributes(self, state):
        stats, space, facts = state
        xp = space.xp
        mean, var = _xp.state_mean_var(space, stats, facts.settled)
        if facts.counts_equal:
            n_samples_seen = facts.count0
        else:
            n_samples_seen = xp.asarray(stats.count, copy=True)
        published = mean if (self.with_mean or self.with_std) else None
        constants = {}
        if published is not None and space.compensated:
            # The low part of the mean, which only the state knows.
            constants["exact_center"] = (published, _xp.exact_center(space, stats))
        return {
            "n_samples_seen_": n_samples_seen,
            "mean_": published,
            "var_": var if self.with_std else None,
            "scale_": _xp.scale_from_var(xp, var, self.eps) if self.with_std else None,
            "weight_sum_": _xp.weight_of(space, stats),
            "_transform_constants": constants,
        }

    def _transform_array(self, state, X, in_place):
        constants = self._array_transform_constants(state, X.dtype)
        return _xp.normalize_columns(state.space.xp, X, *constants, in_place)

    def _inverse_transform_array(self, state, X, in_place):
        space = state.space
        scale = space.xp.astype(self.scale_, X.dtype) if self.with_std else None
        center = center_lo = None
        if self.with_mean:
            center, center_lo = _xp.center_parts(
                space, self.mean_, X.dtype, self._exact_center()
            )
        return _xp.denormalize_columns(space.xp, X, scale, center, center_lo, in_place)

    def _array_transform_constants(
        self, state: ArrayState, dtype: object
    ) -> tuple[
        NamespaceArray | None,
        NamespaceArray | None,
        NamespaceArray | None,
        tuple[NamespaceArray, NamespaceArray] | None,
    ]:
        """``_column_transform`` for arrays of another namespace:
        ``(center, center_lo, inv_scale, clip_bounds)``."""
        mean, scale = self.mean_, self.scale_
        memo = self.__dict__.get("_transform_constants")
        key = (dtype, bool(self.with_mean), bool(self.with_std), self.clip)
        entry = None if memo is None else memo.get(key)
        if entry is None or entry[0] is not mean or entry[1] is not scale:
            space = state.space
            if mean is None or not self.with_mean:
                center = center_lo = None
            else:
                center, center_lo = _xp.center_parts(
                    space, mean, dtype, self._exact_center()
                )
            inv_scale = None
            if scale is not None and self.with_std:
                inv_scale = space.xp.astype(1.0 / scale, dtype)
            bounds = _xp.clip_bounds(space, self.clip, dtype)
            entry = (mean, scale, center, center_lo, inv_scale, bounds)
            if memo is not None:
                memo[key] = entry
        return entry[2:]

    def _exact_center(self):
        """The (hi, lo) float32 pair of ``mean_`` kept at publication on a
        device without float64, while ``mean_`` is that publication's."""
        memo = self.__dict__.get("_transform_constants") or {}
        published = memo.get("exact_center")
        if published is None or published[0] is not self.mean_:
            return None
        return published[1]

    def _array_stats_to_numpy(self, stats):
        return _xp.state_to_numpy(stats)

    def _array_stats_from_numpy(self, space, stats, move):
        return _xp.state_from_numpy(space, stats, move)

    def _array_state_from_numpy(self, space, stats, numpy_stats):
        count = numpy_stats.count
        if isinstance(numpy_stats, _stats.EmaState):
            has_data = (numpy_stats.mean_updates > 0) & (numpy_stats.var_updates > 0)
        else:
            has_data = numpy_stats.moments.weight > 0
        facts = _ArrayFacts(
            settled=bool(has_data.all()),
            counts_equal=not np.count_nonzero(count - count[0]),
            count0=int(count[0]),
        )
        return ArrayState(stats, space, facts)


class _ArrayFacts(NamedTuple):
    """What the host knows of statistics on another device without asking it.

    ``settled``: every feature has data (no anchoring, no NaN statistics);
    ``counts_equal``: every feature saw the same number of values,
    ``count0`` of them (then ``n_samples_seen_`` is an int).
    """

    settled: bool
    counts_equal: bool
    count0: int


def _update_array_stats(mode, space, stats, X, sample_weight, settled, careful):
    """The array API update of ``mode`` (see :mod:`sknorm._xp`)."""
    options = {"settled": settled, "careful": careful}
    if isinstance(mode, MomentumMode):
        return _xp.update_momentum(
            space, stats, X, mode.momentum, sample_weight, **options
        )
    if isinstance(mode, HalfLifeMode):
        return _xp.update_half_life(
            space, stats, X, mode.half_life, sample_weight, **options
        )
    return _xp.update_exact(space, stats, X, sample_weight, **options)


def _careful_report(space, stats) -> dict:
    """Everything the host needs to know after a careful update or a merge."""
    xp = space.xp
    count = stats.count
    return {
        "overflow": xp.any(_xp.overflowed(space, stats)),
        "equal": xp.all(count == count[0]),
        "count0": count[0],
        "settled": _xp.settled(space, stats),
    }


def _raise_if_overflowed(overflowed: np.ndarray) -> None:
    bad = np.flatnonzero(overflowed)
    if bad.size:
        raise ValueError(
            f"The statistics of feature(s) {format_indices(bad)} overflow float64: "
            "their variance is beyond about 1.8e308 (a spread beyond about "
            "1.3e154) and cannot be represented. Rescale those features (e.g. "
            "divide them by a power of 10) before normalizing. The normalizer "
            "was left unchanged."
        )


def _scale_sparse_columns(X, factor: np.ndarray) -> None:
    """Multiply column j of a CSR/CSC matrix by ``factor[j]`` in place."""
    factor = factor.astype(X.dtype)
    if X.format == "csr":
        X.data *= factor[X.indices]
    else:
        X.data *= np.repeat(factor, np.diff(X.indptr))
