"""Edge values: each test states the behaviour a long-running stream can rely on."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer, _stats


def stream(est, batches):
    for batch in batches:
        est.partial_fit(batch)
    return est


@pytest.mark.parametrize("magnitude", [1e150, -1e150, 1e100])
def test_huge_values_stay_finite_and_exact(magnitude):
    # Spread of 1e-3 relative: a variance up to 1e294, still representable.
    rng = np.random.default_rng(0)
    X = magnitude * (1.0 + 1e-3 * rng.standard_normal((200, 2)))
    est = stream(BatchNormalizer(), np.array_split(X, 9))
    Xl = X.astype(np.longdouble)
    assert np.all(np.isfinite(est.mean_)) and np.all(np.isfinite(est.scale_))
    np.testing.assert_allclose(est.mean_, Xl.mean(0).astype(float), rtol=1e-12)
    np.testing.assert_allclose(
        est.var_, ((Xl - Xl.mean(0)) ** 2).mean(0).astype(float), rtol=1e-10
    )
    Xt = est.transform(X)
    assert np.all(np.isfinite(Xt))
    np.testing.assert_allclose(Xt.std(0), 1.0, rtol=1e-9)


def test_values_near_float64_max_do_not_overflow():
    # Near the maximum only (nearly) constant features have a representable
    # variance; their statistics are exact because they are anchored.
    big = np.finfo(np.float64).max
    X = np.column_stack([np.full(10, big), np.full(10, -big / 3), np.arange(10.0)])
    est = stream(BatchNormalizer(), np.array_split(X, 3))
    np.testing.assert_array_equal(est.mean_[:2], [big, -big / 3])
    np.testing.assert_array_equal(est.var_[:2], 0.0)
    np.testing.assert_array_equal(est.scale_[:2], 1.0)
    np.testing.assert_array_equal(est.transform(X)[:, :2], 0.0)


def test_spread_whose_variance_overflows_is_an_error_and_loses_nothing():
    est = BatchNormalizer().partial_fit(np.array([[1.0], [2.0]]))
    before = (est.mean_.copy(), est.var_.copy(), est.n_samples_seen_)
    with pytest.raises(ValueError, match="overflow"):
        est.partial_fit(np.array([[1e200], [-1e200]]))
    np.testing.assert_array_equal(est.mean_, before[0])
    np.testing.assert_array_equal(est.var_, before[1])
    assert est.n_samples_seen_ == before[2]


def test_tiny_variance_is_kept():
    rng = np.random.default_rng(1)
    X = 1e-150 * rng.standard_normal((500, 2))
    est = stream(BatchNormalizer(), np.array_split(X, 7))
    np.testing.assert_allclose(est.var_, X.var(0), rtol=1e-12)
    assert 1e-302 < est.var_.min() < 1e-298
    np.testing.assert_allclose(est.transform(X).std(0), 1.0, rtol=1e-10)


def test_constant_features_get_scale_one_in_every_mode():
    X = np.column_stack([np.full(30, 3.3), np.full(30, -1e300), np.zeros(30)])
    for params in ({}, {"momentum": 0.1}, {"half_life": 5.0}):
        est = stream(BatchNormalizer(**params), np.array_split(X, 4))
        np.testing.assert_array_equal(est.var_, 0.0)
        np.testing.assert_array_equal(est.scale_, 1.0)
        np.testing.assert_array_equal(est.mean_, X[0])
        np.testing.assert_array_equal(est.transform(X), 0.0)


def test_all_nan_column_in_one_batch_leaves_that_feature_unchanged():
    est = BatchNormalizer().partial_fit(np.array([[1.0, 2.0], [3.0, 6.0]]))
    mean0, var0 = est.mean_[0], est.var_[0]
    est.partial_fit(np.array([[np.nan, 4.0], [np.nan, 5.0]]))
    assert est.mean_[0] == mean0 and est.var_[0] == var0
    np.testing.assert_array_equal(est.n_samples_seen_, [2, 4])


def test_all_nan_column_for_the_whole_stream_is_nan():
    # No data, no statistics: the output for that feature is NaN, not made up.
    X = np.array([[np.nan, 1.0], [np.nan, 2.0], [np.nan, 4.0], [np.nan, 3.0]])
    for params in ({}, {"momentum": 0.1}, {"half_life": 5.0}):
        est = stream(BatchNormalizer(**params), [X[:2], X[2:]])
        assert np.isnan(est.mean_[0]) and np.isnan(est.var_[0])
        assert np.isnan(est.scale_[0])
        assert np.isnan(est.transform([[7.0, 1.0]])[0, 0])
        assert not np.isnan(est.transform([[7.0, 1.0]])[0, 1])


def test_mixed_float32_and_float64_batches():
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((10, 3)) for _ in range(6)]
    mixed = [b.astype(np.float32) if i % 2 else b for i, b in enumerate(batches)]
    est = stream(BatchNormalizer(), mixed)
    # float32 batches count with exactly their float32 values.
    ref = StandardScaler().fit(np.vstack([b.astype(np.float64) for b in mixed]))
    np.testing.assert_allclose(est.mean_, ref.mean_, rtol=1e-13)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-13)
    assert est.transform(mixed[1]).dtype == np.float32
    assert est.transform(mixed[0]).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, bool])
def test_integer_and_boolean_input_is_numeric(dtype):
    X = (np.arange(24).reshape(8, 3) % 5).astype(dtype)
    est = BatchNormalizer().fit(X)
    ref = BatchNormalizer().fit(X.astype(np.float64))
    np.testing.assert_array_equal(est.mean_, ref.mean_)
    np.testing.assert_array_equal(est.var_, ref.var_)
    assert est.transform(X).dtype == np.float64


def test_large_weights_push_the_weight_past_int32():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((100, 2))
    w = np.full(100, 1e9)
    est = BatchNormalizer().fit(X, sample_weight=w)
    assert est.weight_sum_[0] == pytest.approx(1e11)
    np.testing.assert_allclose(est.var_, X.var(0), rtol=1e-12)


def test_very_long_stream_counts_beyond_int32():
    # A synthetic state: 2**40 samples of mean 1 and variance 4 already seen.
    big = 2**40
    state = _stats.StreamState(
        shift=np.zeros(1),
        moments=_stats.Moments(np.array([float(big)]), np.ones(1), np.array([4.0])),
        count=np.array([big], dtype=np.int64),
        n_rows=big,
    )
    est = BatchNormalizer().partial_fit(np.array([[1.0]]))
    est._publish(state)
    est.partial_fit(np.array([[1.0], [1.0]]))
    assert est.n_samples_seen_ == big + 2
    assert isinstance(est.n_samples_seen_, int)
    np.testing.assert_allclose(est.mean_, [1.0])
    np.testing.assert_allclose(est.var_, [4.0 * big / (big + 2)], rtol=1e-15)


def test_half_life_survives_underflow_of_old_weights():
    # After 5000 half-lives the old weights underflow to 0: only new data counts.
    old = np.full((10, 1), -1e6)
    new = np.random.default_rng(4).standard_normal((5000, 1)) + 3.0
    est = stream(BatchNormalizer(half_life=1.0), [old, new])
    assert np.isfinite(est.mean_[0]) and abs(est.mean_[0] - new[-1, 0]) < 10
    est_big = stream(BatchNormalizer(half_life=1000.0), [old, new])
    assert np.all(np.isfinite(est_big.var_))
