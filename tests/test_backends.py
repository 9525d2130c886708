"""The NumPy and numba backends: same statistics, outputs and errors.

Every numeric test runs under both backends (the ``backend`` fixture) against
an independent reference (long double brute force); the numba half is skipped
when numba is not installed. ``test_backends_agree`` compares the two
backends with each other to 1e-12. The whole suite runs under one backend
with ``SKNORM_BACKEND=numpy`` or ``SKNORM_BACKEND=numba``.
"""

import importlib.util
import itertools
import pickle
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import sknorm
from sknorm import (
    BatchNormalizer,
    GroupNormalizer,
    LayerNormalizer,
    RobustNormalizer,
    _config,
    _rowstats,
    _stats,
)
from sknorm._config import config_context, get_config, set_config

HAS_NUMBA = importlib.util.find_spec("numba") is not None
NEEDS_NUMBA = pytest.mark.skipif(
    not HAS_NUMBA, reason="numba is not installed (pip install 'sknorm[fast]')"
)
BACKENDS = ["numpy", pytest.param("numba", marks=NEEDS_NUMBA)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with config_context(backend=request.param):
        yield request.param


MODES = [{}, {"half_life": 40.0}, {"momentum": 0.2}]


def stream(est, batches, weights=None):
    for i, batch in enumerate(batches):
        est.partial_fit(batch, sample_weight=None if weights is None else weights[i])
    return est


def batches_of(X, sizes):
    return np.split(X, np.cumsum(sizes)[:-1])


def reference_moments(X, w):
    """Weighted mean and biased variance per column, NaN-aware, in long double."""
    X = np.asarray(X, dtype=np.longdouble)
    w = np.asarray(w, dtype=np.longdouble)[:, None]
    present = ~np.isnan(X)
    W = (w * present).sum(axis=0)
    Xz = np.where(present, X, 0)
    mean = (w * Xz).sum(axis=0) / W
    var = (w * np.where(present, (Xz - mean) ** 2, 0)).sum(axis=0) / W
    return mean.astype(float), var.astype(float), W.astype(float)


def reference_stream(batches, params, weights=None):
    """Mean, variance and weight sum of a stream, from the update rules."""
    if "momentum" in params:
        # Per feature: a batch with weight updates the mean, one with weight
        # above 1 the (unbiased) variance; the first update initializes.
        m = params["momentum"]
        mean = np.full(batches[0].shape[1], np.nan)
        var = mean.copy()
        for i, X in enumerate(batches):
            w = np.ones(len(X)) if weights is None else weights[i]
            with np.errstate(invalid="ignore", divide="ignore"):
                bm, bv, W = reference_moments(X, w)
                bv = bv * W / (W - 1)
            mean = np.where(
                W > 0, np.where(np.isnan(mean), bm, (1 - m) * mean + m * bm), mean
            )
            var = np.where(
                W > 1, np.where(np.isnan(var), bv, (1 - m) * var + m * bv), var
            )
        return mean, var
    X = np.vstack(batches)
    w = np.ones(len(X)) if weights is None else np.concatenate(weights)
    if "half_life" in params:
        age = np.arange(len(X))[::-1]
        w = w * 2.0 ** (-age / params["half_life"])
    mean, var, _ = reference_moments(X, w)
    return mean, var


# -- the switch ------------------------------------------------------------------------


def test_the_switch_is_public():
    assert (sknorm.set_config, sknorm.get_config, sknorm.config_context) == (
        set_config,
        get_config,
        config_context,
    )
    assert {"set_config", "get_config", "config_context"} <= set(sknorm.__all__)


def test_config_switch_and_context_restore():
    before = get_config()
    with config_context(backend="numpy"):
        assert get_config() == {"backend": "numpy"}
        assert _config.compiled_kernels() is None
    assert get_config() == before
    with config_context(backend="auto"):
        expected = "numba" if HAS_NUMBA else "numpy"
        assert get_config()["backend"] == expected
    set_config(backend=None)  # leaves it unchanged
    assert get_config() == before


def test_unknown_backend_is_refused_and_leaves_the_setting():
    before = get_config()
    with pytest.raises(ValueError, match="must be 'auto', 'numpy' or 'numba'"):
        set_config(backend="cuda")
    assert get_config() == before


@pytest.mark.skipif(HAS_NUMBA, reason="checks the error without numba")
def test_numba_backend_without_numba_says_what_to_install():
    with pytest.raises(ValueError, match=r"pip install 'sknorm\[fast\]'"):
        set_config(backend="numba")


def test_environment_variable_is_read_at_import_and_numba_is_not_imported():
    code = (
        "import sys, sknorm; from sknorm._config import get_config; "
        "print(get_config()['backend'], 'numba' in sys.modules)"
    )
    env = {"SKNORM_BACKEND": "numpy", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["numpy", "False"], out.stderr
    env["SKNORM_BACKEND"] = "fortran"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "SKNORM_BACKEND must be 'auto', 'numpy' or 'numba'" in out.stderr


@NEEDS_NUMBA
def test_numba_is_imported_only_when_a_kernel_is_first_needed():
    code = (
        "import sys, numpy as np, sknorm; a = 'numba' in sys.modules; "
        "sknorm.BatchNormalizer().fit(np.ones((3, 2))); "
        "from sknorm._config import get_config; "
        "print(get_config()['backend'], a, 'numba' in sys.modules)"
    )
    env = {"SKNORM_BACKEND": "auto", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["numba", "False", "True"], out.stderr


@NEEDS_NUMBA
def test_a_numba_that_fails_to_import_falls_back_to_numpy_with_a_warning(
    monkeypatch,
):
    monkeypatch.setattr(_config, "_kernels", None)
    monkeypatch.setitem(sys.modules, "sknorm._numba_kernels", None)  # import fails
    with config_context(backend="auto"):
        with pytest.warns(RuntimeWarning, match="continues with its NumPy backend"):
            est = BatchNormalizer().fit(np.arange(6.0).reshape(3, 2))
        assert get_config()["backend"] == "numpy"
    np.testing.assert_allclose(est.mean_, [2.0, 3.0])
    with config_context(backend="numba"):
        with pytest.raises(ValueError, match="SKNORM_BACKEND=numpy"):
            BatchNormalizer().fit(np.arange(6.0).reshape(3, 2))


@pytest.mark.parametrize("params", MODES)
def test_dense_updates_take_the_chosen_backend(monkeypatch, backend, params):
    called = []
    for name in ("update_exact", "update_half_life", "update_momentum"):
        original = getattr(_stats, name)
        monkeypatch.setattr(
            _stats, name, lambda *a, _f=original, **k: called.append(1) or _f(*a, **k)
        )
    X = np.random.default_rng(0).standard_normal((20, 3))
    est = BatchNormalizer(**params).fit(X)
    assert bool(called) == (backend == "numpy")
    # Sparse batches always take the NumPy path.
    if "momentum" not in params and "half_life" not in params:
        called.clear()
        BatchNormalizer(with_mean=False).fit(sp.csr_matrix(X))
        assert called
    np.testing.assert_allclose(est.mean_, reference_stream([X], params)[0], rtol=1e-13)


# -- statistics against references -----------------------------------------------------


@pytest.mark.parametrize("params", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_stream_matches_the_reference(
    monkeypatch, backend, params, dtype, nan, weighted
):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 4 * 50)  # 50-row blocks
    rng = np.random.default_rng(3)
    X = (1e6 + rng.standard_normal((400, 4)) * [1, 1e-3, 1e3, 7]).astype(dtype)
    if nan:
        X[rng.random(X.shape) < 0.1] = np.nan
        X[:150, 3] = np.nan  # a feature that starts late
    sizes = [2, 9, 64, 2, 210, 113]
    batches = batches_of(X, sizes)
    weights = None
    if weighted:
        weights = batches_of(rng.uniform(0, 3, len(X)), sizes)
        weights[1][:] = 0.0  # a batch of zero weights
    est = stream(BatchNormalizer(**params), batches, weights)
    mean, var = reference_stream(
        [b.astype(np.float64) for b in batches], params, weights
    )
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-14)
    # A float32 feature of spread 1e-3 about 1e6 is constant once rounded.
    np.testing.assert_allclose(est.var_, var, rtol=1e-10, atol=1e-20)
    assert est.mean_.dtype == est.var_.dtype == np.float64
    expected_count = (~np.isnan(X)).sum(axis=0)
    np.testing.assert_array_equal(est.n_samples_seen_, expected_count)


@pytest.mark.parametrize("params", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_backends_agree(params, dtype):
    pytest.importorskip("numba", reason="compares the two backends")
    rng = np.random.default_rng(4)
    X = (3 + rng.standard_normal((3000, 6)) * [1, 10, 1e-4, 1e4, 5, 1]).astype(dtype)
    X[rng.random(X.shape) < 0.03] = np.nan
    sizes = [2, 7, 64, 2, 2500, 425]
    results = {}
    for name in ("numpy", "numba"):
        with config_context(backend=name):
            est = stream(BatchNormalizer(clip=3.0, **params), batches_of(X, sizes))
            out = est.transform(X)
            results[name] = (est, out, est.inverse_transform(out))
    (a, a_out, a_back), (b, b_out, b_back) = results["numpy"], results["numba"]
    # Means to 1e-12 of each feature's spread (a mean near 0 has no relative
    # precision), the rest to 1e-12 relative.
    np.testing.assert_array_less(np.abs(a.mean_ - b.mean_), 1e-12 * a.scale_)
    for attr in ("var_", "scale_", "weight_sum_"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-12)
    np.testing.assert_array_equal(a.n_samples_seen_, b.n_samples_seen_)
    assert a_out.dtype == b_out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(a_out, b_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(a_back, b_back, rtol=tol)


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 119), max_size=8),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(range(len(MODES))),
)
def test_stream_is_partition_invariant_under_the_numba_backend(cuts, seed, mode):
    pytest.importorskip("numba", reason="the NumPy backend has its own tests")
    params = MODES[mode]
    if "momentum" in params:
        params = {"half_life": 7.0}  # momentum depends on the partition
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 3)) * [1, 100, 1e-3] + [1e8, 0, -5]
    X[rng.random(X.shape) < 0.05] = np.nan
    bounds = [0, *sorted(set(cuts)), 120]
    with config_context(backend="numba"):
        est = stream(
            BatchNormalizer(**params), [X[a:b] for a, b in itertools.pairwise(bounds)]
        )
        one = BatchNormalizer(**params).fit(X)
    mean, var = reference_stream([X], params)
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-14)
    np.testing.assert_allclose(est.var_, var, rtol=1e-10)
    np.testing.assert_allclose(est.var_, one.var_, rtol=1e-10)


