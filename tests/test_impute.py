"""Tests for StreamingImputer, against SimpleImputer fitted on all the data."""

import contextlib
import copy
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from sknorm import (
    BatchNormalizer,
    StreamingImputer,
    make_streaming_column_transformer,
    make_streaming_pipeline,
)
from sknorm._kll import rank_error_bound

STRATEGIES = ["mean", "median", "most_frequent", "constant"]


def numbers(n_rows=300, n_features=4, seed=0, marker=np.nan, rounded=False):
    """Features on scales 1 to 1e6, 10% missing, with the given marker."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)) * np.logspace(0, 6, n_features)
    if rounded:  # repeated values, for most_frequent
        X = np.round(X / np.logspace(0, 6, n_features) * 2)
    X[rng.random(X.shape) < 0.1] = marker
    return X


def stream(imputer, X, size=50):
    for start in range(0, len(X), size):
        imputer.partial_fit(X[start : start + size])
    return imputer


def assert_statistics_equal(ours, theirs, rtol=0.0):
    assert_allclose(
        ours.statistics_.astype(float), theirs.statistics_.astype(float), rtol=rtol
    )


# -- scikit-learn's estimator checks (no exemptions) ----------------------------


@parametrize_with_checks(
    [
        StreamingImputer(),
        StreamingImputer(strategy="median", random_state=0),
        StreamingImputer(strategy="most_frequent"),
        StreamingImputer(strategy="constant", add_indicator=True),
        StreamingImputer(keep_empty_features=True, add_indicator=True),
        StreamingImputer(missing_values=-1.0),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- equal to SimpleImputer on all the data -----------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("marker", [np.nan, -1.0, 0.0])
def test_stream_equals_simple_imputer_on_all_the_data(strategy, marker):
    X = numbers(marker=marker, rounded=strategy == "most_frequent")
    ours = stream(StreamingImputer(strategy=strategy, missing_values=marker), X)
    theirs = SimpleImputer(strategy=strategy, missing_values=marker).fit(X)
    # mean: exact streaming moments; the others are exact here
    assert_statistics_equal(ours, theirs, rtol=1e-12 if strategy == "mean" else 0)
    X_test = numbers(seed=1, marker=marker, rounded=strategy == "most_frequent")
    assert_allclose(ours.transform(X_test), theirs.transform(X_test), rtol=1e-12)
    assert ours.n_samples_seen_ == len(X)


def test_mean_is_exact_where_sums_of_squares_would_cancel():
    # values 1e9 + small: a naive float sum of each batch loses the digits
    rng = np.random.default_rng(2)
    X = 1e9 + rng.normal(size=(1000, 2))
    X[rng.random(X.shape) < 0.2] = np.nan
    ours = stream(StreamingImputer(), X, size=7)
    exact = np.array(
        [np.mean(column[~np.isnan(column)].astype(np.longdouble)) for column in X.T]
    )
    assert_allclose(ours.statistics_, exact.astype(float), rtol=1e-15)


def test_median_is_exact_below_the_sketch_size():
    X = numbers(n_rows=500)  # under 512 values per feature
    ours = stream(StreamingImputer(strategy="median"), X, size=37)
    assert_array_equal(ours.statistics_, np.nanmedian(X, axis=0))


def test_median_has_the_stated_rank_error_above_the_sketch_size():
    rng = np.random.default_rng(3)
    X = rng.standard_cauchy(size=(20_000, 3))
    X[rng.random(X.shape) < 0.05] = np.nan
    k = 64
    ours = stream(
        StreamingImputer(strategy="median", sketch_size=k, random_state=0), X, 1000
    )
    for value, column in zip(ours.statistics_, X.T, strict=True):
        observed = column[~np.isnan(column)]
        rank = np.mean(observed < value)
        assert abs(rank - 0.5) <= rank_error_bound(k)


def test_most_frequent_breaks_ties_as_simple_imputer():
    # 3 and 1 both occur twice, 2 once: the smaller wins, in any batch order
    X = np.array([[3.0], [1.0], [np.nan], [2.0], [3.0], [1.0]])
    ours = stream(StreamingImputer(strategy="most_frequent"), X[::-1], size=2)
    theirs = SimpleImputer(strategy="most_frequent").fit(X)
    assert ours.statistics_[0] == theirs.statistics_[0] == 1.0


@pytest.mark.parametrize("marker", [None, np.nan, "?"])
def test_most_frequent_and_constant_on_strings(marker):
    rng = np.random.default_rng(4)
    X = rng.choice(["red", "green", "blue", marker], size=(200, 3)).astype(object)
    for strategy in ("most_frequent", "constant"):
        ours = stream(StreamingImputer(strategy=strategy, missing_values=marker), X)
        theirs = SimpleImputer(strategy=strategy, missing_values=marker).fit(X)
        assert_array_equal(ours.statistics_, theirs.statistics_)
        assert_array_equal(ours.transform(X), theirs.transform(X))


def test_string_columns_of_a_dataframe():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"color": ["red", np.nan, "blue", "red"], "size": ["S", "M", np.nan, "M"]}
    )
    # NaN marks the missing strings with pandas 2 (object columns) and 3
    # (string columns) alike; None is not NaN (see the test below).
    ours = StreamingImputer(strategy="most_frequent")
    ours.partial_fit(frame.iloc[:2]).partial_fit(frame.iloc[2:])
    theirs = SimpleImputer(strategy="most_frequent").fit(frame)
    assert_array_equal(ours.transform(frame), theirs.transform(frame))
    assert ours.transform(frame).tolist() == [
        ["red", "S"],
        ["red", "M"],
        ["blue", "M"],
        ["red", "M"],
    ]
    assert_array_equal(ours.get_feature_names_out(), ["color", "size"])


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_indicator_and_empty_features_as_simple_imputer(strategy, keep):
    X = numbers(n_rows=100)
    X[:, 2] = np.nan  # a feature without any observed value
    X[:, 0] = np.arange(100.0)  # a feature without missing values
    params = {"strategy": strategy, "add_indicator": True, "keep_empty_features": keep}
    ours = stream(StreamingImputer(**params), X, size=30)
    theirs = SimpleImputer(**params).fit(X)
    if strategy == "constant" and not keep:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if theirs.transform(X[:1]).shape[1] == 4 + 3:
                pytest.skip(
                    "this scikit-learn keeps empty features under the constant "
                    "strategy whatever keep_empty_features (changed in 1.8); "
                    "StreamingImputer follows the current rule"
                )
    skips = not keep  # SimpleImputer drops the empty feature, with a warning
    with expect_skip_warning(skips):
        got = ours.transform(X)
    with expect_skip_warning(skips):
        expected = theirs.transform(X)
    assert got.shape == expected.shape
    assert_allclose(got.astype(float), expected.astype(float), rtol=1e-12)
    assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())
    assert_array_equal(ours.indicator_features_, theirs.indicator_.features_)


@contextlib.contextmanager
def expect_skip_warning(expected):
    """SimpleImputer's warning about features without values, or no warning."""
    if expected:
        with pytest.warns(UserWarning, match="Skipping features without any"):
            yield
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_is_kept(dtype):
    X = numbers().astype(dtype)
    ours = StreamingImputer().partial_fit(X)
    assert ours.transform(X).dtype == dtype


