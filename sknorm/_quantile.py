r"""QuantileNormalizer: QuantileTransformer's mapping, learned from a stream.

The mapping is scikit-learn's: a feature's value ``x`` goes to its
interpolated quantile level ``u`` in ``[0, 1]`` (uniform output), or to
``Phi^{-1}(u)`` (normal output). The quantiles come from the relative-error
sketches of :mod:`sknorm._req`.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from . import _kll, _req
from ._base import StreamingNormalizer, part_seed, samples_seen
from ._compat import Interval, StrOptions

__all__ = ["QuantileNormalizer", "quantile_map", "inverse_quantile_map"]

# As scikit-learn's QuantileTransformer: how close to 0 or 1 a uniform value
# may come before the normal output is clipped.
BOUNDS_THRESHOLD = 1e-7
_NORMAL_CLIP = (
    stats.norm.ppf(BOUNDS_THRESHOLD - np.spacing(1)),
    stats.norm.ppf(1 - (BOUNDS_THRESHOLD - np.spacing(1))),
)


class QuantileState(NamedTuple):
    """The streaming state: the sketches and the number of rows seen."""

    sketch: _req.RelativeErrorSketch
    n_rows: int


def quantile_map(
    x: ArrayLike,
    quantiles: NDArray[np.float64],
    references: NDArray[np.float64],
    output_distribution: str = "uniform",
) -> NDArray[np.float64]:
    r"""QuantileTransformer's forward map of one feature (NaN kept).

    .. math::

        u(x) = \tfrac12 \left(\mathrm{interp}(x; q, r)
               - \mathrm{interp}(-x; -q^{\downarrow}, -r^{\downarrow})\right),

    the mean of the interpolation from below and from above (so that a value
    repeated in ``q`` maps to the middle of its references), with ``u = 0``
    at or below ``q[0]`` and ``u = 1`` at or above ``q[-1]`` (within
    ``1e-7`` for the normal output); the normal output is
    ``Phi^{-1}(u)`` clipped to ``Phi^{-1}(1e-7 - eps)`` and its mirror.

    Parameters
    ----------
    x : ndarray of shape (n_samples,), float64
    quantiles : ndarray of shape (n_quantiles,)
        Increasing quantiles of the feature at ``references``.
    references : ndarray of shape (n_quantiles,)
    output_distribution : {"uniform", "normal"}

    Returns
    -------
    y : ndarray of shape (n_samples,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm._quantile import quantile_map
    >>> quantile_map(np.array([0.0, 1.5, 3.0, 9.0]), np.array([0.0, 1.0, 3.0]),
    ...              np.array([0.0, 0.5, 1.0])).tolist()
    [0.0, 0.625, 1.0, 1.0]
    """
    normal = output_distribution == "normal"
    y = np.array(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if normal:
            low = y - BOUNDS_THRESHOLD < quantiles[0]
            high = y + BOUNDS_THRESHOLD > quantiles[-1]
        else:
            low = y == quantiles[0]
            high = y == quantiles[-1]
    finite = ~np.isnan(y)
    values = y[finite]
    y[finite] = 0.5 * (
        np.interp(values, quantiles, references)
        - np.interp(-values, -quantiles[::-1], -references[::-1])
    )
    y[high] = 1
    y[low] = 0
    if normal:
        with np.errstate(invalid="ignore"):
            y = np.clip(stats.norm.ppf(y), *_NORMAL_CLIP)
    return y


def inverse_quantile_map(
    y: ArrayLike,
    quantiles: NDArray[np.float64],
    references: NDArray[np.float64],
    output_distribution: str = "uniform",
) -> NDArray[np.float64]:
    r"""QuantileTransformer's inverse map of one feature (NaN kept).

    ``x = interp(u; r, q)`` with ``u = y`` (uniform) or ``u = Phi(y)``
    (normal), and ``x = q[0]`` or ``q[-1]`` at the ends.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm._quantile import inverse_quantile_map
    >>> inverse_quantile_map(np.array([0.0, 0.625, 1.0]), np.array([0.0, 1.0, 3.0]),
    ...                      np.array([0.0, 0.5, 1.0])).tolist()
    [0.0, 1.5, 3.0]
    """
    normal = output_distribution == "normal"
    u = np.array(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if normal:
            u = stats.norm.cdf(u)
            low = u - BOUNDS_THRESHOLD < 0
            high = u + BOUNDS_THRESHOLD > 1
        else:
            low = u == 0
            high = u == 1
    finite = ~np.isnan(u)
    u[finite] = np.interp(u[finite], references, quantiles)
    u[high] = quantiles[-1]
    u[low] = quantiles[0]
    return u


class QuantileNormalizer(StreamingNormalizer):
    r"""Map each feature to a uniform or normal distribution, learned from a stream.

    The transform of :class:`sklearn.preprocessing.QuantileTransformer`: every
    value goes through its feature's estimated cumulative distribution
    function (interpolated linearly between ``n_quantiles`` quantiles), and
    for ``output_distribution="normal"`` then through the inverse normal
    CDF. Unlike ``QuantileTransformer``, it learns with :meth:`partial_fit`,
    one mini-batch at a time, in memory that grows only logarithmically with
    the stream, two normalizers fitted on disjoint data combine with
    :meth:`merge`, and nothing is subsampled: the quantiles come from one
    mergeable quantile sketch per feature whose rank error shrinks towards
    both tails (see Notes), where the normal output magnifies errors most.

    While a feature has seen at most ``sketch_size`` values, ``quantiles_``
    and the outputs equal ``QuantileTransformer(n_quantiles=n_quantiles,
    subsample=None)`` fitted on the same data. Missing values (NaN) are
    ignored when fitting and kept by ``transform``.

    Parameters
    ----------
    n_quantiles : int >= 1, default=1000
        Number of quantiles, at ``references_``, that define the mapping.
        As in ``QuantileTransformer``, at most the number of rows seen.
    output_distribution : {"uniform", "normal"}, default="uniform"
        Marginal distribution of the transformed data.
    sketch_size : int >= 128, default=2048
        Items ``k`` that each level of a feature's sketch holds before it
        compacts; every quantile is exact while a feature has seen at most
        ``k`` values. Errors fall as ``1 / k``; memory and time grow as ``k``.
    random_state : int, RandomState instance or None, default=None
        Seeds the fair coins of the sketch compactions, drawn at the first
        fit. Fix it for reproducible results. When fitting parts of a data
        set to :meth:`merge` them, give every part a different seed (or
        None).
    copy : bool, default=True
        If False, ``transform`` and ``inverse_transform`` work in place when
        the input is a writable array of a float dtype.

    Attributes
    ----------
    quantiles_ : ndarray of shape (n_quantiles_, n_features)
        Quantiles of each feature at ``references_``, float64, computed from
        the sketches when first read after an update. NaN for a feature
        that has seen no value.
    references_ : ndarray of shape (n_quantiles_,)
        Quantile levels, ``np.linspace(0, 1, n_quantiles_)``.
    n_quantiles_ : int
        ``max(1, min(n_quantiles, rows seen))``, as in ``QuantileTransformer``.
    n_samples_seen_ : int or ndarray of shape (n_features,)
        Number of samples seen; an int64 array of per-feature counts of
        non-missing values when features saw different numbers.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.preprocessing.QuantileTransformer : The same mapping, from all
        the data at once or a random subsample of 10,000 rows by default.
    RobustNormalizer : Median and quantile-range scaling from a stream.

    Notes
    -----
    **Error guarantee.** For a feature that has seen ``n`` values, let ``y``
    be a value of true rank ``R`` and ``m = min(R, n - R)``. The sketch's
    estimated rank of ``y`` is within

    .. math:: \sqrt{2 \ln(2 / \delta)\, \min(V_{rel}, V_{add})},
              \quad V_{rel} \approx m^2 \left(\frac{2}{sP}
              + \frac{4 L}{3 P^2}\right), \quad V_{add} \approx 8 n^2 / k^2,

    of ``R`` with probability at least ``1 - delta`` (``k = sketch_size``,
    ``P = k / 16``, ``s = k / 128``, ``L = 8``; the full bound, with terms
    that fade as ``m`` grows, is in the module ``sknorm._req``), whatever the
    order of the stream and the batch sizes; merge trees multiply the
    variance by ``1 + d``, ``d`` the number of merges a part went through as
    the argument of :meth:`merge`. The error is relative to the distance to
    the nearer end of the data, so a uniform output ``u`` is off by at most
    about that bound divided by ``n`` plus one spacing of the references
    around ``min(u, 1 - u)``, and the normal output keeps its tails. At
    ``k = 2048``, ``n = 10**6`` and 99 % confidence the bound is 171 ranks
    (17 % of the rank) at rank ``10**-3 n`` and ``0.48 %`` of ``n`` at the
    median; measured errors are an order of magnitude smaller (see the
    benchmark ``benchmarks/bench_quantile.py``).

    Memory is at most ``k (log2(2 n / k) + 1)`` values per feature (at most
    180 KB at ``n = 10**6``), against ``n_quantiles + subsample`` values kept
    or sorted by ``QuantileTransformer``. ``transform`` loops over features,
    like ``QuantileTransformer``.

    References
    ----------
    G. Cormode, Z. Karnin, E. Liberty, J. Thaler, P. Vesely, "Relative Error
    Streaming Quantiles", PODS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import QuantileNormalizer
    >>> norm = QuantileNormalizer(n_quantiles=5)
    >>> norm = norm.partial_fit(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]))
    >>> norm = norm.partial_fit(np.array([[4.0, 40.0], [5.0, 1000.0]]))
    >>> norm.quantiles_[:, 1].tolist()
    [10.0, 20.0, 30.0, 40.0, 1000.0]
    >>> norm.transform([[2.5, 35.0]]).tolist()
    [[0.375, 0.625]]
    """

    _parameter_constraints: dict = {
        "n_quantiles": [Interval(Integral, 1, None, closed="left")],
        "output_distribution": [StrOptions({"uniform", "normal"})],
        "sketch_size": [Interval(Integral, 128, None, closed="left")],
        "random_state": ["random_state"],
        "copy": ["boolean"],
    }

    _offers_merge = True
    _merge_ignored_params = ("copy", "random_state")
    _transient_attributes = StreamingNormalizer._transient_attributes | {
        "_quantiles_cache"
    }

    def __init__(
        self,
        n_quantiles: int = 1000,
        *,
        output_distribution: Literal["uniform", "normal"] = "uniform",
        sketch_size: int = 2048,
        random_state: int | np.random.RandomState | None = None,
        copy: bool = True,
    ) -> None:
        self.n_quantiles = n_quantiles
        self.output_distribution = output_distribution
        self.sketch_size = sketch_size
        self.random_state = random_state
        self.copy = copy

    # -- hooks of StreamingNormalizer ----------------------------------------

    def _settings(self) -> dict:
        return {
            "n_quantiles": int(self.n_quantiles),
            "normal": self.output_distribution == "normal",
        }

    def _empty_state(self, n_features, block=None):
        seed = part_seed(self.random_state, block)
        return QuantileState(_req.empty_sketch(n_features, self.sketch_size, seed), 0)

    def _check_state(self, state):
        _kll.check_sketch_size(state.sketch.k, self.sketch_size)

    def _defers_infinity_check(self, X, sample_weight):
        # The sketch finds infinities in the sorted batch for free.
        return True

    def _fit_batch_size(self):
        # fit streams large data in blocks: a bounded working copy, the same
        # result in the exact regime, the same guarantee beyond.
        return 65_536

    def _update_state(self, old, X, sample_weight, on_nonfinite=None):
        sketch = _req.update_sketch(old.sketch, X, on_infinity=on_nonfinite)
        return QuantileState(sketch, old.n_rows + X.shape[0])

    def _merge_states(self, old, new):
        return QuantileState(
            _req.merge_sketches(old.sketch, new.sketch), old.n_rows + new.n_rows
        )

    def _fitted_attributes(self, state) -> dict:
        n_quantiles = max(1, min(self._checked_settings()["n_quantiles"], state.n_rows))
        return {
            "n_samples_seen_": samples_seen(_req.sketch_counts(state.sketch)),
            "n_quantiles_": n_quantiles,
            "references_": np.linspace(0, 1, n_quantiles, endpoint=True),
            # quantiles_ is computed from the sketch when first read.
            "_quantiles_cache": {},
        }

    def _state_to_dict(self, state):
        return {**_req.sketch_to_dict(state.sketch), "n_rows": int(state.n_rows)}

    def _state_from_dict(self, data):
        data = dict(data)
        n_rows = int(data.pop("n_rows"))
        return QuantileState(_req.sketch_from_dict(data), n_rows)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_state" in self.__dict__:
            self._quantiles_cache: dict[str, Any] = {}

    # -- statistics ---------------------------------------------------------

    def _quantiles(self) -> np.ndarray:
        """quantiles_ from the current sketch, computed once per update."""
        cache = self.__dict__.get("_quantiles_cache")
        if cache is None:
            raise AttributeError(
                f"This {type(self).__name__} has no quantiles yet: call fit or "
                "partial_fit first."
            )
        if "quantiles" not in cache:
            # Scaled to percent and back as np.nanpercentile does in
            # QuantileTransformer, for identical quantiles.
            levels = self.references_ * 100 / 100
            cache["quantiles"] = _req.sketch_quantiles(self._state.sketch, levels)
        return cache["quantiles"]

    @property
    def quantiles_(self) -> NDArray[np.float64]:
        """Quantiles of each feature at ``references_`` (see the class docstring)."""
        return self._quantiles().copy()

    # -- transforming --------------------------------------------------------

    def _transform_dense(self, X, out):
        return self._map_columns(X, out, quantile_map)

    def _inverse_transform_dense(self, X, out):
        return self._map_columns(X, out, inverse_quantile_map)

    def _map_columns(self, X, out, column_map):
        quantiles = self._quantiles()
        references = self.references_
        distribution = self.output_distribution
        for j in range(X.shape[1]):
            out[:, j] = column_map(X[:, j], quantiles[:, j], references, distribution)
        return out