@pytest.mark.parametrize("params", MODES)
def test_statistics_do_not_depend_on_memory_layout(monkeypatch, backend, params):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 5 * 16)  # 16-row blocks
    X = np.random.default_rng(8).standard_normal((100, 5)) * [1, 1e3, 1e-3, 7, 1e6]
    every_other = np.zeros((200, 5))
    every_other[::2] = X
    by_row = BatchNormalizer(**params).fit(X)
    by_column = BatchNormalizer(**params).fit(np.asfortranarray(X))
    strided = BatchNormalizer(**params).fit(every_other[::2])
    for other in (by_column, strided):
        np.testing.assert_array_equal(by_row.mean_, other.mean_)
        np.testing.assert_array_equal(by_row.var_, other.var_)


def test_long_stream_keeps_the_precision_of_long_double(backend):
    rng = np.random.default_rng(2)
    X = 1e9 + rng.standard_normal((20_000, 4))
    est = stream(BatchNormalizer(), batches_of(X, [64] * 300 + [800]))
    exact = X.astype(np.longdouble)
    mean = exact.mean(0)
    np.testing.assert_allclose(est.mean_, mean.astype(np.float64), rtol=1e-15)
    var = ((exact - mean) ** 2).mean(0).astype(np.float64)
    np.testing.assert_allclose(est.var_, var, rtol=1e-12)