def test_integer_data_with_most_frequent_stays_integer():
    X = np.array([[1, -1], [2, 5], [2, 5], [-1, 7]])
    ours = StreamingImputer(strategy="most_frequent", missing_values=-1)
    ours.partial_fit(X[:2]).partial_fit(X[2:])
    theirs = SimpleImputer(strategy="most_frequent", missing_values=-1).fit(X)
    assert_array_equal(ours.transform(X), theirs.transform(X))
    assert ours.transform(X).dtype == X.dtype


# -- invariants -----------------------------------------------------------------


@given(
    cuts=st.lists(st.integers(1, 119), max_size=6, unique=True),
    strategy=st.sampled_from(["mean", "most_frequent", "median"]),
)
def test_statistics_do_not_depend_on_the_batches(cuts, strategy):
    X = numbers(n_rows=120, seed=5, rounded=strategy == "most_frequent")
    whole = StreamingImputer(strategy=strategy, random_state=0).fit(X)
    parts = StreamingImputer(strategy=strategy, random_state=0)
    bounds = [0, *sorted(cuts), len(X)]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        parts.partial_fit(X[start:stop])
    # rounding of a sum: relative to the size of the values, not of the mean
    scale = np.nanmax(np.abs(X), axis=0)
    assert_array_less_or_equal(
        np.abs(parts.statistics_ - whole.statistics_), 1e-14 * scale
    )


def assert_array_less_or_equal(a, b):
    assert np.all(a <= b), (a, b)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_merge_of_disjoint_parts_equals_one_stream(strategy):
    X = numbers(n_rows=200, rounded=strategy == "most_frequent")
    first = StreamingImputer(strategy=strategy, add_indicator=True).fit(X[:80])
    second = StreamingImputer(strategy=strategy, add_indicator=True).fit(X[80:])
    whole = StreamingImputer(strategy=strategy, add_indicator=True).fit(X)
    first.merge(second)
    assert_statistics_equal(first, whole, rtol=1e-14)
    assert_array_equal(first.indicator_features_, whole.indicator_features_)
    assert first.n_samples_seen_ == 200


def test_merge_refuses_other_parameters():
    X = numbers()
    with pytest.raises(ValueError, match="different parameters"):
        StreamingImputer().fit(X).merge(StreamingImputer(strategy="median").fit(X))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_checkpoint_round_trip_continues_the_stream(strategy):
    X = numbers(rounded=strategy == "most_frequent")
    ours = StreamingImputer(strategy=strategy, random_state=0).fit(X[:100])
    restored = pickle.loads(pickle.dumps(ours))
    ours.partial_fit(X[100:])
    restored.partial_fit(X[100:])
    assert_statistics_equal(restored, ours)
    assert_array_equal(restored.transform(X), ours.transform(X))


