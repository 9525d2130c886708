"""Tests of the relative-error quantile sketches in sknorm._req.

Accuracy tests measure the *true* rank of the value the sketch returns in the
full data (sorted with NumPy), so they do not depend on how the sketch
interpolates; ties count as the whole interval of ranks they occupy.
"""

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sknorm import _kll, _req

K = 256  # small, so that short test streams reach many levels
N_ROWS = 200_000
# Tails, body and middle; the bound is two-sided.
QUANTILES = np.array([1e-4, 1e-3, 3e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.997, 0.999])


def sketch_of(X, batch, k=K, seed=0):
    sketch = _req.empty_sketch(X.shape[1], k, seed)
    for start in range(0, X.shape[0], batch):
        sketch = _req.update_sketch(sketch, X[start : start + batch])
    return sketch


def rank_errors(X_sorted, values, q):
    """Distance, in ranks, from q * n to the interval of true ranks of values."""
    n = X_sorted.shape[0]
    errors = []
    for j, value in enumerate(values):
        below = np.searchsorted(X_sorted[:, j], value, side="left")
        at_or_below = np.searchsorted(X_sorted[:, j], value, side="right")
        errors.append(max(below - q * n, q * n - at_or_below, 0.0))
    return np.array(errors)


def hard_streams(n, seed=42):
    """Columns of hard streams and their names."""
    rng = np.random.default_rng(seed)
    mixture = np.where(rng.random(n) < 0.7, rng.normal(0, 1, n), rng.normal(50, 10, n))
    columns = {
        "normal": rng.standard_normal(n),
        "lognormal": rng.lognormal(0, 2, n),
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
    X, names = hard_streams(N_ROWS)
    return X, np.sort(X, axis=0), names


def test_bound_shrinks_towards_both_ends_and_is_exact_while_short():
    n = 10**6
    middle = _req.rank_error_bound(2048, n, 0.5)
    tails = [_req.rank_error_bound(2048, n, q) for q in (1e-3, 1 - 1e-3)]
    assert tails[0] == pytest.approx(tails[1])
    assert tails[0] < middle / 20  # in ranks: a relative error in the tails
    # Relative to the rank, the tail bound is far below a uniform-error sketch's.
    assert tails[0] / 1e-3 < 0.2 < _kll.rank_error_bound(512) / 1e-3
    assert _req.rank_error_bound(2048, 2048, 0.5) == 0.0
    assert _req.rank_error_bound(2048, n, 0.5, merge_depth=3) == pytest.approx(
        2 * middle
    )


@pytest.mark.parametrize("batch", [1000, 37])
def test_rank_error_within_the_stated_bound(streams, batch):
    X, X_sorted, names = streams
    if batch < 1000:  # values reach the levels a few at a time
        X, X_sorted = X[:50_000, [0, 4, 6]], np.sort(X[:50_000, [0, 4, 6]], axis=0)
        names = [names[i] for i in (0, 4, 6)]
    n = X.shape[0]
    sketch = sketch_of(X, batch)
    np.testing.assert_array_equal(_req.sketch_counts(sketch), n)
    for q, values in zip(
        QUANTILES, _req.sketch_quantiles(sketch, QUANTILES), strict=True
    ):
        errors = rank_errors(X_sorted, values, q)
        bound = _req.rank_error_bound(K, n, q, delta=0.01) * n
        assert errors.max() <= bound, (q, dict(zip(names, errors, strict=True)))


def test_tails_have_small_relative_error(streams):
    # The measured relative error in the tails, where a uniform rank error of
    # the same memory is several times the rank itself.
    X, X_sorted, _ = streams
    n = X.shape[0]
    sketch = sketch_of(X, 1000)
    kll = _kll.empty_sketch(X.shape[1], K, 0)
    for start in range(0, n, 1000):
        kll = _kll.update_sketch(kll, X[start : start + 1000])
    assert _kll.retained_items(kll).max() >= _req.retained_items(sketch).max() / 4
    for q in (1e-3, 1 - 1e-3):
        ours = rank_errors(X_sorted, _req.sketch_quantiles(sketch, q)[0], q)
        uniform = rank_errors(X_sorted, _kll.sketch_quantiles(kll, q)[0], q)
        assert ours.max() <= 0.05 * 1e-3 * n  # within 5 % of the rank
        assert ours.max() < uniform.max() / 4


def test_extremes_are_exact(streams):
    # The smallest and largest values never leave level 0, and ranks up to
    # the batch margin are never touched by a compaction.
    X, X_sorted, _ = streams
    sketch = sketch_of(X, 1000)
    np.testing.assert_array_equal(
        _req.sketch_quantiles(sketch, [0.0, 1.0]), X_sorted[[0, -1]]
    )
    margin = _req._layout(K).margin
    for j in range(X.shape[1]):
        y = X_sorted[margin - 1, j]
        true_rank = np.searchsorted(X_sorted[:, j], y, side="right")
        if true_rank > margin:  # heavy ties: not in the exact range
            continue
        assert _req.sketch_ranks(sketch, np.full(X.shape[1], y))[j] == true_rank


def test_memory_grows_logarithmically():
    rng = np.random.default_rng(3)
    sketch = _req.empty_sketch(2, 128, seed=3)
    retained = []
    for _ in range(200):
        sketch = _req.update_sketch(sketch, rng.standard_normal((1000, 2)))
        retained.append(_req.retained_items(sketch).max())
    n = 200 * 1000
    assert sketch.counts.max() <= 128
    assert len(sketch.levels) <= max(np.log2(2 * n / 128) + 1, 5)
    assert max(retained) <= 128 * (np.log2(2 * n / 128) + 1)
    # Growth from n / 2 to n: about one level, not a factor 2.
    assert retained[-1] - retained[99] <= 2 * 128


@pytest.mark.parametrize(
    "batches", [[2048], [1] * 7 + [2041], [100, 0, 1000, 948], [500, 500]]
)
def test_exact_while_the_stream_fits(batches):
    rng = np.random.default_rng(1)
    k = 2048
    X = rng.standard_normal((sum(batches), 4)) * [1, 1e6, 1e-6, 1]
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 3] = np.round(X[:, 3])  # ties
    sketch = _req.empty_sketch(4, k, 0)
    start = 0
    for size in batches:
        sketch = _req.update_sketch(sketch, X[start : start + size])
        start += size
    references = np.linspace(0, 1, 1000)
    # Bit-identical to what QuantileTransformer computes.
    np.testing.assert_array_equal(
        _req.sketch_quantiles(sketch, references * 100 / 100),
        np.nanpercentile(X, references * 100, axis=0),
    )
    np.testing.assert_array_equal(
        _req.sketch_counts(sketch), (~np.isnan(X)).sum(axis=0)
    )
    assert sketch.compactions.sum() == 0


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
        min_size=1,
        max_size=128,
    ),
    cuts=st.lists(st.integers(0, 128), max_size=5),
    q=st.lists(st.floats(0, 1), min_size=1, max_size=5),
)
def test_partition_invariance_in_the_exact_regime(data, cuts, q):
    X = np.array(data).reshape(-1, 1)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    sketch = _req.empty_sketch(1, 128, 0)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sketch = _req.update_sketch(sketch, X[a:b])
    np.testing.assert_array_equal(
        _req.sketch_quantiles(sketch, q)[:, 0], np.quantile(X[:, 0], q)
    )