# -- edge values -----------------------------------------------------------------------


def test_huge_and_tiny_spreads_stay_exact(backend):
    rng = np.random.default_rng(0)
    for X in (
        1e150 * (1.0 + 1e-3 * rng.standard_normal((200, 2))),
        1e-150 * rng.standard_normal((200, 2)),
    ):
        est = stream(BatchNormalizer(), np.array_split(X, 9))
        mean, var, _ = reference_moments(X, np.ones(len(X)))
        np.testing.assert_allclose(est.mean_, mean, rtol=1e-12)
        np.testing.assert_allclose(est.var_, var, rtol=1e-10)


def test_squares_that_overflow_are_rescaled(backend):
    # Deviations of 1e155 square to inf; the variance, 1e310 / 4, does not
    # fit either, but 1e153 spreads do.
    X = np.array([[1e153, 0.0], [-1e153, 1.0], [3e153, 2.0], [-3e153, 3.0]])
    est = BatchNormalizer().partial_fit(X[:1]).partial_fit(X[1:])
    np.testing.assert_allclose(est.var_, [5e306, 1.25], rtol=1e-14)


def test_variance_overflow_is_an_error_and_keeps_the_state(backend):
    est = BatchNormalizer().partial_fit(np.array([[1.0], [2.0]]))
    before = pickle.dumps((est.mean_, est.var_, est.n_samples_seen_))
    with pytest.raises(ValueError, match="overflow float64"):
        est.partial_fit(np.array([[1e200], [-1e200]]))
    assert pickle.dumps((est.mean_, est.var_, est.n_samples_seen_)) == before


