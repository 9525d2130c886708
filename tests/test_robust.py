"""Tests of RobustNormalizer against RobustScaler and NumPy references."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.preprocessing import RobustScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sknorm import RobustNormalizer
from sknorm._kll import rank_error_bound

ESTIMATORS = [
    RobustNormalizer(),
    RobustNormalizer(with_centering=False),
    RobustNormalizer(with_scaling=False),
    RobustNormalizer(quantile_range=(10.0, 90.0), unit_variance=True),
    # A small sketch, so that the checks' data (up to a few hundred rows)
    # also go through compactions.
    RobustNormalizer(sketch_size=8, random_state=0),
]


# No expected failures: with sketch_size=8 the checks' data are compacted too,
# and every check (fit idempotence, subset and order invariance included)
# still passes, since the compaction coins depend only on random_state.
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def stream(norm, X, batch):
    for start in range(0, X.shape[0], batch):
        norm.partial_fit(X[start : start + batch])
    return norm


def rank_interval(column_sorted, value):
    n = column_sorted.shape[0]
    return (
        np.searchsorted(column_sorted, value, side="left") / n,
        np.searchsorted(column_sorted, value, side="right") / n,
    )


def quantile_at(column_sorted, q):
    """The value at rank q (clipped to [0, 1]) of a sorted column."""
    n = column_sorted.shape[0]
    return column_sorted[int(np.clip(round(q * (n - 1)), 0, n - 1))]


# -- exact regime -------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 37, 500])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"quantile_range": (5.0, 95.0)},
        {"quantile_range": (10.0, 90.0), "unit_variance": True},
        {"with_centering": False},
        {"with_scaling": False},
        {"quantile_range": (0.0, 100.0)},
    ],
)
def test_equals_robust_scaler_while_the_stream_fits(params, batch):
    rng = np.random.default_rng(0)
    X = rng.standard_cauchy((500, 4)) * [1, 1e5, 1e-5, 1]
    X[:, 3] = np.round(X[:, 3])  # ties
    X[rng.random(X.shape) < 0.1] = np.nan
    norm = stream(RobustNormalizer(**params), X, batch)
    ref = RobustScaler(**params).fit(X)
    for name in ("center_", "scale_"):
        ours, theirs = getattr(norm, name), getattr(ref, name)
        if theirs is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    X_new = rng.standard_normal((50, 4))
    X_new[0, 1] = np.nan
    # center_ agrees to 1e-12 relative, so outputs agree to that times the
    # center in units of the scale (the cancellation of x - center).
    center = 0.0 if ref.center_ is None else np.abs(ref.center_)
    scale = 1.0 if ref.scale_ is None else ref.scale_
    np.testing.assert_allclose(
        norm.transform(X_new),
        ref.transform(X_new),
        rtol=1e-12,
        atol=1e-12 * np.max(center / scale),
        equal_nan=True,
    )
    np.testing.assert_allclose(
        norm.inverse_transform(norm.transform(X_new)),
        X_new,
        rtol=1e-12,
        atol=1e-12 * np.max(center + scale),
    )
    np.testing.assert_array_equal(norm.n_samples_seen_, (~np.isnan(X)).sum(axis=0))


def test_fit_forgets_earlier_data():
    rng = np.random.default_rng(1)
    norm = RobustNormalizer().fit(rng.normal(100, 1, (50, 2)))
    X = rng.standard_normal((40, 2))
    norm.fit(X)
    np.testing.assert_allclose(norm.center_, np.median(X, axis=0), rtol=1e-12)
    assert norm.n_samples_seen_ == 40


def test_constant_and_missing_features():
    X = np.array([[1.0, np.nan, 5.0], [1.0, np.nan, 7.0], [1.0, np.nan, np.nan]])
    norm = RobustNormalizer().fit(X)
    # Constant: scale 1 as RobustScaler; all-missing: NaN, not a made-up number.
    assert norm.scale_[0] == 1.0
    assert np.isnan(norm.center_[1]) and np.isnan(norm.scale_[1])
    np.testing.assert_array_equal(norm.n_samples_seen_, [3, 0, 2])
    out = norm.transform([[2.0, 3.0, np.nan]])
    assert out[0, 0] == 1.0 and np.isnan(out[0, 1]) and np.isnan(out[0, 2])


def test_float32_in_float32_out():
    rng = np.random.default_rng(2)
    X = (1e4 + rng.standard_normal((300, 3))).astype(np.float32)
    norm = RobustNormalizer().fit(X)
    out = norm.transform(X)
    assert out.dtype == np.float32
    expected = (X.astype(np.float64) - norm.center_) / norm.scale_
    np.testing.assert_allclose(out, expected, atol=1e-5)
    back = norm.inverse_transform(out)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, X, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plain_arrays_and_lists_give_the_same_results(dtype):
    # A fitted normalizer takes plain ndarrays past validate_data: the result
    # must not depend on that, whatever the memory layout.
    rng = np.random.default_rng(12)
    X = rng.standard_normal((3000, 3)).astype(dtype)
    X[rng.random(X.shape) < 0.05] = np.nan
    plain = RobustNormalizer(sketch_size=64, random_state=0).fit(X[:1000])
    listed = RobustNormalizer(sketch_size=64, random_state=0).fit(X[:1000])
    plain.partial_fit(np.asfortranarray(X[1000:2000]))
    plain.partial_fit(X[2000:][::-1][::-1])
    listed.partial_fit(X[1000:2000].tolist())
    listed.partial_fit(X[2000:].tolist())
    np.testing.assert_array_equal(plain.center_, listed.center_)
    np.testing.assert_array_equal(plain.scale_, listed.scale_)
    out = plain.transform(np.asfortranarray(X[:10]))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, listed.transform(X[:10].tolist()), rtol=1e-6)
    read_only = X[:10].copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(
        plain.transform(read_only, copy=False), plain.transform(X[:10])
    )
    with pytest.raises(ValueError, match="infinity"):
        plain.transform(np.full((2, 3), np.inf, dtype=dtype))


def test_copy_false_works_in_place():
    X = np.random.default_rng(3).standard_normal((20, 2))
    norm = RobustNormalizer(copy=False).fit(X)
    out = norm.transform(X)
    assert out is X or np.shares_memory(out, X)


# -- accuracy on long streams -------------------------------------------------


@pytest.fixture(scope="module")
def million_rows():
    rng = np.random.default_rng(42)
    n = 1_000_000
    X = np.column_stack(
        [
            rng.standard_cauchy(n),
            np.sort(rng.standard_normal(n))[::-1],
            np.where(rng.random(n) < 0.99, rng.normal(0, 1, n), rng.normal(1e4, 1, n)),
        ]
    )
    return X, np.sort(X, axis=0)


def test_million_rows_close_to_robust_scaler_in_rank(million_rows):
    X, X_sorted = million_rows
    norm = stream(RobustNormalizer(random_state=0), X, 20_000)
    ref = RobustScaler().fit(X)
    eps = rank_error_bound(512, 0.01)
    assert norm.n_samples_seen_ == X.shape[0]
    for j in range(X.shape[1]):
        col = X_sorted[:, j]
        # The medians, compared by their ranks in the data.
        ours, theirs = (
            rank_interval(col, norm.center_[j]),
            rank_interval(col, ref.center_[j]),
        )
        assert theirs[0] <= 0.5 <= theirs[1]
        assert ours[0] - eps <= 0.5 <= ours[1] + eps
        # The quantile ranges: both between those of ranks moved by eps.
        narrowest = quantile_at(col, 0.75 - eps) - quantile_at(col, 0.25 + eps)
        widest = quantile_at(col, 0.75 + eps) - quantile_at(col, 0.25 - eps)
        assert narrowest <= ref.scale_[j] <= widest
        assert narrowest <= norm.scale_[j] <= widest


def test_merge_of_parts_in_a_tree(million_rows):
    X, X_sorted = million_rows
    parts = [
        stream(RobustNormalizer(random_state=i), part, 25_000)
        for i, part in enumerate(np.array_split(X, 8))
    ]
    while len(parts) > 1:
        parts = [a.merge(b) for a, b in zip(parts[::2], parts[1::2], strict=True)]
    merged = parts[0]
    eps = rank_error_bound(512, 0.01)
    assert merged.n_samples_seen_ == X.shape[0]
    for j in range(X.shape[1]):
        low, high = rank_interval(X_sorted[:, j], merged.center_[j])
        assert low - eps <= 0.5 <= high + eps


def test_merge_of_small_parts_is_exact():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    a = RobustNormalizer(random_state=1).fit(X[:100])
    b = RobustNormalizer(random_state=2).partial_fit(X[100:250])
    b.partial_fit(X[250:])
    assert a.merge(b) is a
    ref = RobustScaler().fit(X)
    np.testing.assert_allclose(a.center_, ref.center_, rtol=1e-12)
    np.testing.assert_allclose(a.scale_, ref.scale_, rtol=1e-12)
    np.testing.assert_array_equal(a.n_samples_seen_, (~np.isnan(X)).sum(axis=0))


def test_robust_to_gross_outliers_where_the_mean_is_not():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200_000, 1))
    X[rng.random(200_000) < 0.01] = 1e6
    norm = stream(RobustNormalizer(random_state=0), X, 4096)
    assert abs(norm.center_[0]) < 0.05
    assert 1.3 < norm.scale_[0] < 1.45  # IQR of N(0, 1) is 1.349
    assert X.mean() > 1e3


def test_deterministic_given_random_state():
    X = np.random.default_rng(6).standard_normal((20_000, 2))
    a = stream(RobustNormalizer(sketch_size=16, random_state=3), X, 1000)
    b = stream(RobustNormalizer(sketch_size=16, random_state=3), X, 1000)
    c = stream(RobustNormalizer(sketch_size=16, random_state=4), X, 1000)
    np.testing.assert_array_equal(a.center_, b.center_)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    assert not np.array_equal(np.r_[a.center_, a.scale_], np.r_[c.center_, c.scale_])


def test_pickle_round_trip_keeps_streaming_identically():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6000, 2))
    a = stream(RobustNormalizer(sketch_size=16, random_state=0), X[:3000], 500)
    b = pickle.loads(pickle.dumps(a))
    stream(a, X[3000:], 500)
    stream(b, X[3000:], 500)
    np.testing.assert_array_equal(a.center_, b.center_)
    np.testing.assert_array_equal(a.scale_, b.scale_)


def test_statistics_are_those_of_fit_time_parameters():
    X = np.random.default_rng(8).standard_normal((100, 2))
    norm = RobustNormalizer().fit(X)
    scale = norm.scale_.copy()
    norm.set_params(quantile_range=(5.0, 95.0))
    np.testing.assert_array_equal(norm.scale_, scale)
    norm.partial_fit(X[:1])
    assert np.all(norm.scale_ > scale)


# -- errors -------------------------------------------------------------------


def fitted_state(norm):
    return (
        norm.n_samples_seen_,
        norm.n_features_in_,
        norm.center_.copy(),
        norm.scale_.copy(),
    )


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.full((2, 3), np.inf), ValueError, "infinity in feature"),
        (
            np.array([[1.0, np.nan, -np.inf]]),
            ValueError,
            r"infinity in feature\(s\) 2\.",
        ),
        (
            np.array([[np.inf, np.nan, 1.0], [2.0, 3.0, np.nan]]),
            ValueError,
            r"\(s\) 0\.",
        ),
        (np.ones((2, 4)), ValueError, "3 features"),
        (np.ones((0, 3)), ValueError, "0 sample"),
        (np.array([["a", "b", "c"]]), ValueError, "could not convert|dtype"),
    ],
)
def test_failed_partial_fit_leaves_the_state_unchanged(X, error, match):
    norm = RobustNormalizer().fit(np.arange(12.0).reshape(4, 3))
    before = fitted_state(norm)
    sketch = norm._state
    with pytest.raises(error, match=match):
        norm.partial_fit(X)
    after = fitted_state(norm)
    assert before[:2] == after[:2]
    np.testing.assert_array_equal(before[2], after[2])
    np.testing.assert_array_equal(before[3], after[3])
    assert norm._state is sketch


@pytest.mark.parametrize(
    "params, match",
    [
        ({"quantile_range": (80.0, 20.0)}, r"0 <= q_min <= q_max <= 100"),
        ({"quantile_range": (-1.0, 50.0)}, r"0 <= q_min <= q_max <= 100"),
        ({"quantile_range": ("a", 50.0)}, "pair of numbers"),
        ({"quantile_range": (1.0, 2.0, 3.0)}, "pair of numbers"),
        ({"quantile_range": (0.0, 75.0), "unit_variance": True}, "0 < q_min"),
        ({"sketch_size": 4}, "sketch_size"),
        ({"quantile_range": [25, 75]}, "quantile_range"),
    ],
)
def test_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        RobustNormalizer(**params).fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match=match):
        RobustNormalizer(**params).partial_fit(np.ones((3, 2)))


def test_changing_the_sketch_size_mid_stream_is_refused():
    norm = RobustNormalizer().partial_fit(np.ones((3, 2)))
    norm.set_params(sketch_size=64)
    with pytest.raises(ValueError, match="sketch_size changed from 512 to 64"):
        norm.partial_fit(np.ones((3, 2)))
    assert norm.n_samples_seen_ == 3


def test_merge_errors():
    X = np.random.default_rng(9).standard_normal((10, 2))
    norm = RobustNormalizer().fit(X)
    with pytest.raises(TypeError, match="expects a fitted RobustNormalizer"):
        norm.merge(RobustScaler().fit(X))
    with pytest.raises(ValueError, match="different parameters"):
        norm.merge(RobustNormalizer(with_centering=False).fit(X))
    with pytest.raises(ValueError, match="2 features, other has 3"):
        norm.merge(RobustNormalizer().fit(np.ones((3, 3))))
    with pytest.raises(ValueError, match="feature names"):
        pd = pytest.importorskip("pandas")
        norm.merge(RobustNormalizer().fit(pd.DataFrame(X, columns=["a", "b"])))
    assert norm.n_samples_seen_ == 10


def test_merge_accepts_other_seed_and_copy():
    X = np.random.default_rng(10).standard_normal((10, 2))
    a = RobustNormalizer(random_state=0).fit(X)
    a.merge(RobustNormalizer(random_state=1, copy=False).fit(X))
    assert a.n_samples_seen_ == 20


# -- integration --------------------------------------------------------------


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 40.0]})
    norm = RobustNormalizer().set_output(transform="pandas").fit(df)
    out = norm.transform(df)
    assert list(out.columns) == ["a", "b"]
    assert list(norm.get_feature_names_out()) == ["a", "b"]
    np.testing.assert_allclose(out.to_numpy(), RobustScaler().fit_transform(df))


def test_clone_is_unfitted():
    norm = RobustNormalizer(sketch_size=64).fit(np.ones((3, 2)))
    fresh = clone(norm)
    assert fresh.sketch_size == 64
    assert not hasattr(fresh, "center_")


def test_learns_in_a_streaming_pipeline():
    from sklearn.linear_model import SGDClassifier

    from sknorm import make_streaming_pipeline

    rng = np.random.default_rng(11)
    n = 6000
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 3)) + y[:, None] * [2.0, 0.0, 0.0]
    X[:, 0] = X[:, 0] * 1e4 + 5e5  # a feature with large values
    model = make_streaming_pipeline(
        RobustNormalizer(random_state=0), SGDClassifier(random_state=0)
    )
    for start in range(0, 5000, 500):
        model.partial_fit(
            X[start : start + 500], y[start : start + 500], classes=[0, 1]
        )
    accuracy = model.score(X[5000:], y[5000:])
    assert accuracy > 0.75  # Bayes accuracy is 0.84
    assert model[0].n_samples_seen_ == 5000


def test_reads_after_every_batch_reuse_sorted_levels_and_are_not_pickled():
    # What a streaming pipeline does: learn a batch, then transform it.
    rng = np.random.default_rng(9)
    X = rng.standard_t(2, size=(4000, 3))
    streamed = RobustNormalizer(sketch_size=16, random_state=0)
    for start in range(0, 4000, 200):
        streamed.partial_fit(X[start : start + 200])
        out = streamed.transform(X[start : start + 200])
    cache = streamed._statistics_cache["sorted_levels"]
    assert [entry[0] for entry in cache["sorted_levels"]] == list(
        streamed._state.levels
    )
    # A copy without the kept sorted levels reads the same statistics.
    restored = pickle.loads(pickle.dumps(streamed))
    assert "sorted_levels" not in restored._statistics_cache
    np.testing.assert_array_equal(restored.center_, streamed.center_)
    np.testing.assert_array_equal(restored.scale_, streamed.scale_)
    np.testing.assert_array_equal(restored.transform(X[-200:]), out)
    assert len(pickle.dumps(streamed)) == len(pickle.dumps(restored))
