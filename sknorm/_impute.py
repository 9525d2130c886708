"""StreamingImputer: SimpleImputer's imputation, learned from mini-batches."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data as _validate_data

from . import _kll, _stats
from ._base import StreamingNormalizer, part_seed
from ._compat import (
    Interval,
    StrOptions,
    check_feature_names_in,
    missing_values_constraint,
)
from ._typing import MatrixLike, MatrixOutput
from ._validation import FLOAT_DTYPES, check_no_infinity

if TYPE_CHECKING:
    from sklearn.utils import Tags

# -- the math -------------------------------------------------------------------


def is_nan_marker(value) -> bool:
    """Whether ``missing_values`` is NaN (then NaN marks a missing value)."""
    return isinstance(value, numbers.Real) and math.isnan(value)


def missing_mask(X: np.ndarray, missing_values) -> NDArray[np.bool_]:
    """True where X holds the missing-value marker.

    NaN is found by ``x != x``, which also works in object arrays.
    """
    if is_nan_marker(missing_values):
        if X.dtype.kind == "f":
            return np.isnan(X)
        if X.dtype.kind in "iub":
            return np.zeros(X.shape, dtype=bool)
        return X != X  # noqa: PLR0124  (NaN is the one value unequal to itself)
    if X.dtype.kind != "O" and isinstance(missing_values, str):
        return np.zeros(X.shape, dtype=bool)
    return np.asarray(X == missing_values, dtype=bool)


class ValueCounts(NamedTuple):
    """How often each value was observed in each feature.

    ``values[j]`` holds the distinct observed values of feature j, sorted,
    and ``counts[j]`` their numbers of occurrences (int64).
    """

    values: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]


def batch_value_counts(X: np.ndarray, missing: NDArray[np.bool_]) -> ValueCounts:
    """The value counts of one batch, missing values left out."""
    values, counts = [], []
    for column, absent in zip(X.T, missing.T, strict=True):
        distinct, count = np.unique(column[~absent], return_counts=True)
        values.append(distinct)
        counts.append(count.astype(np.int64))
    return ValueCounts(tuple(values), tuple(counts))


def merge_value_counts(old: ValueCounts, new: ValueCounts) -> ValueCounts:
    """Counts of two disjoint parts of a stream: c(v) = c_old(v) + c_new(v)."""
    values, counts = [], []
    for old_values, old_counts, new_values, new_counts in zip(
        old.values, old.counts, new.values, new.counts, strict=True
    ):
        if not (old_values.size and new_values.size):
            # one side is empty: the other's counts stand
            kept = (
                (old_values, old_counts)
                if old_values.size
                else (new_values, new_counts)
            )
            values.append(kept[0])
            counts.append(kept[1])
            continue
        both = np.concatenate([old_values, new_values])
        distinct, position = np.unique(both, return_inverse=True)
        weights = np.concatenate([old_counts, new_counts])
        values.append(distinct)
        counts.append(np.bincount(position, weights=weights).astype(np.int64))
    return ValueCounts(tuple(values), tuple(counts))


def most_frequent_values(counts: ValueCounts, dtype: np.dtype) -> np.ndarray:
    """The most frequent value of each feature; NaN where none was observed.

    Ties go to the smallest value (the first of the sorted values), as in
    ``SimpleImputer``.
    """
    result = np.full(
        len(counts.values), np.nan, dtype=object if dtype.kind == "O" else float
    )
    for j, (values, count) in enumerate(zip(counts.values, counts.counts, strict=True)):
        if count.size:
            result[j] = values[np.argmax(count)]
    return result


#: A strategy's summary of the observed values (see ImputerState).
Summary: TypeAlias = "_stats.StreamState | _kll.QuantileSketch | ValueCounts | None"


class ImputerState(NamedTuple):
    """What a StreamingImputer has learned.

    ``summary`` is the strategy's summary of the observed values (exact
    moments for "mean", a quantile sketch for "median", value counts for
    "most_frequent", None for "constant"); ``n_observed`` counts the
    observed (non-missing) values of each feature, ``has_missing`` tells
    which features had a missing value, ``n_rows`` counts the rows, and
    ``dtype`` is the dtype of the first batch (None before it).
    """

    strategy: str
    summary: Summary
    n_observed: NDArray[np.int64]
    has_missing: NDArray[np.bool_]
    n_rows: int
    dtype: np.dtype | None


def _check_strings_or_numbers(X: np.ndarray, missing_values) -> None:
    """Raise a TypeError unless every value of an object array is a string
    or a number (or the missing-value marker): the values must be ordered
    and hashable to be counted; and a ValueError for an infinite number."""
    allowed = np.frompyfunc(
        lambda v: isinstance(v, str | numbers.Number) or v is missing_values, 1, 1
    )(X).astype(bool)
    infinite = np.frompyfunc(
        lambda v: isinstance(v, numbers.Real) and math.isinf(v), 1, 1
    )(X).astype(bool)
    if infinite.any():
        check_no_infinity(np.where(infinite, np.inf, 0.0))
    if not allowed.all():
        row, column = np.argwhere(~allowed)[0]
        found = type(X[row, column]).__name__
        hint = (
            " To treat None as missing, pass missing_values=None (or replace "
            "None with np.nan)."
            if X[row, column] is None
            else ""
        )
        raise TypeError(
            "StreamingImputer needs each value to be a string or a number (or "
            "the missing-value marker): argument must be a string or a number, "
            f"got {found} in row {row}, feature {column}.{hint}"
        )


def _as_float_with_nan(X: np.ndarray, missing: NDArray[np.bool_]) -> np.ndarray:
    """X as floats, with NaN where a value is missing."""
    if X.dtype.kind == "f" and not missing.any():
        return X
    return np.where(missing, np.nan, X.astype(np.float64, copy=False))


# -- the estimator ---------------------------------------------------------------


class StreamingImputer(StreamingNormalizer):
    """Replace missing values by a statistic of each feature, learned from a stream.

    :class:`sklearn.impute.SimpleImputer` with :meth:`partial_fit`: each
    feature's missing values are replaced by the mean, the median or the most
    frequent value of its observed values in all the batches seen, or by a
    constant. Two imputers fitted on disjoint data can be combined with
    :meth:`merge`, and ``fit`` takes dask arrays and DataFrames.

    - ``"mean"``: exact streaming moments in float64; equal to SimpleImputer
      fitted on all the data to about 1e-15 relative.
    - ``"median"``: from one quantile sketch per feature (KLL compactors, as
      in :class:`RobustNormalizer`): exactly SimpleImputer's median while a
      feature has seen at most ``sketch_size`` values; after that a value
      whose rank is within ``sketch_size``-dependent bounds of the median's
      (0.9 % of the count at the default size, with 99 % confidence).
    - ``"most_frequent"``: exact counts of the distinct values, for numbers
      and for strings (object arrays, DataFrame columns of strings); ties go
      to the smallest value, as in SimpleImputer. The counts grow with the
      number of distinct values: meant for categorical features.
    - ``"constant"``: ``fill_value``.

    Parameters
    ----------
    missing_values : int, float, str, np.nan or None, default=np.nan
        The marker of a missing value.
    strategy : {"mean", "median", "most_frequent", "constant"}, default="mean"
        The statistic that replaces a missing value.
    fill_value : str or number, default=None
        The value for ``strategy="constant"``: 0 for numbers and
        ``"missing_value"`` for strings when None.
    copy : bool, default=True
        If False, ``transform`` writes into its input when it can.
    add_indicator : bool, default=False
        If True, ``transform`` appends a column of 0/1 for each feature that
        has had a missing value in the data seen so far, as SimpleImputer
        does for the features with missing values in fit.
    keep_empty_features : bool, default=False
        If False, a feature without any observed value so far is left out of
        the output, as in SimpleImputer; in a stream the output then widens
        when such a feature gets its first value. If True, it is kept and
        imputed with 0 (``fill_value`` for "constant").
    sketch_size : int >= 8, default=512
        Items per level of the quantile sketch of ``strategy="median"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the coins of the median's sketch (see RobustNormalizer).

    Attributes
    ----------
    statistics_ : ndarray of shape (n_features_in_,)
        The imputation value of each feature: float64 for numbers, object
        for strings and "constant"; NaN for a feature without observed values
        (0 with ``keep_empty_features=True``).
    indicator_features_ : ndarray of shape (n_indicators,)
        The features that get an indicator column (with ``add_indicator``).
    n_samples_seen_ : int
        Number of rows seen.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when X has string column names.

    See Also
    --------
    sklearn.impute.SimpleImputer : The same, fitted on all the data at once.
    StreamingColumnTransformer : Impute and normalize columns of a stream.

    Notes
    -----
    Sparse input is not accepted (SimpleImputer's CSC path is not offered),
    and neither are pandas' ``pd.NA`` marker nor a callable strategy.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import StreamingImputer
    >>> imputer = StreamingImputer()
    >>> imputer = imputer.partial_fit(np.array([[1.0, np.nan], [3.0, 10.0]]))
    >>> imputer = imputer.partial_fit(np.array([[np.nan, 20.0], [5.0, 30.0]]))
    >>> imputer.statistics_.tolist()
    [3.0, 20.0]
    >>> imputer.transform(np.array([[np.nan, np.nan]])).tolist()
    [[3.0, 20.0]]
    >>> colors = np.array([["red"], ["blue"], [None], ["red"]], dtype=object)
    >>> modes = StreamingImputer(missing_values=None, strategy="most_frequent")
    >>> modes.partial_fit(colors).transform(colors).ravel().tolist()
    ['red', 'blue', 'red', 'red']
    """

    _parameter_constraints: dict = {
        "missing_values": missing_values_constraint(),
        "strategy": [StrOptions({"mean", "median", "most_frequent", "constant"})],
        "fill_value": "no_validation",
        "copy": ["boolean"],
        "add_indicator": ["boolean"],
        "keep_empty_features": ["boolean"],
        "sketch_size": [Interval(numbers.Integral, 8, None, closed="left")],
        "random_state": ["random_state"],
    }

    _offers_merge = True
    _merge_ignored_params = ("copy", "random_state")

    def __init__(
        self,
        *,
        missing_values: float | str | None = np.nan,
        strategy: Literal["mean", "median", "most_frequent", "constant"] = "mean",
        fill_value: str | float | None = None,
        copy: bool = True,
        add_indicator: bool = False,
        keep_empty_features: bool = False,
        sketch_size: int = 512,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.missing_values = missing_values
        self.strategy = strategy
        self.fill_value = fill_value
        self.copy = copy
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features
        self.sketch_size = sketch_size
        self.random_state = random_state

    # -- hooks of StreamingNormalizer ----------------------------------------

    def _settings(self) -> dict:
        return {
            "strategy": self.strategy,
            "nan_marker": is_nan_marker(self.missing_values),
        }

    def _empty_state(self, n_features, block=None):
        summary: Summary
        if self.strategy == "mean":
            summary = _stats.empty_stream_state(n_features)
        elif self.strategy == "median":
            seed = part_seed(self.random_state, block)
            summary = _kll.empty_sketch(n_features, self.sketch_size, seed)
        elif self.strategy == "most_frequent":
            empty = np.empty(0)
            summary = ValueCounts(
                (empty,) * n_features, (empty.astype(np.int64),) * n_features
            )
        else:
            summary = None
        return ImputerState(
            self.strategy,
            summary,
            np.zeros(n_features, np.int64),
            np.zeros(n_features, bool),
            0,
            None,
        )

    def _check_state(self, state):
        if state.strategy != self.strategy:
            raise ValueError(
                f"strategy changed from {state.strategy!r} to {self.strategy!r} "
                "after fitting started; call fit to restart, or keep the "
                "strategy of the stream."
            )
        if self.strategy == "median":
            _kll.check_sketch_size(state.summary.k, self.sketch_size)

    def _check_batch(self, X):
        if X.dtype.kind == "f" and not is_nan_marker(self.missing_values):
            if np.isnan(X).any():
                raise ValueError(
                    "Input X contains NaN, but missing_values is "
                    f"{self.missing_values!r}: set missing_values=np.nan to "
                    "impute NaN, or replace it first."
                )
        if self.strategy == "constant" and self.fill_value is not None:
            fill_dtype = np.asarray(self.fill_value).dtype
            if not np.can_cast(fill_dtype, X.dtype, casting="same_kind"):
                raise ValueError(
                    f"fill_value={self.fill_value!r} (of type {fill_dtype}) cannot "
                    f"be cast to the input data of dtype {X.dtype}: give a "
                    "fill_value of the same kind as the data."
                )

    def _defers_infinity_check(self, X, sample_weight):
        # validate_data checked object arrays, which the sum check cannot.
        return X.dtype.kind == "O"

    def _update_state(self, old, X, sample_weight=None, on_nonfinite=None):
        if old.dtype is not None and (old.dtype.kind == "O") != (X.dtype.kind == "O"):
            raise ValueError(
                f"This batch has dtype {X.dtype}, but the imputer was fitted on "
                f"dtype {old.dtype}: give every batch the same kind of values "
                "(numbers or strings)."
            )
        missing = missing_mask(X, self.missing_values)
        summary = old.summary
        if self.strategy == "mean":
            summary = _stats.update_exact(summary, _as_float_with_nan(X, missing))
        elif self.strategy == "median":
            summary = _kll.update_sketch(summary, _as_float_with_nan(X, missing))
        elif self.strategy == "most_frequent":
            summary = merge_value_counts(summary, batch_value_counts(X, missing))
        return ImputerState(
            old.strategy,
            summary,
            old.n_observed + np.count_nonzero(~missing, axis=0),
            old.has_missing | missing.any(axis=0),
            old.n_rows + X.shape[0],
            X.dtype if old.dtype is None else old.dtype,
        )

    def _merge_states(self, old, new):
        summary: Summary
        if self.strategy == "mean":
            summary = _stats.merge_stream_states(old.summary, new.summary)
        elif self.strategy == "median":
            summary = _kll.merge_sketches(old.summary, new.summary)
        elif self.strategy == "most_frequent":
            summary = merge_value_counts(old.summary, new.summary)
        else:
            summary = None
        dtype = old.dtype if old.dtype is not None else new.dtype
        return ImputerState(
            old.strategy,
            summary,
            old.n_observed + new.n_observed,
            old.has_missing | new.has_missing,
            old.n_rows + new.n_rows,
            dtype,
        )

    def _fitted_attributes(self, state) -> dict:
        n_features = state.n_observed.size
        empty = state.n_observed == 0
        if state.strategy == "mean":
            statistics = _stats.state_mean_var(state.summary)[0]
        elif state.strategy == "median":
            statistics = _kll.sketch_quantiles(state.summary, np.array([0.5]))[0]
        elif state.strategy == "most_frequent":
            statistics = most_frequent_values(state.summary, state.dtype)
        else:
            statistics = np.full(
                n_features, self._fill_value(state.dtype), dtype=object
            )
        if empty.any():
            statistics = statistics.copy()
            if state.strategy == "constant":
                if not self.keep_empty_features:
                    statistics[empty] = np.nan
            else:
                statistics[empty] = 0 if self.keep_empty_features else np.nan
        return {
            "statistics_": statistics,
            "indicator_features_": np.flatnonzero(state.has_missing),
            "n_samples_seen_": int(state.n_rows),
        }

    def _fill_value(self, dtype):
        if self.fill_value is not None:
            return self.fill_value
        return "missing_value" if dtype is not None and dtype.kind == "O" else 0

    def _state_to_dict(self, state):
        data = {
            "kind": "imputer",
            "strategy": state.strategy,
            "n_observed": state.n_observed,
            "has_missing": state.has_missing,
            "n_rows": int(state.n_rows),
            "dtype": None if state.dtype is None else state.dtype.str,
        }
        summary = state.summary
        if state.strategy == "mean":
            data.update(
                shift=summary.shift,
                weight=summary.moments.weight,
                mean=summary.moments.mean,
                var=summary.moments.var,
                count=summary.count,
                stream_rows=int(summary.n_rows),
            )
        elif state.strategy == "median":
            data["sketch"] = _kll.sketch_to_dict(summary)
        elif state.strategy == "most_frequent":
            data["values"] = list(summary.values)
            data["counts"] = list(summary.counts)
        return data

    def _state_from_dict(self, data):
        if data.get("kind") != "imputer":
            raise ValueError(
                f"Unknown sknorm state kind {data.get('kind')!r} in a "
                "StreamingImputer checkpoint."
            )
        strategy = data["strategy"]
        summary: Summary
        if strategy == "mean":
            summary = _stats.StreamState(
                data["shift"],
                _stats.Moments(data["weight"], data["mean"], data["var"]),
                data["count"],
                data["stream_rows"],
            )
        elif strategy == "median":
            summary = _kll.sketch_from_dict(data["sketch"])
        elif strategy == "most_frequent":
            summary = ValueCounts(tuple(data["values"]), tuple(data["counts"]))
        else:
            summary = None
        dtype = None if data["dtype"] is None else np.dtype(data["dtype"])
        return ImputerState(
            strategy,
            summary,
            data["n_observed"],
            data["has_missing"],
            data["n_rows"],
            dtype,
        )

    # -- input --------------------------------------------------------------

    def _validate_input(self, X, *, reset: bool, learning: bool, copy=False):
        """``validate_data`` with SimpleImputer's rules: floats for "mean" and
        "median", any numbers or strings (object) for the other strategies;
        NaN allowed only as the missing-value marker; no infinity."""
        dtype: tuple[type, ...] | type | None
        if self.strategy in ("mean", "median"):
            dtype = FLOAT_DTYPES
        elif isinstance(X, list) and any(
            isinstance(item, str) for row in X for item in row
        ):
            dtype = object
        else:
            dtype = None
        state = self.__dict__.get("_state")
        if not reset and state is not None and state.dtype is not None:
            if state.dtype.kind == "O":
                dtype = object
        try:
            # infinity and NaN are checked below, with sknorm's messages
            X = _validate_data(
                self,
                X,
                reset=reset,
                dtype=dtype,
                ensure_all_finite=False,
                copy=copy,
                force_writeable=not learning,
            )
        except ValueError as error:
            if "could not convert" in str(error):
                raise ValueError(
                    f"Cannot use the {self.strategy} strategy with non-numeric "
                    f"data: use strategy='most_frequent' or 'constant' for "
                    f"strings. ({error})"
                ) from None
            raise
        if X.dtype.kind == "O":
            _check_strings_or_numbers(X, self.missing_values)
        elif X.dtype.kind == "f":
            check_no_infinity(X)
            self._check_batch(X)  # NaN that is not the marker
        if X.dtype.kind not in "iufO":
            raise ValueError(
                f"StreamingImputer takes numbers (float or int) or strings "
                f"(object arrays), got dtype {X.dtype}."
            )
        if X.dtype.kind in "iuf" and not isinstance(self.missing_values, numbers.Real):
            raise ValueError(
                f"The data are numbers but missing_values={self.missing_values!r} "
                "is not: give a number or np.nan as missing_values."
            )
        return X

    def _validated_for_transform(self, X, copy: bool):
        # _validate_input refuses infinity itself (also in object arrays,
        # which the base's check cannot sum).
        return self._validate_input(X, reset=False, learning=False, copy=copy)

    # -- transform -------------------------------------------------------------

    def _transform_dense(self, X, out):
        self._check_batch(X)  # NaN that is not the marker
        statistics = self.statistics_
        missing = missing_mask(X, self.missing_values)
        if out is not X:
            np.copyto(out, X)
            X = out
        kept = None
        if not self.keep_empty_features:
            empty = missing_mask(statistics, np.nan)
            if empty.any():
                names = np.flatnonzero(empty)
                if hasattr(self, "feature_names_in_"):
                    names = self.feature_names_in_[names]
                warnings.warn(
                    f"Skipping features without any observed values: {names}. At "
                    "least one non-missing value is needed for imputation with "
                    f"strategy='{self.strategy}'.",
                    stacklevel=3,
                )
                kept = np.flatnonzero(~empty)
                X = X[:, kept]
                statistics = statistics[kept]
        fill = statistics.astype(X.dtype, copy=False)
        filled_missing = missing if kept is None else missing[:, kept]
        rows, columns = np.nonzero(filled_missing)
        X[rows, columns] = fill[columns]
        if not self.add_indicator:
            return X
        indicator = missing[:, self.indicator_features_]
        return np.hstack([X, indicator.astype(X.dtype)])

    def transform(self, X: MatrixLike, copy: bool | None = None) -> MatrixOutput:
        """Replace the missing values of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data.
        copy : bool, default=None
            Copy X first; defaults to the ``copy`` parameter.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features_out)
            X with its missing values replaced, of X's dtype (floats for
            "mean" and "median"); without the features that have no observed
            value (unless ``keep_empty_features``) and followed by the
            indicator columns (with ``add_indicator``).
        """
        if not self.keep_empty_features or self.add_indicator:
            from ._validation import is_dask_collection

            if is_dask_collection(X):
                check_is_fitted(self)
                empty = missing_mask(self.statistics_, np.nan).any()
                if self.add_indicator or empty:
                    raise ValueError(
                        "transform of a dask collection keeps the number of "
                        "columns; with add_indicator=True (or features without "
                        "observed values and keep_empty_features=False) the "
                        "output has another number: compute X first, or "
                        "transform its blocks with map_blocks."
                    )
        return super().transform(X, copy=copy)

    def get_feature_names_out(
        self, input_features: ArrayLike | None = None
    ) -> NDArray[np.object_]:
        """Names of the output features: the kept inputs, then the indicators.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names; ``feature_names_in_`` (or ``x0, x1, ...``)
            when None.

        Returns
        -------
        feature_names_out : ndarray of str objects
            As SimpleImputer names them (``missingindicator_<name>`` for the
            indicators).
        """
        check_is_fitted(self)
        names = check_feature_names_in(self, input_features)
        kept = names
        if not self.keep_empty_features:
            kept = names[~missing_mask(self.statistics_, np.nan)]
        if not self.add_indicator:
            return kept
        indicators = [
            f"missingindicator_{name}" for name in names[self.indicator_features_]
        ]
        return np.concatenate([kept, np.asarray(indicators, dtype=object)])

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = is_nan_marker(self.missing_values)
        tags.input_tags.sparse = False
        return tags
