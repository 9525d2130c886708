"""The pure statistics math, against brute-force references."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from sknorm import _stats


def reference_moments(X, w=None):
    """Weighted mean and biased variance per column, ignoring NaN, in longdouble."""
    X = np.asarray(X, dtype=np.longdouble)
    w = np.ones(X.shape[0], dtype=np.longdouble) if w is None else np.asarray(w)
    present = ~np.isnan(X)
    W = (w[:, None] * present).sum(axis=0)
    Xz = np.where(present, X, 0)
    mean = (w[:, None] * Xz).sum(axis=0) / W
    var = (w[:, None] * np.where(present, (Xz - mean) ** 2, 0)).sum(axis=0) / W
    return W.astype(float), mean.astype(float), var.astype(float)


def random_data(rng, n, p, nan_fraction=0.0, offset=0.0):
    X = offset + rng.standard_normal((n, p)) * rng.uniform(0.1, 10, size=p)
    if nan_fraction:
        X[rng.random((n, p)) < nan_fraction] = np.nan
    return X


@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_moments_matches_reference(nan_fraction, weighted):
    rng = np.random.default_rng(0)
    X = random_data(rng, 200, 5, nan_fraction, offset=3.0)
    w = rng.uniform(0, 3, size=200) if weighted else None
    shift = np.full(5, 2.5)
    m, count = _stats.batch_moments(X, shift, w)
    W, mean, var = reference_moments(X, w)
    np.testing.assert_allclose(m.weight, W, rtol=1e-13)
    np.testing.assert_allclose(m.mean + shift, mean, rtol=1e-13)
    np.testing.assert_allclose(m.var, var, rtol=1e-12)
    np.testing.assert_array_equal(count, (~np.isnan(X)).sum(axis=0))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_batch_moments_matches_dense(fmt, weighted):
    rng = np.random.default_rng(1)
    X = sp.random(100, 6, density=0.3, format=fmt, random_state=1) * 5.0
    X = X.tolil()
    X[3, 2] = np.nan
    X = X.asformat(fmt)
    w = rng.uniform(0, 2, size=100) if weighted else None
    m, count = _stats.sparse_batch_moments(X, w)
    W, mean, var = reference_moments(X.toarray(), w)
    np.testing.assert_allclose(m.weight, W, rtol=1e-13)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(m.var, var, rtol=1e-12)
    assert count[2] == 99


@settings(max_examples=50, deadline=None)
@given(
    n_a=st.integers(0, 30),
    n_b=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_moments_equals_moments_of_union(n_a, n_b, seed):
    rng = np.random.default_rng(seed)
    A = random_data(rng, n_a, 3, offset=1e6)
    B = random_data(rng, n_b, 3, offset=1e6)
    shift = np.full(3, 1e6)
    ma, _ = _stats.batch_moments(A, shift)
    mb, _ = _stats.batch_moments(B, shift)
    merged = _stats.merge_moments(ma, mb)
    union, _ = _stats.batch_moments(np.vstack([A, B]), shift)
    np.testing.assert_allclose(merged.weight, union.weight)
    np.testing.assert_allclose(merged.mean, union.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.var, union.var, rtol=1e-12, atol=1e-12)


def test_rebase_keeps_statistics():
    rng = np.random.default_rng(2)
    X = random_data(rng, 50, 4, offset=100.0)
    m, _ = _stats.batch_moments(X, np.zeros(4))
    moved = _stats.rebase_moments(m, np.zeros(4), np.full(4, 100.0))
    np.testing.assert_allclose(moved.mean + 100.0, m.mean, rtol=1e-14)
    np.testing.assert_array_equal(moved.var, m.var)


def test_half_life_row_weights_halve_every_half_life():
    w = _stats.half_life_row_weights(11, 5.0)
    assert w[-1] == 1.0
    np.testing.assert_allclose(w[-6], 0.5)
    np.testing.assert_allclose(w[0], 0.25)


def test_anchor_is_first_present_value_and_constant_feature_is_exact():
    X = np.array([[np.nan, 0.1, 7.0], [2.0, 0.1, 8.0], [3.0, 0.1, np.nan]])
    state = _stats.update_exact(_stats.empty_stream_state(3), X)
    np.testing.assert_array_equal(state.shift, [2.0, 0.1, 7.0])
    # A constant feature's deviations from its anchor are exact zeros.
    assert state.moments.var[1] == 0.0
    assert _stats.state_mean_var(state)[1][1] == 0.0


def test_feature_without_data_has_nan_statistics():
    X = np.array([[np.nan, 1.0], [np.nan, 2.0]])
    state = _stats.update_exact(_stats.empty_stream_state(2), X)
    mean, var = _stats.state_mean_var(state)
    assert np.isnan(mean[0])
    assert np.isnan(var[0])
    # Later data for that feature starts it afresh.
    state = _stats.update_exact(state, np.array([[4.0, 3.0], [6.0, 4.0]]))
    mean, var = _stats.state_mean_var(state)
    np.testing.assert_allclose(mean, [5.0, 2.5])
    np.testing.assert_allclose(var, [1.0, 1.25])


@pytest.mark.parametrize("momentum", [0.1, 1.0])
def test_momentum_one_block_shortcut_equals_the_general_update(momentum):
    rng = np.random.default_rng(6)
    state = _stats.update_momentum(
        _stats.empty_ema_state(3), rng.normal(size=(5, 3)) + 1e6, momentum
    )
    X = rng.normal(size=(64, 3)) * 3 + 1e6
    short = _stats._update_momentum_one_block(state, X, momentum)
    # Unit weights take the general path, with the same arithmetic.
    general = _stats.update_momentum(state, X, momentum, np.ones(64))
    assert short is not None
    for a, b in zip(short, general, strict=True):
        np.testing.assert_array_equal(a, b)
    # Not taken when there is something the general update must handle.
    X[0, 0] = np.nan
    assert _stats._update_momentum_one_block(state, X, momentum) is None
    assert _stats._update_momentum_one_block(state, X[:1], momentum) is None
    fresh = _stats.empty_ema_state(3)
    assert _stats._update_momentum_one_block(fresh, X[1:], momentum) is None
