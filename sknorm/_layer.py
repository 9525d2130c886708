"""LayerNormalizer and GroupNormalizer: per-sample normalization."""

from __future__ import annotations

from math import isqrt
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.utils import check_array

from . import _rowstats, _xp
from ._array_api import ArrayAPISupport, is_array_api_input, numpy_from_array_api
from ._base import StreamingNormalizer
from ._compat import Interval, move_to, to_numpy
from ._rowstats import GroupStats
from ._typing import MatrixLike, MatrixOutput, NamespaceArray
from ._validation import FLOAT_DTYPES


def check_n_groups(n_features: int, n_groups: int) -> None:
    """Raise a ValueError unless ``n_features`` splits into ``n_groups`` groups."""
    if n_features % n_groups:
        small = [d for d in range(1, isqrt(n_features) + 1) if n_features % d == 0]
        divisors = sorted({*small, *(n_features // d for d in small)})
        shown = ", ".join(str(d) for d in divisors[:20])
        raise ValueError(
            f"X has n_features={n_features}, which is not divisible by "
            f"n_groups={n_groups}: every group must hold the same number of "
            f"contiguous features. Choose n_groups among the divisors of "
            f"{n_features} ({shown}{' ...' if len(divisors) > 20 else ''})."
        )


class _RowNormalizer(ArrayAPISupport, StreamingNormalizer):
    """Shared hooks of LayerNormalizer and GroupNormalizer.

    Nothing is learned but the width of X: the state is the number of rows
    seen, so that the streaming base can validate, stream and fit dask
    collections like any other normalizer.
    """

    _parameter_constraints: dict = {
        "eps": [Interval(Real, 0, None, closed="left")],
        "with_mean": ["boolean"],
        "with_std": ["boolean"],
    }
    # transform always returns a new array (see transform).
    _writes_in_place = False

    _sparse_formats = ("csr",)

    def _n_groups(self) -> int:
        raise NotImplementedError

    # -- fitting ------------------------------------------------------------

    # -- hooks of StreamingNormalizer ----------------------------------------

    def _empty_state(self, n_features, block=None):
        return 0

    def _check_batch(self, X):
        check_n_groups(X.shape[1], self._n_groups())

    def _update_state(self, old, X, sample_weight, on_nonfinite=None):
        return old + X.shape[0]

    def _merge_states(self, old, new):
        return old + new

    def _fitted_attributes(self, state) -> dict:
        return {}

    def _state_to_dict(self, state):
        return {"kind": "rows", "n_rows": int(state)}

    def _state_from_dict(self, data):
        return int(data["n_rows"])

    def _transform_dense(self, X, out):
        return self._normalize(X)[0]

    def _transform_finding_infinity(self, X, out, on_infinity):
        return self._normalize(X, out, on_infinity)[0]

    def _transform_sparse(self, X):
        return self._normalize(X)[0]

    # Array API (device route, see sknorm._array_api): nothing is learned but
    # the width, which stays on the host; transform computes every statistic
    # on X's device.

    def _empty_array_stats(self, space, n_features):
        return 0

    def _update_array_state(self, old, X, sample_weight, careful):
        return old.stats + X.shape[0], {}

    def _transform_array(self, state, X, in_place):
        return self._normalize_array(state.space, X)[0]

    def _normalize_array(self, space, X):
        n_groups = self._n_groups()
        check_n_groups(X.shape[1], n_groups)
        X_tr, (center, scale) = _xp.normalize_dense_groups(
            space, X, n_groups, self.eps, self.with_mean, self.with_std
        )
        return space.xp.astype(X_tr, X.dtype, copy=False), GroupStats(center, scale)

    def _normalize(self, X, out=None, on_infinity=None):
        if is_array_api_input(X):
            space = self._state.space
            views = space.numpy_views
            if views is None or getattr(X, "requires_grad", False):
                return self._normalize_array(space, X)
            X_tr, stats = self._normalize(views.to_numpy(X))
            return views.from_numpy(X_tr), GroupStats(*map(views.from_numpy, stats))
        check_n_groups(X.shape[1], self._n_groups())
        n_groups = self._n_groups()
        if sp.issparse(X):
            X_tr, stats = _rowstats.normalize_sparse_groups(
                X, n_groups, self.eps, self.with_std
            )
        else:
            X_tr, stats = _rowstats.normalize_dense_groups(
                X,
                n_groups,
                self.eps,
                self.with_mean,
                self.with_std,
                out=out,
                on_infinity=on_infinity,
            )
        return X_tr.astype(X.dtype, copy=False), stats

    # -- transforming --------------------------------------------------------

    # The second parameter is return_stats, not the base's copy: the output is
    # always a new array, and it may come with the statistics.
    def transform(  # type: ignore[override]
        self, X: MatrixLike, return_stats: bool = False
    ) -> MatrixOutput | tuple[MatrixOutput, GroupStats]:
        """Normalize each group of each row with its own mean and variance.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The data. NaN is ignored by the statistics and kept as NaN. Sparse
            input (needs ``with_mean=False``) comes back as CSR with the same
            sparsity pattern. A dask array or DataFrame is transformed lazily,
            block by block (without ``return_stats``).
        return_stats : bool, default=False
            Also return the center and scale applied to every group of every
            row, which :func:`invert_group_normalization` needs to undo the
            transform.

        Returns
        -------
        X_tr : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Normalized data, of the input's float dtype (float32 stays
            float32; integers become float64).
        stats : GroupStats
            Only if ``return_stats=True``: a named tuple ``(center, scale)`` of
            float64 arrays of shape (n_samples, n_groups).
        """
        if not return_stats:
            return self._apply(X, False, "transform")
        return self._normalize(self._checked_input(X))


class LayerNormalizer(_RowNormalizer):
    r"""Normalize each sample (row) with its own mean and variance.

    Layer normalization as in deep learning, as a scikit-learn transformer:
    every row :math:`x` of ``n`` features becomes

    .. math:: z_j = (x_j - \mu) / \sqrt{\sigma^2 + \epsilon}, \qquad
              \mu = \frac{1}{n} \sum_j x_j, \quad
              \sigma^2 = \frac{1}{n} \sum_j (x_j - \mu)^2

    over the non-missing values of the row. It removes a per-sample offset and
    gain (an exposure, a sensor's calibration, a document's length) that a
    per-feature normalizer such as :class:`BatchNormalizer` cannot. Nothing is
    learned from the training data apart from its width, so ``fit`` and
    ``partial_fit`` only validate; ``partial_fit`` lets it stream in a
    pipeline of mini-batches. Same as ``GroupNormalizer(n_groups=1)``.

    Parameters
    ----------
    eps : float, default=1e-5
        Added to the variance before the square root, as ``eps`` in
        ``torch.nn.functional.layer_norm``.
    with_mean : bool, default=True
        If True, subtract each row's mean. Must be False for sparse input,
        which centering would densify.
    with_std : bool, default=True
        If True, divide each row by ``sqrt(var + eps)``.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    GroupNormalizer : The same within contiguous groups of features.
    BatchNormalizer : Normalizes each feature (column) instead.
    sklearn.preprocessing.Normalizer : Scales each row to unit norm, without
        centering.
    invert_group_normalization : Undoes the transform, given its statistics.

    Notes
    -----
    There is no ``inverse_transform``: each row is normalized with its own
    statistics, which a transformer cannot keep for rows it has not seen. Get
    them with ``transform(X, return_stats=True)`` and undo the transform with
    :func:`invert_group_normalization`. A constant row with ``eps=0`` is
    divided by 1, not 0; see :class:`GroupNormalizer` for the details of
    constant groups, missing values and sparse input.

    References
    ----------
    .. [1] J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer Normalization",
       arXiv:1607.06450, 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import LayerNormalizer
    >>> norm = LayerNormalizer(eps=0.0)
    >>> norm = norm.partial_fit(np.array([[1.0, 2.0, 3.0], [10.0, 40.0, 70.0]]))
    >>> norm = norm.partial_fit(np.array([[0.0, 5.0, np.nan]]))
    >>> norm.n_features_in_
    3
    >>> X_tr = norm.transform(np.array([[1.0, 2.0, 3.0], [0.0, 5.0, np.nan]]))
    >>> np.round(X_tr, 3).tolist()
    [[-1.225, 0.0, 1.225], [-1.0, 1.0, nan]]
    """

    def __init__(
        self, *, eps: float = 1e-5, with_mean: bool = True, with_std: bool = True
    ) -> None:
        self.eps = eps
        self.with_mean = with_mean
        self.with_std = with_std

    def _n_groups(self) -> int:
        return 1


class GroupNormalizer(_RowNormalizer):
    r"""Normalize contiguous groups of features of each sample.

    Group normalization as in deep learning, as a scikit-learn transformer:
    each row of ``n_features`` values is cut into ``n_groups`` contiguous
    groups of ``n_features // n_groups`` features, and every group of every
    row is centered by its own mean and divided by
    :math:`\sqrt{\sigma^2 + \epsilon}` (its biased variance over its
    non-missing values).

    For data of ``n_channels x length`` flattened to rows channel by channel
    (``X3d.reshape(n_samples, -1)``), ``n_groups=n_channels`` is instance
    normalization (each channel of each sample on its own), a divisor of
    ``n_channels`` is ``torch.nn.functional.group_norm`` and ``n_groups=1`` is
    layer normalization (:class:`LayerNormalizer`). Nothing is learned from
    the training data apart from its width, so ``fit`` and ``partial_fit`` only
    validate.

    Parameters
    ----------
    n_groups : int >= 1, default=1
        Number of groups per row. It must divide the number of features
        (checked at fit).
    eps : float, default=1e-5
        Added to the variance before the square root, as ``eps`` in
        ``torch.nn.functional.group_norm``.
    with_mean : bool, default=True
        If True, subtract each group's mean. Must be False for sparse input,
        which centering would densify.
    with_std : bool, default=True
        If True, divide each group by ``sqrt(var + eps)``.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    LayerNormalizer : One group: the whole row.
    BatchNormalizer : Normalizes each feature (column) instead.
    invert_group_normalization : Undoes the transform, given its statistics.

    Notes
    -----
    **No inverse_transform.** Each row is normalized with its own statistics,
    which are not stored: a transformer cannot keep them for rows it has not
    seen, and storing them for the rows it has would make ``transform`` depend
    on what was seen before (and grow without bound in a stream). Ask for them
    with ``transform(X, return_stats=True)`` and undo the transform with
    :func:`invert_group_normalization`.

    **Constant groups.** A group whose variance plus ``eps`` is 0 (a constant
    group with ``eps=0``) is divided by 1, not by 0: it becomes all zeros when
    centered, and is left as is otherwise. A group with no non-missing value
    stays NaN.

    **Sparse input** is scaled without centering (``with_mean=False``), so
    zeros stay zeros; the statistics still count every implicit zero as a
    value. With ``with_mean=False`` the divisor is the standard deviation
    about the group's mean, as in ``StandardScaler(with_mean=False)``, not the
    root mean square.

    Statistics are computed in float64 in two passes (mean, then squared
    deviations); float32 input gives float32 output.

    **Array API.** With scikit-learn's array API dispatch on, X may be an
    array of any library it supports (a PyTorch tensor on any device, ...):
    ``transform`` computes on X's device, without reading from it, returns
    X's library and float dtype, and is differentiable with respect to X
    (for PyTorch, the gradient of ``torch.nn.functional.group_norm``). As
    for every estimator with array API support, later inputs must be of the
    library and device of the fit.

    References
    ----------
    .. [1] Y. Wu, K. He, "Group Normalization", ECCV 2018, arXiv:1803.08494.
    .. [2] D. Ulyanov, A. Vedaldi, V. Lempitsky, "Instance Normalization: The
       Missing Ingredient for Fast Stylization", arXiv:1607.08022, 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import GroupNormalizer
    >>> norm = GroupNormalizer(n_groups=2, eps=0.0)
    >>> norm = norm.partial_fit(np.array([[1.0, 3.0, 100.0, 300.0]]))
    >>> norm = norm.partial_fit(np.array([[2.0, 2.0, 0.0, 50.0]]))
    >>> X_tr, stats = norm.transform([[1.0, 3.0, 100.0, 300.0]], return_stats=True)
    >>> X_tr.tolist(), stats.center.tolist(), stats.scale.tolist()
    ([[-1.0, 1.0, -1.0, 1.0]], [[2.0, 200.0]], [[1.0, 100.0]])
    """

    _parameter_constraints: dict = {
        **_RowNormalizer._parameter_constraints,
        "n_groups": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_groups: int = 1,
        *,
        eps: float = 1e-5,
        with_mean: bool = True,
        with_std: bool = True,
    ) -> None:
        self.n_groups = n_groups
        self.eps = eps
        self.with_mean = with_mean
        self.with_std = with_std

    def _n_groups(self) -> int:
        return self.n_groups


def invert_group_normalization(
    X_tr: MatrixLike, stats: GroupStats | tuple[NamespaceArray, NamespaceArray]
) -> MatrixOutput:
    """Undo :meth:`LayerNormalizer.transform` or :meth:`GroupNormalizer.transform`.

    Computes ``x = z * scale + center`` for every group of every row, with the
    statistics that ``transform(X, return_stats=True)`` returned for the same
    rows (in the same order).

    Parameters
    ----------
    X_tr : {array-like, sparse matrix} of shape (n_samples, n_features)
        Normalized data. Sparse input needs a center of 0 (data transformed
        with ``with_mean=False``) and comes back as CSR.
    stats : GroupStats or tuple (center, scale)
        Arrays of shape (n_samples, n_groups), as returned by ``transform``.

    Returns
    -------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        The data in its original units, of the input's float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import LayerNormalizer, invert_group_normalization
    >>> X = np.array([[1.0, 2.0, 4.0], [-3.0, 0.0, 30.0]])
    >>> X_tr, stats = LayerNormalizer().fit(X).transform(X, return_stats=True)
    >>> np.round(invert_group_normalization(X_tr, stats), 9).tolist()
    [[1.0, 2.0, 4.0], [-3.0, 0.0, 30.0]]
    """
    if is_array_api_input(X_tr):
        if get_config()["array_api_dispatch"]:
            return _invert_array(X_tr, stats)
        X_tr = numpy_from_array_api(X_tr)
    X_tr = check_array(
        X_tr,
        accept_sparse="csr",
        dtype=FLOAT_DTYPES,
        ensure_all_finite="allow-nan",
        input_name="X_tr",
    )
    stats = _check_stats(stats, X_tr.shape)
    if sp.issparse(X_tr):
        if np.any(stats.center):
            raise ValueError(
                "Cannot add a nonzero center to sparse data (it would make it "
                "dense): these statistics come from a transform with "
                "with_mean=True; pass X_tr as a dense array."
            )
        X = _rowstats.invert_sparse_groups(X_tr, stats)
    else:
        X = _rowstats.invert_dense_groups(X_tr, stats)
    return X.astype(X_tr.dtype, copy=False)


def _invert_array(X_tr, stats):
    """``invert_group_normalization`` for an array of another namespace
    (dispatch on): on X_tr's device, the statistics moved there."""
    space = _xp.space_of(X_tr)
    plain = X_tr.detach() if getattr(X_tr, "requires_grad", False) else X_tr
    checked = check_array(
        plain,
        dtype=space.input_dtypes,
        ensure_all_finite="allow-nan",
        input_name="X_tr",
    )
    if checked is not plain:
        X_tr = space.xp.astype(X_tr, checked.dtype) if plain is not X_tr else checked
    center, scale = _stats_pair(stats)
    center, scale = (move_to(part, space.xp, space.device) for part in (center, scale))
    _check_stats_shape(tuple(center.shape), tuple(scale.shape), tuple(X_tr.shape))
    X = _xp.invert_dense_groups(space, X_tr, center, scale)
    return space.xp.astype(X, X_tr.dtype, copy=False)


def _stats_pair(stats):
    try:
        center, scale = stats
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "stats must be the (center, scale) pair returned by "
            f"transform(X, return_stats=True); got {type(stats).__name__}."
        ) from exc
    return center, scale


def _check_stats(stats, shape) -> GroupStats:
    center, scale = _stats_pair(stats)
    # Statistics of another namespace (a transform with dispatch on) are
    # data like any other: they come to NumPy with X_tr.
    center, scale = (
        to_numpy(part) if is_array_api_input(part) else part for part in (center, scale)
    )
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    _check_stats_shape(center.shape, scale.shape, shape)
    return GroupStats(center, scale)


def _check_stats_shape(center_shape, scale_shape, shape) -> None:
    n_samples, n_features = shape
    if (
        len(center_shape) != 2
        or center_shape != scale_shape
        or center_shape[0] != n_samples
        or n_features % max(center_shape[1], 1)
        or center_shape[1] == 0
    ):
        raise ValueError(
            f"stats do not match X_tr of shape {shape}: center and scale must "
            f"both have shape (n_samples, n_groups) = ({n_samples}, n_groups) with "
            f"n_groups dividing {n_features}; got {center_shape} and "
            f"{scale_shape}. Pass the stats returned by transform for the same "
            "rows."
        )