def test_checkpoint_of_strings():
    X = np.array([["a", None], ["b", "x"], ["a", "x"]], dtype=object)
    ours = StreamingImputer(strategy="most_frequent", missing_values=None).fit(X)
    restored = pickle.loads(pickle.dumps(ours))
    assert_array_equal(restored.statistics_, ["a", "x"])
    restored.partial_fit(np.array([["b", "y"], ["b", "y"]], dtype=object))
    assert_array_equal(restored.statistics_, ["b", "x"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dask_fit_equals_fit_in_memory(strategy):
    da = pytest.importorskip("dask.array")
    X = numbers(n_rows=400, rounded=strategy == "most_frequent")
    ours = StreamingImputer(strategy=strategy).fit(da.from_array(X, chunks=(90, 4)))
    theirs = SimpleImputer(strategy=strategy).fit(X)
    assert_statistics_equal(ours, theirs, rtol=1e-12)
    assert_allclose(
        ours.transform(da.from_array(X, chunks=(90, 4))).compute(),
        theirs.transform(X),
        rtol=1e-12,
    )


def test_dask_transform_that_changes_the_width_is_an_error():
    da = pytest.importorskip("dask.array")
    X = numbers()
    ours = StreamingImputer(add_indicator=True).fit(X)
    with pytest.raises(ValueError, match="keeps the number of columns"):
        ours.transform(da.from_array(X, chunks=(50, 4)))


# -- errors, and nothing changes when one is raised -----------------------------


@pytest.mark.parametrize(
    "params, batch, error, match",
    [
        ({}, np.array([["a", "b"]], dtype=object), ValueError, "Cannot use the mean"),
        ({"missing_values": -1.0}, np.array([[np.nan, 1.0]]), ValueError, "NaN"),
        ({}, np.array([[np.inf, 1.0]]), ValueError, "infinity"),
        (
            {"strategy": "most_frequent"},
            np.array([["a", {"b": 1}]], dtype=object),
            TypeError,
            "string or a number",
        ),
    ],
)
def test_bad_batch_is_refused_and_changes_nothing(params, batch, error, match):
    ours = StreamingImputer(**params)
    if params.get("strategy") == "most_frequent":
        ours.fit(np.array([["a", "b"]], dtype=object))
    else:
        ours.fit(np.array([[1.0, 2.0], [3.0, 4.0]]))
    before = copy.deepcopy(vars(ours))
    with pytest.raises(error, match=match):
        ours.partial_fit(batch)
    assert vars(ours).keys() == before.keys()
    assert_array_equal(ours.statistics_, before["statistics_"])
    assert ours.n_samples_seen_ == before["n_samples_seen_"]


def test_fill_value_of_another_kind_is_refused_before_fitting():
    ours = StreamingImputer(strategy="constant", fill_value="zero")
    with pytest.raises(ValueError, match="'zero'.*cannot be cast.*float64"):
        ours.partial_fit(np.array([[1.0, np.nan]]))
    with pytest.raises(NotFittedError):
        check_is_fitted(ours)


def test_changing_the_strategy_mid_stream_is_an_error():
    ours = StreamingImputer().fit(numbers())
    ours.set_params(strategy="median")
    with pytest.raises(ValueError, match="strategy changed from 'mean' to 'median'"):
        ours.partial_fit(numbers())


def test_strings_after_numbers_is_an_error():
    ours = StreamingImputer(strategy="most_frequent").fit(numbers(rounded=True))
    with pytest.raises(ValueError, match="same kind of values"):
        ours.partial_fit(np.array([["a", "b", "c", "d"]], dtype=object))


# -- in a streaming column transformer --------------------------------------------


def test_imputer_and_normalizer_in_a_column_transformer():
    X = numbers()
    ct = make_streaming_column_transformer(
        (make_streaming_pipeline(StreamingImputer(), BatchNormalizer()), [0, 1, 2]),
        remainder="passthrough",
    )
    imputer, norm = StreamingImputer(), BatchNormalizer()
    for start in range(0, len(X), 50):
        batch = X[start : start + 50]
        ct.partial_fit(batch)
        norm.partial_fit(imputer.partial_fit(batch[:, :3]).transform(batch[:, :3]))
    got = ct.transform(X)
    assert_allclose(got[:, :3], norm.transform(imputer.transform(X[:, :3])))
    assert_array_equal(got[:, 3], X[:, 3])
    assert not np.isnan(got[:, :3]).any()


def test_none_is_not_a_missing_value_unless_it_is_the_marker():
    X = np.array([["red"], [None], ["red"]], dtype=object)
    with pytest.raises(TypeError, match="missing_values=None"):
        StreamingImputer(strategy="most_frequent").fit(X)
    imputed = StreamingImputer(strategy="most_frequent", missing_values=None).fit(X)
    assert imputed.transform(X).tolist() == [["red"], ["red"], ["red"]]
