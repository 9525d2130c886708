"""BatchNormalizer's momentum and half-life modes, merge and clip."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sknorm import BatchNormalizer


def stream(est, batches, weights=None):
    for i, batch in enumerate(batches):
        est.partial_fit(batch, sample_weight=None if weights is None else weights[i])
    return est


def random_batches(seed, n_batches=8, p=3, sizes=(2, 40)):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((rng.integers(*sizes), p)) * [1.0, 10.0, 0.1] + [0, 5, -3]
        for _ in range(n_batches)
    ]


# -- momentum ------------------------------------------------------------------


def momentum_reference(batches, m, weights=None):
    """The update rule written out: first batch initializes, then blends."""
    mean = var = None
    for i, X in enumerate(batches):
        w = np.ones(len(X)) if weights is None else weights[i]
        W = w.sum()
        bm = (w[:, None] * X).sum(0) / W
        bv = (w[:, None] * (X - bm) ** 2).sum(0) / (W - 1)
        if mean is None:
            mean, var = bm, bv
        else:
            mean = (1 - m) * mean + m * bm
            var = (1 - m) * var + m * bv
    return mean, var


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("m", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_momentum_matches_the_update_rule(seed, m, weighted):
    batches = random_batches(seed)
    rng = np.random.default_rng(seed + 100)
    weights = [rng.uniform(0.5, 2, len(b)) for b in batches] if weighted else None
    est = stream(BatchNormalizer(momentum=m), batches, weights)
    mean, var = momentum_reference(batches, m, weights)
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(est.var_, var, rtol=1e-12)
    np.testing.assert_allclose(est.scale_, np.sqrt(var), rtol=1e-12)
    assert est.n_samples_seen_ == sum(len(b) for b in batches)


def pytorch_running_stats(batches, momentum):
    """torch.nn.BatchNorm1d's documented training-mode update, without torch."""
    mean = np.zeros(batches[0].shape[1])
    var = np.ones(batches[0].shape[1])
    for X in batches:
        mean = (1 - momentum) * mean + momentum * X.mean(0)
        var = (1 - momentum) * var + momentum * X.var(0, ddof=1)
    return mean, var


def primed_like_pytorch(n_features, momentum):
    """The documented recipe: start from PyTorch's mean 0 and variance 1."""
    est = BatchNormalizer(momentum=1.0)
    est.partial_fit(np.tile([[-1.0], [1.0]], n_features) / np.sqrt(2))
    return est.set_params(momentum=momentum)


@pytest.mark.parametrize("momentum", [0.1, 0.01])
def test_documented_pytorch_recipe_reproduces_its_running_stats(momentum):
    batches = random_batches(7, n_batches=12)
    est = stream(primed_like_pytorch(3, momentum), batches)
    mean, var = pytorch_running_stats(batches, momentum)
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(est.var_, var, rtol=1e-12)


