"""Tests of the per-feature quantile sketches in sknorm._kll.

Every accuracy test measures the *true* rank of the value the sketch returns
in the full data (sorted with NumPy), so it does not depend on how the sketch
interpolates; ties count as the whole interval of ranks they occupy.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sknorm import _kll

QUANTILES = np.array([0.25, 0.5, 0.75])
K = 512  # the default sketch size of RobustNormalizer
N_ROWS = 1_000_000


def sketch_of(X, batch, k=K, seed=0):
    sketch = _kll.empty_sketch(X.shape[1], k, seed)
    for start in range(0, X.shape[0], batch):
        sketch = _kll.update_sketch(sketch, X[start : start + batch])
    return sketch


def rank_errors(X_sorted, values, q):
    """Normalized distance from q to the interval of true ranks of each value.

    X_sorted : (n, n_features) sorted along axis 0, without NaN.
    values : (n_features,) values returned for quantile q.
    """
    n = X_sorted.shape[0]
    errors = []
    for j, value in enumerate(values):
        below = np.searchsorted(X_sorted[:, j], value, side="left") / n
        at_or_below = np.searchsorted(X_sorted[:, j], value, side="right") / n
        errors.append(max(below - q, q - at_or_below, 0.0))
    return np.array(errors)


def million_row_streams():
    """Columns of hard streams of 10**6 rows, and their names."""
    rng = np.random.default_rng(42)
    n = N_ROWS
    normal = rng.standard_normal(n)
    mixture = np.where(rng.random(n) < 0.7, rng.normal(0, 1, n), rng.normal(50, 10, n))
    columns = {
        "normal": normal,
        "cauchy": rng.standard_cauchy(n),
        "mixture": mixture,
        "sorted": np.sort(rng.standard_normal(n)),
        "reverse-sorted": np.sort(rng.standard_normal(n))[::-1],
        "duplicates": rng.integers(0, 7, n).astype(np.float64),
        "sorted duplicates": np.sort(rng.integers(0, 1000, n)).astype(np.float64),
    }
    return np.column_stack(list(columns.values())), list(columns)


@pytest.fixture(scope="module")
def streams():
    X, names = million_row_streams()
    return X, np.sort(X, axis=0), names


def test_rank_error_bound_formula():
    # 2 exp(-eps^2 k^2 / 4) = delta at the bound.
    eps = _kll.rank_error_bound(K, 0.01)
    assert 2 * np.exp(-(eps**2) * K**2 / 4) == pytest.approx(0.01)
    assert eps <= 0.01  # the documented aim for the default sketch size


@pytest.mark.parametrize("batch", [50_000, 4096])
def test_million_rows_within_bound(streams, batch):
    X, X_sorted, names = streams
    if batch < 50_000:
        X, X_sorted = X[:, [0, 3, 5]], X_sorted[:, [0, 3, 5]]
        names = [names[i] for i in (0, 3, 5)]
    sketch = sketch_of(X, batch)
    bound = _kll.rank_error_bound(K, 0.01)
    estimates = _kll.sketch_quantiles(sketch, QUANTILES)
    for q, values in zip(QUANTILES, estimates, strict=True):
        errors = rank_errors(X_sorted, values, q)
        assert errors.max() <= bound, dict(zip(names, errors, strict=True))
    np.testing.assert_array_equal(_kll.sketch_counts(sketch), N_ROWS)
    # Memory: at most k items per level, at most log2(n / k) + 2 levels.
    assert sketch.counts.max() <= K
    assert len(sketch.levels) <= np.log2(N_ROWS / K) + 2


def test_memory_does_not_grow_with_stream_length():
    rng = np.random.default_rng(3)
    sketch = _kll.empty_sketch(2, 64, seed=3)
    retained = []
    for _ in range(200):
        sketch = _kll.update_sketch(sketch, rng.standard_normal((1000, 2)))
        retained.append(_kll.retained_items(sketch).max())
    n = 200 * 1000
    assert max(retained) <= 64 * (np.log2(n / 64) + 2)
    assert sketch.counts.max() <= 64


@pytest.mark.parametrize("order", ["left", "right", "balanced", "shuffled"])
def test_merge_in_any_tree_order_keeps_the_bound(streams, order):
    X, X_sorted, names = streams
    parts = np.array_split(X[:, :4], 16)
    X_sorted = X_sorted[:, :4]
    sketches = [sketch_of(part, 20_000, seed=i) for i, part in enumerate(parts)]
    if order == "left":
        merged = sketches[0]
        for other in sketches[1:]:
            merged = _kll.merge_sketches(merged, other)
    elif order == "right":
        merged = sketches[-1]
        for other in sketches[-2::-1]:
            merged = _kll.merge_sketches(other, merged)
    elif order == "balanced":
        while len(sketches) > 1:
            sketches = [
                _kll.merge_sketches(a, b)
                for a, b in zip(sketches[::2], sketches[1::2], strict=True)
            ]
        merged = sketches[0]
    else:
        rng = np.random.default_rng(7)
        while len(sketches) > 1:
            i, j = rng.choice(len(sketches), size=2, replace=False)
            a, b = sketches[i], sketches[j]
            sketches = [s for t, s in enumerate(sketches) if t not in (i, j)]
            sketches.append(_kll.merge_sketches(a, b))
        merged = sketches[0]
    np.testing.assert_array_equal(_kll.sketch_counts(merged), N_ROWS)
    assert merged.counts.max() <= K
    bound = _kll.rank_error_bound(K, 0.01)
    for q, values in zip(
        QUANTILES, _kll.sketch_quantiles(merged, QUANTILES), strict=True
    ):
        assert rank_errors(X_sorted, values, q).max() <= bound


def test_rank_estimates_are_unbiased_with_the_stated_spread():
    # Many independent small sketches: the mean signed rank error must be ~0
    # (a fixed coin would bias it by ~log2(n/k)/k) and its mean square below
    # the analysis' 2 / k**2. Features of one sketch share their coins, so
    # every sample is a sketch of its own.
    k, n, n_sketches = 16, 4096, 300
    rng = np.random.default_rng(11)
    X = rng.standard_normal((n, n_sketches))
    x = np.median(X, axis=0)
    true_rank = (X <= x).sum(axis=0)
    estimated = [
        _kll.sketch_ranks(sketch_of(X[:, [j]], 512, k=k, seed=j), x[[j]])[0]
        for j in range(n_sketches)
    ]
    error = (np.array(estimated) - true_rank) / n
    rms = np.sqrt(np.mean(error**2))
    assert rms <= np.sqrt(2) / k
    assert rms > 0  # it did compact
    assert abs(error.mean()) <= 4 * rms / np.sqrt(n_sketches)


def test_fixed_coin_would_be_detected(monkeypatch):
    # The unbiasedness test above can fail: with every coin on "keep the
    # first of each pair", the ranks drift upward.
    k, n = 16, 8192
    X = np.random.default_rng(0).standard_normal((n, 1))

    monkeypatch.setattr(_kll._Coins, "flip", lambda coins: 0)
    biased = sketch_of(X, 256, k=k)
    x = np.median(X, axis=0)
    biased_error = (_kll.sketch_ranks(biased, x) - n // 2) / n
    assert biased_error[0] > np.sqrt(2) / k


@pytest.mark.parametrize("batches", [[500], [1] * 7 + [493], [100, 0, 250, 150]])
def test_exact_while_the_stream_fits(batches):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((sum(batches), 4)) * [1, 1e6, 1e-6, 1]
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 3] = np.round(X[:, 3])  # ties
    sketch = _kll.empty_sketch(4, K, 0)
    start = 0
    for size in batches:
        sketch = _kll.update_sketch(sketch, X[start : start + size])
        start += size
    q = np.array([0.0, 0.01, 0.25, 0.5, 0.6180339, 0.75, 0.99, 1.0])
    np.testing.assert_allclose(
        _kll.sketch_quantiles(sketch, q), np.nanquantile(X, q, axis=0), rtol=1e-15
    )
    np.testing.assert_array_equal(
        _kll.sketch_counts(sketch), (~np.isnan(X)).sum(axis=0)
    )


@settings(max_examples=30, deadline=None)
@given(
    data=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
        min_size=1,
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_partition_invariance_in_the_exact_regime(data, cuts):
    X = np.array(data).reshape(-1, 1)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    sketch = _kll.empty_sketch(1, 64, 0)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sketch = _kll.update_sketch(sketch, X[a:b])
    np.testing.assert_allclose(
        _kll.sketch_quantiles(sketch, QUANTILES)[:, 0],
        np.quantile(X[:, 0], QUANTILES),
        rtol=1e-15,
        atol=0,
    )


def test_merge_of_small_sketches_is_exact():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    merged = _kll.merge_sketches(sketch_of(X[:120], 50), sketch_of(X[120:], 50, seed=1))
    np.testing.assert_allclose(
        _kll.sketch_quantiles(merged, QUANTILES),
        np.nanquantile(X, QUANTILES, axis=0),
        rtol=1e-15,
    )


def test_features_with_different_missing_patterns():
    # A dense feature compacts often; a sparse one must not be compacted with
    # it (that would cost it accuracy), and an all-missing one stays empty.
    rng = np.random.default_rng(4)
    n, k = 200_000, 64
    X = rng.standard_normal((n, 3))
    X[rng.random(n) < 0.9998, 1] = np.nan  # about 40 values, fewer than k
    X[:, 2] = np.nan
    sketch = sketch_of(X, 1000, k=k)
    counts = _kll.sketch_counts(sketch)
    np.testing.assert_array_equal(counts, (~np.isnan(X)).sum(axis=0))
    assert counts[1] < k
    assert sketch.counts[:, 0].sum() <= k * (np.log2(n / k) + 2)
    assert sketch.counts.max() <= k
    quantiles = _kll.sketch_quantiles(sketch, QUANTILES)
    assert np.isnan(quantiles[:, 2]).all()
    np.testing.assert_allclose(
        quantiles[:, 1], np.nanquantile(X[:, 1], QUANTILES), rtol=1e-15
    )
    # No level keeps more than a bounded amount of NaN padding.
    assert max(level.shape[1] for level in sketch.levels) <= 2 * k + 1000


def test_updates_and_merges_leave_their_inputs_unchanged():
    rng = np.random.default_rng(5)
    a = sketch_of(rng.standard_normal((3000, 2)), 700, k=32)
    b = sketch_of(rng.standard_normal((3000, 2)), 700, k=32, seed=1)
    before = [
        (
            [level.copy() for level in s.levels],
            s.counts.copy(),
            (s.seed, s.coins_drawn),
        )
        for s in (a, b)
    ]
    _kll.update_sketch(a, rng.standard_normal((5000, 2)))
    _kll.merge_sketches(a, b)
    _kll.merge_sketches(b, a)
    for s, (levels, counts, state) in zip((a, b), before, strict=True):
        assert len(levels) == len(s.levels)
        for old, new in zip(levels, s.levels, strict=True):
            np.testing.assert_array_equal(old, new)
        np.testing.assert_array_equal(counts, s.counts)
        assert (s.seed, s.coins_drawn) == state


def test_deterministic_given_the_generator_seed():
    X = np.random.default_rng(6).standard_normal((20_000, 2))
    q1 = _kll.sketch_quantiles(sketch_of(X, 999, k=32, seed=3), QUANTILES)
    q2 = _kll.sketch_quantiles(sketch_of(X, 999, k=32, seed=3), QUANTILES)
    q3 = _kll.sketch_quantiles(sketch_of(X, 999, k=32, seed=4), QUANTILES)
    np.testing.assert_array_equal(q1, q2)
    assert not np.array_equal(q1, q3)


def test_float32_input_is_sketched_exactly():
    X = np.random.default_rng(8).standard_normal((100, 2)).astype(np.float32)
    sketch = sketch_of(X, 30)
    np.testing.assert_array_equal(
        _kll.sketch_quantiles(sketch, [0.0, 1.0]),
        np.stack([X.min(axis=0), X.max(axis=0)]).astype(np.float64),
    )


def test_merge_rejects_mismatched_sketches():
    a = _kll.empty_sketch(2, 32, 0)
    with pytest.raises(ValueError, match="sizes 32 and 64"):
        _kll.merge_sketches(a, _kll.empty_sketch(2, 64, 0))
    with pytest.raises(ValueError, match="2 and 3 features"):
        _kll.merge_sketches(a, _kll.empty_sketch(3, 32, 0))
    with pytest.raises(ValueError, match="at least 2"):
        _kll.empty_sketch(2, 1, 0)


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_coins_are_fair_and_depend_on_the_seed(seed):
    n = 20_000
    coins = _kll._Coins(seed, 0)
    flips = np.array([coins.flip() for _ in range(n)])
    assert coins.drawn == n
    assert set(np.unique(flips)) == {0, 1}
    assert abs(flips.mean() - 0.5) <= 4 * 0.5 / np.sqrt(n)
    # No short period: consecutive pairs are about equally often alike.
    assert abs((flips[1:] == flips[:-1]).mean() - 0.5) <= 4 * 0.5 / np.sqrt(n)
    other = _kll._Coins(seed + 1, 0)
    assert not np.array_equal(flips[:64], [other.flip() for _ in range(64)])


@pytest.mark.parametrize("seed", [0, 1])
def test_quantiles_of_a_compacted_sketch_are_those_of_its_weighted_items(seed):
    # Independent reference: repeat every retained item by its weight and ask
    # np.quantile. Values of several magnitudes and signs, NaN and ties.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((5000, 4)) * [1.0, 1e9, 1e-9, 1.0]
    X[:, 0] += 1e9
    X[:, 3] = np.round(X[:, 3] * 3)
    X[rng.random(X.shape) < 0.2] = np.nan
    sketch = sketch_of(X, 333, k=16, seed=seed)
    assert len(sketch.levels) > 4  # compacted
    q = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    for j in range(4):
        items, weights = [], []
        for h, level in enumerate(sketch.levels):
            row = level[j][~np.isnan(level[j])]
            items.append(row)
            weights.append(np.full(row.size, 2**h))
        expanded = np.repeat(np.concatenate(items), np.concatenate(weights))
        np.testing.assert_allclose(
            _kll.sketch_quantiles(sketch, q)[:, j],
            np.quantile(expanded, q),
            rtol=1e-15,
        )


@pytest.mark.parametrize("shape", [(1, 1), (1000, 3), (1024, 64), (5000, 1), (3, 700)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_transposed_copy(shape, order):
    X = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    X = np.asarray(X, order=order)
    out = _kll._transposed(X)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, X.T)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_is_refused_and_reported(bad):
    X = np.random.default_rng(0).standard_normal((600, 3))
    X[::7, 1] = np.nan
    X[5, 1] = bad
    sketch = _kll.empty_sketch(3, 16, 0)
    with pytest.raises(ValueError, match="X contains infinity"):
        _kll.update_sketch(sketch, X)
    calls = []
    with pytest.raises(ValueError, match="X contains infinity"):
        _kll.update_sketch(sketch, X, on_infinity=lambda: calls.append(1))
    assert calls == [1]
    assert sketch.counts.sum() == 0


def test_batches_smaller_than_the_sketch_size():
    # Values then reach the levels one small batch at a time (no batch is
    # compacted on its own): the bound and the memory limit still hold.
    rng = np.random.default_rng(9)
    k, n = 64, 30_000
    X = np.column_stack([rng.standard_cauchy(n), np.sort(rng.standard_normal(n))])
    sketch = sketch_of(X, 10, k=k)
    np.testing.assert_array_equal(_kll.sketch_counts(sketch), n)
    assert sketch.counts.max() <= k
    bound = _kll.rank_error_bound(k, 0.01)
    X_sorted = np.sort(X, axis=0)
    for q, values in zip(
        QUANTILES, _kll.sketch_quantiles(sketch, QUANTILES), strict=True
    ):
        assert rank_errors(X_sorted, values, q).max() <= bound


# -- the incremental read --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_reads_with_a_cache_equal_reads_without(backend):
    if backend == "numba":
        pytest.importorskip("numba", reason="the compiled backend is optional")
    from sknorm._config import config_context

    rng = np.random.default_rng(11)
    X = rng.standard_t(3, size=(6000, 3)) * [1, 100, 1e-3]
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:2000, 2] = np.nan  # a feature that starts late
    q = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    cache = {}
    sketch = _kll.empty_sketch(3, 32, 5)
    with config_context(backend=backend):
        for start in range(0, 6000, 250):
            sketch = _kll.update_sketch(sketch, X[start : start + 250])
            cached = _kll.sketch_quantiles(sketch, q, cache=cache)
            np.testing.assert_array_equal(cached, _kll.sketch_quantiles(sketch, q))
        # The cache keeps only the current levels, and a merged sketch (new
        # level arrays) is read right.
        other = sketch_of(X[::-1], 700, k=32, seed=6)
        merged = _kll.merge_sketches(sketch, other)
        np.testing.assert_array_equal(
            _kll.sketch_quantiles(merged, q, cache=cache),
            _kll.sketch_quantiles(merged, q),
        )
    assert [entry[0] for entry in cache["sorted_levels"]] == list(merged.levels)
    # The compiled read keeps the levels side by side, rewriting those that
    # changed: it was the one taken above.
    assert ("level_slots" in cache) == (backend == "numba")


def test_near_ties_keep_their_exact_order_while_nothing_is_compacted():
    # Values a few units in the last place apart share the order key that
    # the read sorts by; their rank among themselves decides which is
    # returned, so the result is still exactly np.nanquantile.
    base = np.array([1.0, -3.0, 1e300, 5e-324])
    X = np.stack([np.nextafter(base, np.inf * s) for s in (1, -1)] + [base] * 3)
    X = np.vstack([X, X[:, ::-1] + 0.0, X * 2])
    X[4, 1] = np.nan
    sketch = _kll.update_sketch(_kll.empty_sketch(4, 64, 0), X)
    q = np.linspace(0, 1, 21)
    np.testing.assert_array_equal(
        _kll.sketch_quantiles(sketch, q), np.nanquantile(X, q, axis=0)
    )