@pytest.mark.parametrize("params", MODES)
def test_infinity_is_refused_and_keeps_the_state(monkeypatch, backend, params):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 3 * 5)  # found in a later block
    rng = np.random.default_rng(1)
    est = BatchNormalizer(**params).fit(rng.standard_normal((10, 3)))
    before = pickle.dumps((est.mean_, est.var_, est.n_samples_seen_))
    X = rng.standard_normal((40, 3))
    X[33, 2] = -np.inf
    X[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 2"):
        est.partial_fit(X)
    with pytest.raises(ValueError, match="infinity"):
        est.partial_fit(X, sample_weight=np.ones(40))
    # In a row of weight 0 too: the compiled sums see it (0 * inf is NaN),
    # the NumPy path checks X first.
    zero_there = np.ones(40)
    zero_there[33] = 0.0
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 2"):
        est.partial_fit(X, sample_weight=zero_there)
    assert pickle.dumps((est.mean_, est.var_, est.n_samples_seen_)) == before


@pytest.mark.parametrize("params", MODES)
def test_missing_and_constant_features(backend, params):
    X = np.array(
        [
            [np.nan, 3.3, 1.0],
            [np.nan, 3.3, np.nan],
            [np.nan, 3.3, 5.0],
            [np.nan, 3.3, 2.0],
        ]
    )
    est = stream(BatchNormalizer(**params), [X[:2], X[2:]])
    assert np.isnan(est.mean_[0]) and np.isnan(est.var_[0])
    assert est.mean_[1] == 3.3 and est.var_[1] == 0.0 and est.scale_[1] == 1.0
    out = est.transform(X)
    assert np.isnan(out[:, 0]).all()
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_array_equal(np.isnan(out[:, 2]), np.isnan(X[:, 2]))
    # A feature that starts late gets the statistics of its first batch.
    late = np.array([[7.0, 3.3, 1.0], [9.0, 3.3, 2.0]])
    est.partial_fit(late)
    w = 2.0 ** (-1 / params["half_life"]) if "half_life" in params else 1.0
    assert est.mean_[0] == pytest.approx((7.0 * w + 9.0) / (w + 1.0), rel=1e-15)


def test_half_life_survives_underflow_of_old_weights(backend):
    old = np.full((10, 1), -1e6)
    new = np.random.default_rng(4).standard_normal((5000, 1)) + 3.0
    est = stream(BatchNormalizer(half_life=1.0), [old, new])
    w = 2.0 ** -np.arange(5000)[::-1]
    expected = (w * new[:, 0]).sum() / w.sum()
    np.testing.assert_allclose(est.mean_, [expected], rtol=1e-12)


# -- transforms ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "params", [{}, {"clip": 1.5}, {"with_mean": False}, {"with_std": False, "eps": 1.0}]
)
@pytest.mark.parametrize("order", ["C", "F"])
def test_transform_and_inverse_match_the_formula(backend, dtype, params, order):
    rng = np.random.default_rng(5)
    X = np.asarray((1e6 + rng.standard_normal((300, 4)) * [1, 2, 3, 4]), order=order)
    X[7, 1] = np.nan
    est = BatchNormalizer(**params).fit(X)
    center = est.mean_ if est.with_mean else 0.0
    scale = est.scale_ if est.with_std else 1.0
    expected = (X.astype(np.longdouble) - center) / scale
    if "clip" in params:
        expected = np.clip(expected, -1.5, 1.5)
    Xd = np.asarray(X.astype(dtype), order=order)
    out = est.transform(Xd)
    assert out.dtype == dtype
    if dtype == np.float32:
        # float32 precision although the mean is 1e6: the hi + lo subtraction.
        expected = (Xd.astype(np.longdouble) - center) / scale
        if "clip" in params:
            expected = np.clip(expected, -1.5, 1.5)
        np.testing.assert_allclose(out, expected.astype(float), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(out, expected.astype(float), rtol=1e-9, atol=1e-9)
    if "clip" not in params:
        back = est.inverse_transform(out)
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(back, Xd, rtol=rtol)
    # In place with copy=False, the same numbers.
    Y = Xd.copy(order="K")
    assert est.set_params(copy=False).transform(Y) is Y
    np.testing.assert_array_equal(Y, out)


def test_robust_transform_and_inverse(backend):
    rng = np.random.default_rng(6)
    X = rng.standard_t(2, size=(500, 3)) * [1, 10, 100] + 1e5
    est = RobustNormalizer().fit(X)
    expected = (X - np.median(X, axis=0)) / np.subtract(
        *np.percentile(X, [75, 25], axis=0)
    )
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.inverse_transform(est.transform(X)), X, rtol=1e-14)
    X32 = X.astype(np.float32)
    out32 = est.transform(X32)
    assert out32.dtype == np.float32
    expected32 = (X32 - np.median(X, axis=0)) / np.subtract(
        *np.percentile(X, [75, 25], axis=0)
    )
    np.testing.assert_allclose(out32, expected32, rtol=1e-5, atol=1e-5)