def test_pytorch_running_stats_when_torch_is_installed():
    torch = pytest.importorskip("torch", reason="torch is an optional comparison")
    batches = random_batches(8, n_batches=10)
    bn = torch.nn.BatchNorm1d(3, momentum=0.1, dtype=torch.float64)
    bn.train()
    with torch.no_grad():
        for X in batches:
            bn(torch.from_numpy(X))
    est = stream(primed_like_pytorch(3, 0.1), batches)
    np.testing.assert_allclose(est.mean_, bn.running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(est.var_, bn.running_var.numpy(), rtol=1e-10)


def test_momentum_first_batch_has_no_warm_up_bias():
    X = np.random.default_rng(0).standard_normal((50, 2)) * 3 + 100
    est = BatchNormalizer(momentum=0.1).partial_fit(X)
    np.testing.assert_allclose(est.mean_, X.mean(0))
    np.testing.assert_allclose(est.var_, X.var(0, ddof=1))


def test_momentum_refuses_one_row_batches_and_keeps_state():
    est = BatchNormalizer(momentum=0.5).partial_fit(np.array([[0.0], [2.0]]))
    with pytest.raises(ValueError, match="at least 2 samples per batch, got 1"):
        est.partial_fit(np.array([[5.0]]))
    np.testing.assert_array_equal(est.mean_, [1.0])
    np.testing.assert_array_equal(est.var_, [2.0])


def test_momentum_feature_with_one_value_updates_its_mean_only():
    est = BatchNormalizer(momentum=0.5).partial_fit(np.array([[0.0], [2.0]]))
    est.partial_fit(np.array([[5.0], [np.nan]]))
    np.testing.assert_allclose(est.mean_, [3.0])
    np.testing.assert_allclose(est.var_, [2.0])  # unbiased variance undefined


# -- half-life -----------------------------------------------------------------


def half_life_reference(X, h, w=None):
    """Brute force: explicit weights 2**(-age / h), the last row of age 0."""
    age = np.arange(len(X))[::-1]
    weight = 2.0 ** (-age / h) * (1.0 if w is None else w)
    mean = (weight[:, None] * X).sum(0) / weight.sum()
    var = (weight[:, None] * (X - mean) ** 2).sum(0) / weight.sum()
    return mean, var, weight.sum()


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 149), max_size=15),
    h=st.floats(1.0, 500.0),
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
)
def test_half_life_is_partition_invariant_and_matches_brute_force(
    cuts, h, seed, weighted
):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((150, 3)) * [1, 10, 100] + [0, -20, 1e4]
    w = rng.uniform(0, 3, 150) if weighted else None
    bounds = [0, *sorted(set(cuts)), 150]
    est = BatchNormalizer(half_life=h)
    for a, b in itertools.pairwise(bounds):
        est.partial_fit(X[a:b], sample_weight=None if w is None else w[a:b])
    one_batch = BatchNormalizer(half_life=h).fit(X, sample_weight=w)
    mean, var, wsum = half_life_reference(X, h, w)
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-10)
    np.testing.assert_allclose(est.var_, var, rtol=1e-10)
    np.testing.assert_allclose(est.weight_sum_, wsum, rtol=1e-10)
    np.testing.assert_allclose(est.mean_, one_batch.mean_, rtol=1e-10)
    np.testing.assert_allclose(est.var_, one_batch.var_, rtol=1e-10)


def test_half_life_rows_one_at_a_time_equal_batches_of_seven():
    X = np.random.default_rng(1).standard_normal((100, 2))
    by_row = stream(BatchNormalizer(half_life=10.0), [r[None] for r in X])
    by_seven = stream(BatchNormalizer(half_life=10.0), np.array_split(X, 15))
    np.testing.assert_allclose(by_row.mean_, by_seven.mean_, rtol=1e-10)
    np.testing.assert_allclose(by_row.var_, by_seven.var_, rtol=1e-10)


def test_half_life_tracks_a_shift_within_ten_half_lives():
    rng = np.random.default_rng(2)
    h = 200.0
    old = rng.normal(0.0, 1.0, (5000, 1))
    new = rng.normal(50.0, 1.0, (int(10 * h), 1))
    est = stream(
        BatchNormalizer(half_life=h), np.array_split(np.vstack([old, new]), 70)
    )
    assert abs(est.mean_[0] - 50.0) < 0.01 * 50.0
    exact = stream(BatchNormalizer(), np.array_split(np.vstack([old, new]), 70))
    assert abs(exact.mean_[0] - 50.0) > 0.5 * 50.0  # the exact mode does not forget


def test_half_life_ages_rows_that_are_missing():
    X = np.array([[1.0, 1.0], [np.nan, 3.0], [5.0, 5.0]])
    est = BatchNormalizer(half_life=1.0).fit(X)
    # Feature 0: rows of age 2 and 0, weights 1/4 and 1.
    np.testing.assert_allclose(est.mean_[0], (0.25 * 1 + 1 * 5) / 1.25)


# -- merge ----------------------------------------------------------------------