def _merge_in_order(sketches, order_seed):
    """Merge with a random tree shape; returns the sketch and its depth ``d``."""
    rng = np.random.default_rng(order_seed)
    pool = [(s, 0) for s in sketches]  # (sketch, times merged in so far)
    while len(pool) > 1:
        i, j = rng.choice(len(pool), size=2, replace=False)
        (a, da), (b, db) = pool[i], pool[j]
        pool = [p for t, p in enumerate(pool) if t not in (i, j)]
        pool.append((_req.merge_sketches(a, b), max(da, db + 1)))
    return pool[0]


@functools.cache
def merge_data():
    X, _ = hard_streams(60_000, seed=5)
    X = X[:, [0, 2, 4, 6]]
    parts = np.array_split(X, 12)
    sketches = [sketch_of(part, 700, k=128, seed=i) for i, part in enumerate(parts)]
    return X, np.sort(X, axis=0), sketches


@settings(max_examples=12, deadline=None)
@given(order_seed=st.integers(0, 2**32 - 1))
def test_merge_in_any_tree_order_keeps_the_bound(order_seed):
    X, X_sorted, sketches = merge_data()
    merged, depth = _merge_in_order(sketches, order_seed)
    n = X.shape[0]
    np.testing.assert_array_equal(_req.sketch_counts(merged), n)
    assert merged.counts.max() <= 128
    for q, values in zip(
        QUANTILES, _req.sketch_quantiles(merged, QUANTILES), strict=True
    ):
        bound = _req.rank_error_bound(128, n, q, delta=0.01, merge_depth=depth)
        assert rank_errors(X_sorted, values, q).max() <= bound * n