# -- layer and group normalization -----------------------------------------------------


def group_reference(X, n_groups, eps, with_mean, with_std):
    X = np.asarray(X, dtype=np.longdouble)
    n, p = X.shape
    G = X.reshape(n, n_groups, p // n_groups)
    present = ~np.isnan(G)
    count = present.sum(axis=2)
    Gz = np.where(present, G, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = Gz.sum(axis=2) / count
        var = (np.where(present, (Gz - mean[..., None]) ** 2, 0)).sum(axis=2) / count
    scale = np.sqrt(var + eps) if with_std else np.ones_like(var)
    scale = np.where(scale == 0, 1, scale)
    center = mean if with_mean else np.zeros_like(mean)
    Z = (G - center[..., None]) / scale[..., None]
    return Z.reshape(n, p).astype(float), center.astype(float), scale.astype(float)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_groups", [1, 3])
@pytest.mark.parametrize(
    "flags", [(True, True), (False, True), (True, False)], ids=["both", "std", "mean"]
)
def test_group_statistics_match_the_reference(backend, dtype, n_groups, flags):
    rng = np.random.default_rng(7)
    X = (rng.standard_normal((50, 12)) * 3 + 1e4).astype(dtype)
    X[3, :4] = np.nan  # an empty group when n_groups == 3
    X[5, 2] = np.nan
    X[6, :] = 2.5  # a constant row
    with_mean, with_std = flags
    Z, stats = _rowstats.normalize_dense_groups(X, n_groups, 0.0, with_mean, with_std)
    ref, center, scale = group_reference(X, n_groups, 0.0, with_mean, with_std)
    assert Z.dtype == dtype
    # Centering values of 1e4 in float64 costs about 1e-12 of a unit.
    tol = 1e-10 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(Z, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(stats.center, center, rtol=1e-14)
    np.testing.assert_allclose(stats.scale, scale, rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(Z), np.isnan(ref))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_and_group_normalizers_agree_across_backends(dtype):
    pytest.importorskip("numba", reason="compares the two backends")
    rng = np.random.default_rng(9)
    X = (rng.standard_normal((200, 16)) * 2 - 3).astype(dtype)
    X[rng.random(X.shape) < 0.05] = np.nan
    outs = {}
    for name in ("numpy", "numba"):
        with config_context(backend=name):
            outs[name] = (
                LayerNormalizer().fit(X).transform(X, return_stats=True),
                GroupNormalizer(n_groups=4, eps=0.0).fit(X).transform(X),
            )
    (layer_a, stats_a), group_a = outs["numpy"]
    (layer_b, stats_b), group_b = outs["numba"]
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(layer_a, layer_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(group_a, group_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(stats_a.center, stats_b.center, rtol=1e-12)
    np.testing.assert_allclose(stats_a.scale, stats_b.scale, rtol=1e-12)


# -- memory ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_peak_memory_of_partial_fit_is_a_small_part_of_the_batch(backend, dtype):
    X = np.random.default_rng(5).standard_normal((100_000, 64)).astype(dtype)
    est = BatchNormalizer().partial_fit(np.ones((10, 64), dtype=dtype))
    est.partial_fit(X[:1000])  # compiles first, under the numba backend
    tracemalloc.start()
    try:
        est.partial_fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 0.1 * X.nbytes, peak / X.nbytes
    assert est.n_samples_seen_ == X.shape[0] + 1010


# -- publication and the column kernels ----------------------------------------------


@pytest.mark.parametrize("params", MODES)
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_publish_gives_fresh_copies_of_the_published_statistics(backend, params, eps):
    X = np.random.default_rng(10).standard_normal((30, 4)) * [1, 0, 3, 5]
    X[:20, 3] = np.nan  # counts differ between features
    mode = BatchNormalizer(**params)._settings()
    state = mode.update(mode.empty(4), X)
    published = mode.publish(state, eps)
    mean, var = mode.mean_var(state)
    np.testing.assert_array_equal(published.mean, mean)
    np.testing.assert_array_equal(published.var, var)
    expected_scale = np.sqrt(var + eps)
    expected_scale[expected_scale == 0] = 1.0
    np.testing.assert_array_equal(published.scale, expected_scale)
    np.testing.assert_array_equal(published.weight, mode.weight(state))
    np.testing.assert_array_equal(published.samples_seen, [30, 30, 30, 10])
    assert published.finite
    published.weight[:] = -1.0  # a fresh copy: the state does not change
    assert (mode.weight(state) >= 0).all()
    empty = mode.publish(mode.empty(2), eps)
    assert empty.samples_seen == 0 and not empty.finite
    assert np.isnan(empty.mean).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_denormalize_columns_undoes_normalize_columns(backend, dtype):
    from sknorm._floats import denormalize_columns, normalize_columns, split_float32

    rng = np.random.default_rng(12)
    center = np.array([1e6, -3.0, 0.0])
    scale = np.array([2.0, 1e-3, 7.0])
    X = (center + rng.standard_normal((50, 3)) * scale).astype(dtype)
    X[3, 1] = np.nan
    hi, lo = split_float32(center) if dtype == np.float32 else (center, None)
    Z = normalize_columns(
        X, np.empty_like(X), hi.astype(dtype), lo, (1 / scale).astype(dtype), None
    )
    back = denormalize_columns(Z, np.empty_like(Z), scale, center)
    assert back.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(back, X, rtol=rtol)
    assert denormalize_columns(Z, Z, None, None) is Z


def test_normalize_columns_reports_infinity_through_on_infinity(backend):
    from sknorm._floats import normalize_columns

    X = np.ones((6, 2))
    reports = []
    out = normalize_columns(
        X,
        np.empty_like(X),
        None,
        None,
        None,
        1.0,
        on_infinity=lambda: reports.append(1),
    )
    assert reports == []
    X[4, 1] = -np.inf
    X[2, 0] = np.nan
    normalize_columns(
        X, out, None, None, None, 1.0, on_infinity=lambda: reports.append(1)
    )
    assert reports == [1]
    np.testing.assert_array_equal(out[4], [1.0, -1.0])  # clipped


@NEEDS_NUMBA
@pytest.mark.parametrize("params", [{}, {"half_life": 40.0}])
def test_the_publication_computed_with_the_update_is_the_published_one(params):
    # The compiled update computes what is published in the same call; the
    # mode hands it out only for the state it was made with, and its cache
    # is not part of the mode's identity.
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((50, 4)), 5 + rng.standard_normal((30, 4))
    with config_context(backend="numba"):
        est = BatchNormalizer(eps=1e-3, **params).partial_fit(X).partial_fit(Y)
        mode = est._checked_settings()
        fresh = type(mode)(**vars(mode)) if vars(mode) else type(mode)()
        assert mode == fresh and hash(mode) == hash(fresh)
        other = mode.update(est._state, X, eps=1e-3)  # kept for `other` only
        published = mode.publish(est._state, 1e-3)  # not `other`: recomputed
    with config_context(backend="numpy"):
        reference = BatchNormalizer(eps=1e-3, **params).partial_fit(X).partial_fit(Y)
        expected = fresh.publish(est._state, 1e-3)
    tol = {"rtol": 1e-12, "atol": 1e-15}
    np.testing.assert_allclose(published.mean, expected.mean, **tol)
    np.testing.assert_allclose(published.scale, expected.scale, **tol)
    for attr in ("mean_", "var_", "scale_", "weight_sum_"):
        np.testing.assert_allclose(getattr(est, attr), getattr(reference, attr), **tol)
    assert est.n_samples_seen_ == reference.n_samples_seen_ == 80
    # The publication kept for `other` was made with eps=1e-3: another eps
    # recomputes it.
    with config_context(backend="numba"):
        other_scale = mode.publish(other, 0.5).scale
    np.testing.assert_allclose(
        other_scale, np.sqrt(fresh.mean_var(other)[1] + 0.5), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_kept_transform_follows_parameter_changes(backend, dtype):
    X = np.random.default_rng(8).standard_normal((40, 3)).astype(dtype) * 4
    est = BatchNormalizer().fit(X)
    unclipped = est.transform(X)
    est.set_params(clip=1.0)
    np.testing.assert_array_equal(est.transform(X), np.clip(unclipped, -1, 1))
    est.set_params(clip=None, with_std=False)
    np.testing.assert_allclose(
        est.transform(X), X - est.mean_.astype(dtype), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "make",
    [
        BatchNormalizer,
        lambda: BatchNormalizer(clip=2.0),
        lambda: RobustNormalizer(sketch_size=128),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_transform_over_many_blocks_finds_infinity_in_any_block(backend, make, dtype):
    # Blocks of _stats.block_rows(64) = 1024 rows: the infinity will be in
    # the third; a NaN in the first and the largest finite value in the
    # second make their blocks suspect without holding one.
    rng = np.random.default_rng(9)
    X = rng.standard_normal((2500, 64)).astype(dtype)
    est = make().fit(X)
    X[5, 3] = np.nan
    X[1500, 7] = np.finfo(dtype).max
    center = getattr(est, "mean_", getattr(est, "center_", None))
    expected = (X - center) / est.scale_
    clip = getattr(est, "clip", None)
    if clip is not None:
        expected = np.clip(expected, -clip, clip)
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-5, atol=1e-5)
    X[2400, 60] = -np.inf
    before = X.copy()
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 60\b"):
        est.transform(X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize(
    "make", [LayerNormalizer, lambda **kw: GroupNormalizer(n_groups=4, **kw)]
)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"with_mean": False},
        {"with_std": False},
        {"with_mean": False, "with_std": False},
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_normalizers_find_infinity_in_their_own_pass(backend, make, params, dtype):
    # 2,500 rows of 64 features: three blocks of 1,024 rows on the NumPy
    # path. A NaN in the first block, the infinity in the last.
    rng = np.random.default_rng(10)
    X = (100 + rng.standard_normal((2500, 64)) * 3).astype(dtype)
    X[3, 5] = np.nan
    est = make(**params).fit(X)
    groups = X.astype(np.float64).reshape(2500, -1, 64 // est._n_groups())
    center = np.nanmean(groups, axis=2, keepdims=True)
    scale = np.sqrt(np.nanvar(groups, axis=2, keepdims=True) + est.eps)
    expected = groups - center if params.get("with_mean", True) else groups
    if params.get("with_std", True):
        expected = expected / scale
    out = est.transform(X)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out, expected.reshape(2500, 64), rtol=tol, atol=tol)
    X[2300, 41] = np.inf
    before = X.copy()
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 41\b"):
        est.transform(X)
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 41\b"):
        est.transform(X, return_stats=True)
    np.testing.assert_array_equal(X, before)