def tree_merge(parts, order):
    """Merge a list of fitted normalizers pairwise in the order given."""
    parts = list(parts)
    for i in order:
        i = i % (len(parts) - 1)
        parts[i] = parts[i].merge(parts[i + 1])
        del parts[i + 1]
    return parts[0]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    order=st.lists(st.integers(0, 10), min_size=5, max_size=5),
    seed=st.integers(0, 2**32 - 1),
    nan=st.booleans(),
)
def test_exact_merge_in_any_tree_order_equals_one_fit(sizes, order, seed, nan):
    rng = np.random.default_rng(seed)
    X = 1e6 + rng.standard_normal((sum(sizes), 3)) * [1, 1e-3, 1e3]
    if nan:
        X[rng.random(X.shape) < 0.2] = np.nan
    shards = np.split(X, np.cumsum(sizes)[:-1])
    fitted = [BatchNormalizer().partial_fit(s) for s in shards]
    merged = tree_merge(fitted, order[: len(shards) - 1])
    ref = BatchNormalizer().fit(X)
    if np.isnan(ref.mean_).any():
        np.testing.assert_array_equal(np.isnan(merged.mean_), np.isnan(ref.mean_))
    ok = ~np.isnan(ref.mean_)
    np.testing.assert_allclose(merged.mean_[ok], ref.mean_[ok], rtol=1e-12)
    np.testing.assert_allclose(merged.var_[ok], ref.var_[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(merged.n_samples_seen_, ref.n_samples_seen_)


def test_half_life_ordered_merge_equals_the_stream():
    X = np.random.default_rng(3).standard_normal((120, 2)) + [3, -3]
    shards = np.array_split(X, 5)
    fitted = [BatchNormalizer(half_life=25.0).fit(s) for s in shards]
    # ((s0 s1) (s2 (s3 s4))): a tree that keeps the order.
    left = fitted[0].merge(fitted[1])
    right = fitted[2].merge(fitted[3].merge(fitted[4]))
    merged = left.merge(right)
    ref = BatchNormalizer(half_life=25.0).fit(X)
    np.testing.assert_allclose(merged.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(merged.var_, ref.var_, rtol=1e-12)
    np.testing.assert_allclose(merged.weight_sum_, ref.weight_sum_, rtol=1e-12)


def test_merge_returns_self_and_is_weighted():
    a = BatchNormalizer().fit(np.ones((3, 2)), sample_weight=[1, 2, 3])
    b = BatchNormalizer().fit(np.full((1, 2), 5.0), sample_weight=[6])
    assert a.merge(b) is a
    np.testing.assert_allclose(a.mean_, [(6 * 1 + 6 * 5) / 12] * 2)


@pytest.mark.parametrize(
    "other, match",
    [
        (BatchNormalizer().fit(np.ones((2, 3))), "2 features, other has 3"),
        (BatchNormalizer(eps=1.0).fit(np.ones((2, 2))), "different parameters"),
        (BatchNormalizer(half_life=5.0).fit(np.ones((2, 2))), "different parameters"),
    ],
)
def test_merge_mismatch_raises_and_keeps_state(other, match):
    est = BatchNormalizer().fit(np.arange(4.0).reshape(2, 2))
    before = (est.mean_.copy(), est.var_.copy())
    with pytest.raises(ValueError, match=match):
        est.merge(other)
    np.testing.assert_array_equal(est.mean_, before[0])
    np.testing.assert_array_equal(est.var_, before[1])


def test_merge_rejects_momentum_and_other_types():
    est = BatchNormalizer(momentum=0.1).fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="not defined for the momentum mode"):
        est.merge(BatchNormalizer(momentum=0.1).fit(np.ones((2, 2))))
    with pytest.raises(TypeError, match="fitted BatchNormalizer"):
        BatchNormalizer().fit(np.ones((2, 2))).merge("not an estimator")


def test_merge_rejects_different_feature_names():
    pd = pytest.importorskip("pandas")
    a = BatchNormalizer().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    b = BatchNormalizer().fit(pd.DataFrame({"a": [1.0, 2.0], "c": [3.0, 4.0]}))
    with pytest.raises(ValueError, match="different feature names"):
        a.merge(b)


# -- mode parameters and clip ------------------------------------------------------


def test_momentum_and_half_life_together_is_an_error_at_fit():
    est = BatchNormalizer(momentum=0.1, half_life=10.0)
    with pytest.raises(ValueError, match="at most one of them"):
        est.fit(np.ones((2, 2)))
    assert not hasattr(est, "mean_")


def test_changing_mode_mid_stream_is_an_error():
    est = BatchNormalizer().partial_fit(np.ones((2, 2)))
    est.set_params(momentum=0.1)
    with pytest.raises(ValueError, match="mode changed"):
        est.partial_fit(np.ones((2, 2)))


@pytest.mark.parametrize("params", [{}, {"momentum": 0.2}, {"half_life": 30.0}])
def test_clip_bounds_the_output(params):
    X = np.random.default_rng(4).standard_normal((200, 2))
    X[0] = [100.0, -100.0]
    est = BatchNormalizer(clip=3.0, **params).fit(X)
    Xt = est.transform(X)
    assert Xt.max() == 3.0 and Xt.min() == -3.0
    unclipped = BatchNormalizer(**params).fit(X).transform(X)
    np.testing.assert_allclose(Xt, np.clip(unclipped, -3, 3))
    # Clipped values do not round-trip, the others do.
    back = est.inverse_transform(Xt)
    np.testing.assert_allclose(back[1:], X[1:], rtol=1e-12, atol=1e-12)
    assert back[0, 0] < 100.0