def test_merge_of_small_sketches_is_exact():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    merged = _req.merge_sketches(
        sketch_of(X[:120], 50, k=512), sketch_of(X[120:], 50, k=512, seed=1)
    )
    q = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(
        _req.sketch_quantiles(merged, q), np.nanquantile(X, q, axis=0)
    )


def test_missing_values_are_ignored_per_feature():
    # A dense feature compacts often; a sparse one must stay exact, and an
    # all-missing one empty.
    rng = np.random.default_rng(4)
    n, k = 100_000, 128
    X = rng.standard_normal((n, 3))
    X[rng.random(n) < 0.9995, 1] = np.nan  # about 50 values, fewer than k
    X[:, 2] = np.nan
    sketch = sketch_of(X, 1000, k=k)
    counts = _req.sketch_counts(sketch)
    np.testing.assert_array_equal(counts, (~np.isnan(X)).sum(axis=0))
    assert counts[1] < k and sketch.compactions[:, 1].sum() == 0
    assert sketch.counts.max() <= k
    quantiles = _req.sketch_quantiles(sketch, QUANTILES)
    assert np.isnan(quantiles[:, 2]).all()
    np.testing.assert_array_equal(quantiles[:, 1], np.nanquantile(X[:, 1], QUANTILES))
    X_sorted = np.sort(X[:, :1], axis=0)
    for q, value in zip(QUANTILES, quantiles[:, 0], strict=True):
        bound = _req.rank_error_bound(k, n, q) * n
        assert rank_errors(X_sorted, [value], q)[0] <= bound


def test_features_missing_in_different_rows_compact_separately():
    # Rows of one level then compact at different times and with different
    # schedules (the general, per-row path).
    rng = np.random.default_rng(12)
    n, k = 60_000, 128
    X = rng.standard_normal((n, 3))
    X[rng.random(n) < 0.3, 0] = np.nan
    X[rng.random(n) < 0.6, 1] = np.nan
    sketch = sketch_of(X, 333, k=k)
    assert len({tuple(column) for column in sketch.compactions.T}) == 3
    X_sorted = [np.sort(X[~np.isnan(X[:, j]), j])[:, None] for j in range(3)]
    quantiles = _req.sketch_quantiles(sketch, QUANTILES)
    for j in range(3):
        m = X_sorted[j].shape[0]
        for q, value in zip(QUANTILES, quantiles[:, j], strict=True):
            bound = _req.rank_error_bound(k, m, q) * m
            assert rank_errors(X_sorted[j], [value], q)[0] <= bound


def test_quantiles_of_a_compacted_sketch_interpolate_between_item_centres():
    # Independent reference: every retained item, weight w, sits at the
    # centre of the w positions it covers; np.interp between the centres.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 3)) * [1.0, 1e9, 1.0]
    X[:, 2] = np.round(X[:, 2] * 3)
    sketch = sketch_of(X, 333, k=128)
    assert len(sketch.levels) > 4  # compacted
    q = np.linspace(0, 1, 41)
    got = _req.sketch_quantiles(sketch, q)
    for j in range(3):
        items, weights = [], []
        for h, level in enumerate(sketch.levels):
            for chunk in level:
                row = chunk[j][~np.isnan(chunk[j])]
                items.append(row)
                weights.append(np.full(row.size, 2**h))
        order = np.argsort(np.concatenate(items), kind="stable")
        values = np.concatenate(items)[order]
        w = np.concatenate(weights)[order]
        centres = np.cumsum(w) - (w + 1) / 2
        expected = np.interp((5000 - 1) * q, centres, values)
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-12, atol=1e-9 * 1e9)
        assert np.all(np.diff(got[:, j]) >= 0)


def test_updates_and_merges_leave_their_inputs_unchanged():
    rng = np.random.default_rng(5)
    a = sketch_of(rng.standard_normal((3000, 2)), 700, k=128)
    b = sketch_of(rng.standard_normal((3000, 2)), 700, k=128, seed=1)
    before = [_req.sketch_to_dict(s) for s in (a, b)]
    _req.update_sketch(a, rng.standard_normal((5000, 2)))
    _req.merge_sketches(a, b)
    _req.merge_sketches(b, a)
    for s, old in zip((a, b), before, strict=True):
        new = _req.sketch_to_dict(s)
        for key, value in old.items():
            np.testing.assert_array_equal(new[key], value)


def test_deterministic_given_the_seed_and_partition():
    X = np.random.default_rng(6).standard_normal((20_000, 2))
    q1 = _req.sketch_quantiles(sketch_of(X, 999, k=128, seed=3), QUANTILES)
    q2 = _req.sketch_quantiles(sketch_of(X, 999, k=128, seed=3), QUANTILES)
    q3 = _req.sketch_quantiles(sketch_of(X, 999, k=128, seed=4), QUANTILES)
    np.testing.assert_array_equal(q1, q2)
    assert not np.array_equal(q1, q3)


def test_plain_data_round_trip_resumes_bit_identically():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((9000, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    sketch = sketch_of(X[:6000], 500, k=128)
    data = _req.sketch_to_dict(sketch)
    for value in data.values():
        assert isinstance(value, (np.ndarray, int, float, str))
    restored = _req.sketch_from_dict(data)
    np.testing.assert_array_equal(
        _req.sketch_quantiles(restored, QUANTILES),
        _req.sketch_quantiles(sketch, QUANTILES),
    )
    for part in (X[6000:7500], X[7500:]):
        sketch = _req.update_sketch(sketch, part)
        restored = _req.update_sketch(restored, part)
    after, again = _req.sketch_to_dict(sketch), _req.sketch_to_dict(restored)
    for key, value in after.items():
        np.testing.assert_array_equal(again[key], value)


def test_damaged_plain_data_is_refused():
    data = _req.sketch_to_dict(sketch_of(np.ones((300, 2)), 100, k=128))
    with pytest.raises(ValueError, match="Not a relative-error quantile sketch"):
        _req.sketch_from_dict({**data, "kind": "moments"})
    with pytest.raises(ValueError, match="Inconsistent quantile sketch"):
        _req.sketch_from_dict({**data, "items": data["items"][:-1]})


def test_float32_input_is_sketched_exactly():
    X = np.random.default_rng(8).standard_normal((100, 2)).astype(np.float32)
    sketch = sketch_of(X, 30, k=128)
    np.testing.assert_array_equal(
        _req.sketch_quantiles(sketch, QUANTILES),
        np.quantile(X.astype(np.float64), QUANTILES, axis=0),
    )


def test_mismatched_sketches_and_small_sizes_are_refused():
    a = _req.empty_sketch(2, 128, 0)
    with pytest.raises(ValueError, match="sizes 128 and 256"):
        _req.merge_sketches(a, _req.empty_sketch(2, 256, 0))
    with pytest.raises(ValueError, match="2 and 3 features"):
        _req.merge_sketches(a, _req.empty_sketch(3, 128, 0))
    with pytest.raises(ValueError, match="at least 128"):
        _req.empty_sketch(2, 64, 0)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_is_refused_and_reported(bad):
    X = np.random.default_rng(0).standard_normal((600, 3))
    X[::7, 1] = np.nan
    X[5, 1] = bad
    sketch = _req.empty_sketch(3, 128, 0)
    calls = []
    with pytest.raises(ValueError, match="X contains infinity"):
        _req.update_sketch(sketch, X, on_infinity=lambda: calls.append(1))
    assert calls == [1]
    assert sketch.counts.sum() == 0


def test_ruler_schedule():
    counts = np.arange(8, dtype=np.int64)
    np.testing.assert_array_equal(
        _req._trailing_ones(counts) + 1, [1, 2, 1, 3, 1, 2, 1, 4]
    )
