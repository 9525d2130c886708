"""The fast path for plain ndarrays, and blocked moments, against the general path.

A fitted BatchNormalizer given a 2-D native float32/float64 ndarray of the
fitted width skips ``validate_data``. These tests run every input rule through
both paths (the general one forced by patching ``plain_array``) and require
the same statistics, outputs, errors and warnings.
"""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.preprocessing import StandardScaler

import sknorm._base
from sknorm import BatchNormalizer, _stats

GOOD = np.random.default_rng(0).standard_normal((40, 3)) * [1.0, 10.0, 0.1] + 5.0


def general_path(monkeypatch):
    """Send every input through validate_data, as before the fast path."""
    monkeypatch.setattr(sknorm._base, "plain_array", lambda estimator, X: None)


def state_of(est):
    return (
        est.mean_,
        est.var_,
        est.scale_,
        est.n_samples_seen_,
        est.weight_sum_,
        est.n_features_in_,
    )


def assert_same_state(a, b):
    for x, y in zip(state_of(a), state_of(b), strict=True):
        np.testing.assert_array_equal(x, y)


def outcome(call):
    """What a call did: its result or error, and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("returned", call())
        except Exception as exc:  # compared between the two paths
            result = ("raised", type(exc), str(exc))
    return result, sorted((w.category.__name__, str(w.message)) for w in caught)


def assert_same_outcome(fast, general):
    (f_result, f_warn), (g_result, g_warn) = fast, general
    assert f_result[0] == g_result[0], (f_result, g_result)
    if f_result[0] == "raised":
        assert f_result[1:] == g_result[1:]
    else:
        f_out, g_out = f_result[1], g_result[1]
        if isinstance(f_out, np.ndarray):
            assert f_out.dtype == g_out.dtype
            np.testing.assert_array_equal(f_out, g_out)
    assert f_warn == g_warn


@pytest.fixture
def count_validations(monkeypatch):
    calls = []
    original = sknorm._base.validate_data

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sknorm._base, "validate_data", counting)
    return calls


# -- the fast path is taken, and only for plain arrays ------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_plain_arrays_skip_validate_data(count_validations, dtype, order):
    est = BatchNormalizer().fit(GOOD.astype(dtype))
    assert len(count_validations) == 1
    X = np.asarray(GOOD.astype(dtype), order=order)
    est.partial_fit(X)
    est.transform(X)
    est.inverse_transform(X)
    assert len(count_validations) == 1


@pytest.mark.parametrize(
    "X",
    [
        GOOD.tolist(),
        GOOD.astype(np.int64),
        GOOD.astype(np.float16),
        GOOD.astype(">f8"),
        GOOD[:, :2],
        np.empty((0, 3)),
        np.ma.masked_array(GOOD),
    ],
    ids=["list", "int", "float16", "big-endian", "width", "empty", "subclass"],
)
def test_other_inputs_take_the_general_path(count_validations, X):
    est = BatchNormalizer().fit(GOOD)
    before = len(count_validations)
    try:
        est.transform(X)
    except ValueError:
        pass
    assert len(count_validations) == before + 1


# -- same statistics and outputs ----------------------------------------------------


def batches_of(X, sizes):
    return np.split(X, np.cumsum(sizes)[:-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "params", [{}, {"momentum": 0.3}, {"half_life": 50.0}, {"eps": 1e-3, "clip": 2.0}]
)
@pytest.mark.parametrize("nan", [False, True])
def test_fast_and_general_paths_agree_exactly(monkeypatch, dtype, params, nan):
    rng = np.random.default_rng(1)
    X = (1e4 + rng.standard_normal((3000, 5)) * [1, 10, 100, 1e-3, 5]).astype(dtype)
    if nan:
        X[rng.random(X.shape) < 0.05] = np.nan
    # Batches of one row, small ones and ones of several blocks.
    # The momentum mode refuses 1-row batches; the others stream them.
    sizes = (
        [2, 7, 64, 2, 2500, 427] if "momentum" in params else [1, 7, 64, 1, 2500, 427]
    )
    batches = batches_of(X, sizes)
    with monkeypatch.context() as m:
        general_path(m)
        general = BatchNormalizer(**params)
        for b in batches:
            general.partial_fit(b)
        general_out = general.transform(X)
        general_back = general.inverse_transform(general_out)
    fast = BatchNormalizer(**params)
    for b in batches:
        fast.partial_fit(b)
    assert_same_state(fast, general)
    out = fast.transform(X)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, general_out)
    np.testing.assert_array_equal(fast.inverse_transform(out), general_back)


@pytest.mark.parametrize("params", [{}, {"momentum": 0.5}, {"half_life": 9.0}])
@pytest.mark.parametrize("block_rows", [None, 16])
def test_statistics_do_not_depend_on_memory_layout(monkeypatch, params, block_rows):
    if block_rows is not None:
        monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 5 * block_rows)
    X = np.random.default_rng(8).standard_normal((100, 5)) * [1, 1e3, 1e-3, 7, 1e6]
    by_row = BatchNormalizer(**params).fit(X).partial_fit(X[:40])
    by_column = BatchNormalizer(**params).fit(np.asfortranarray(X))
    by_column.partial_fit(np.asfortranarray(X[:40]))
    assert_same_state(by_row, by_column)
    np.testing.assert_array_equal(
        by_row.transform(X), by_column.transform(np.asfortranarray(X))
    )


def test_fast_stream_matches_longdouble():
    rng = np.random.default_rng(2)
    X = 1e9 + rng.standard_normal((20_000, 4))
    est = BatchNormalizer()
    for b in batches_of(X, [64] * 300 + [800]):
        est.partial_fit(b)
    exact = X.astype(np.longdouble)
    mean = exact.mean(0)
    np.testing.assert_allclose(est.mean_, mean.astype(np.float64), rtol=1e-15)
    var = ((exact - mean) ** 2).mean(0).astype(np.float64)
    np.testing.assert_allclose(est.var_, var, rtol=1e-12)
    # StandardScaler.partial_fit on the same stream is less precise.
    ref = StandardScaler()
    for b in batches_of(X, [64] * 300 + [800]):
        ref.partial_fit(b)
    assert np.max(np.abs(ref.var_ - var) / var) > np.max(np.abs(est.var_ - var) / var)
    assert est.n_samples_seen_ == 20_000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"with_mean": False},
        {"with_std": False},
        {"with_mean": False, "with_std": False},
    ],
)
def test_transform_copy_false_works_in_place(dtype, params):
    X = GOOD.astype(dtype)
    est = BatchNormalizer(copy=False, **params).fit(X)
    expected = BatchNormalizer(**params).fit(X).transform(X)
    Y = X.copy()
    out = est.transform(Y)
    assert out is Y
    np.testing.assert_array_equal(out, expected)
    # Read-only input is copied, never written to.
    Z = X.copy()
    Z.setflags(write=False)
    out = est.transform(Z)
    assert out is not Z
    np.testing.assert_array_equal(Z, X)
    np.testing.assert_array_equal(out, expected)


def test_transform_matches_the_formula_across_blocks(monkeypatch):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 3 * 7)  # 7-row blocks
    X = GOOD
    est = BatchNormalizer(clip=1.5).fit(X)
    expected = np.clip((X - est.mean_) / est.scale_, -1.5, 1.5)
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-14, atol=1e-15)


# -- input rules: errors, warnings, configuration -------------------------------------


def _inf(col, sign=1.0):
    X = GOOD.copy()
    X[17, col] = sign * np.inf
    return X


def _both_infs():
    X = GOOD.copy()
    X[3, 1], X[30, 1] = np.inf, -np.inf
    return X


def _nans():
    X = GOOD.copy()
    X[::4, 0] = np.nan
    return X


INPUTS = {
    "good": GOOD + 1,
    "float32": (GOOD + 1).astype(np.float32),
    "fortran": np.asfortranarray(GOOD + 1),
    "nan": _nans(),
    "inf": _inf(2),
    "-inf": _inf(0, -1.0),
    "inf and -inf": _both_infs(),
    "inf and nan": np.where(np.isnan(_nans()), np.nan, _inf(1)),
    "huge": np.full((4, 3), 1e308),
    "width": np.ones((4, 4)),
    "int": np.arange(12).reshape(4, 3),
    "float16": GOOD.astype(np.float16),
    "one row": GOOD[:1] + 2,
    "empty": np.empty((0, 3)),
    "sparse": sp.csr_matrix(GOOD),
}
METHODS = ["partial_fit", "transform", "inverse_transform"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("assume_finite", [False, True])
def test_input_rules_are_those_of_the_general_path(
    monkeypatch, method, name, assume_finite
):
    def run():
        est = BatchNormalizer().fit(GOOD)
        with sklearn.config_context(assume_finite=assume_finite):
            with np.errstate(all="ignore"):
                result = outcome(lambda: getattr(est, method)(INPUTS[name].copy()))
        if method == "partial_fit" and result[0][0] == "returned":
            result = ((result[0][0], None), result[1])
        return result, state_of(est)

    with monkeypatch.context() as m:
        general_path(m)
        general, general_state = run()
    fast, fast_state = run()
    assert_same_outcome(fast, general)
    for a, b in zip(fast_state, general_state, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["partial_fit", "transform"])
def test_infinity_error_leaves_state_and_input_unchanged(method):
    est = BatchNormalizer(copy=False).fit(GOOD)
    before = pickle.dumps(state_of(est))
    X = _both_infs()
    original = X.copy()
    match = "infinity in feature" if method == "partial_fit" else "contains infinity"
    with warnings.catch_warnings():
        # scikit-learn's own check may warn about inf - inf before it raises.
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=match):
            getattr(est, method)(X)
    assert pickle.dumps(state_of(est)) == before
    np.testing.assert_array_equal(X, original)


def test_infinity_in_a_later_block_is_found(monkeypatch):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 3 * 5)  # 5-row blocks
    est = BatchNormalizer().fit(GOOD)
    before = pickle.dumps(state_of(est))
    with pytest.raises(ValueError, match="infinity in feature"):
        est.partial_fit(_inf(2))
    assert pickle.dumps(state_of(est)) == before
    with pytest.raises(ValueError, match="contains infinity"):
        est.transform(_inf(2))


@pytest.mark.parametrize("weights", [None, "bad"])
def test_error_order_is_kept_with_infinity_and_another_fault(monkeypatch, weights):
    # Infinity and a changed mode (or bad weights): the infinity is reported
    # first, as before the fast path.
    def run():
        est = BatchNormalizer().partial_fit(GOOD)
        if weights is None:
            est.set_params(momentum=0.1)
            return outcome(lambda: est.partial_fit(_inf(1)))
        return outcome(lambda: est.partial_fit(_inf(1), sample_weight=[-1.0] * 40))

    with monkeypatch.context() as m:
        general_path(m)
        general = run()
    fast = run()
    assert_same_outcome(fast, general)
    assert "infinity in feature" in fast[0][2]


def test_plain_array_after_dataframe_fit_warns_as_scikit_learn(monkeypatch):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(GOOD, columns=["a", "b", "c"])
    est = BatchNormalizer().fit(df)
    for method in METHODS:
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            getattr(est, method)(GOOD)
    ref = StandardScaler().fit(df)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        ref.transform(GOOD)


def test_parameters_are_validated_on_every_call_on_both_paths(monkeypatch):
    def run(skip):
        est = BatchNormalizer().partial_fit(GOOD)
        est.set_params(copy="no")  # invalid: the next call refuses it
        with sklearn.config_context(skip_parameter_validation=skip):
            partial = outcome(lambda: est.partial_fit(GOOD + 1))
            fit_result = outcome(lambda: BatchNormalizer(copy="no").fit(GOOD))
        return est, partial, fit_result

    for skip in (False, True):
        with monkeypatch.context() as m:
            general_path(m)
            general, general_partial, general_fit = run(skip)
        fast, fast_partial, fast_fit = run(skip)
        assert_same_state(fast, general)
        assert_same_outcome(fast_partial, general_partial)
        assert_same_outcome(fast_fit, general_fit)
        assert (fast_partial[0][0] == "raised") == (not skip)
        assert (fast_fit[0][0] == "raised") == (not skip)
        # A refused call learned nothing.
        assert fast.n_samples_seen_ == (GOOD.shape[0] * (1 if not skip else 2))


# -- derived values are never stale; pickles stay small ---------------------------


def expected_transform(est, X):
    return (X - est.mean_) / est.scale_


def test_transform_follows_every_change_of_the_statistics():
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((50, 3)), 3 + 2 * rng.standard_normal((70, 3))
    est = BatchNormalizer().fit(A)
    np.testing.assert_allclose(est.transform(B), expected_transform(est, B))
    est.partial_fit(B)
    np.testing.assert_allclose(est.transform(B), expected_transform(est, B))
    est.merge(BatchNormalizer().fit(B * 5))
    np.testing.assert_allclose(est.transform(B), expected_transform(est, B))
    est.set_params(eps=4.0).partial_fit(A)
    np.testing.assert_allclose(est.scale_, np.sqrt(est.var_ + 4.0))
    np.testing.assert_allclose(est.transform(B), expected_transform(est, B))
    est.set_params(with_mean=False)
    np.testing.assert_allclose(est.transform(B), B / est.scale_)
    est.set_params(with_mean=True)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.transform(B), est.transform(B))
    est.fit(B)
    np.testing.assert_allclose(est.transform(A), expected_transform(est, A))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_remembered_constants_follow_reassigned_attributes(dtype):
    X = GOOD.astype(dtype)
    est = BatchNormalizer().fit(GOOD)
    est.transform(X)  # remembers 1 / scale_ and the split of mean_
    est.transform(X.astype(np.float64 if dtype == np.float32 else np.float32))
    est.mean_ = est.mean_ + 1.0
    est.scale_ = est.scale_ * 2.0
    expected = BatchNormalizer().fit(GOOD).transform(X - 1.0) / 2.0
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-5, atol=1e-6)


def test_remembered_constants_are_not_pickled():
    est = BatchNormalizer().fit(GOOD)
    size = len(pickle.dumps(est))
    est.transform(GOOD)
    est.transform(GOOD.astype(np.float32))
    assert len(pickle.dumps(est)) == size
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.transform(GOOD), est.transform(GOOD))


def test_transform_does_not_change_the_estimator():
    est = BatchNormalizer().fit(GOOD)
    before = dict(est.__dict__)
    est.transform(GOOD.astype(np.float32))
    est.transform(GOOD)
    assert est.__dict__.keys() == before.keys()
    assert all(est.__dict__[k] is v for k, v in before.items())


def test_pickle_size_does_not_grow_with_the_batch():
    small = BatchNormalizer().fit(np.random.default_rng(4).standard_normal((10, 64)))
    large = BatchNormalizer().fit(
        np.random.default_rng(4).standard_normal((100_000, 64))
    )
    assert len(pickle.dumps(large)) <= len(pickle.dumps(small)) + 64
    assert len(pickle.dumps(large)) < 16_000


# -- memory and blocked moments ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_peak_memory_of_partial_fit_is_a_small_part_of_the_batch(dtype):
    X = np.random.default_rng(5).standard_normal((100_000, 64)).astype(dtype)
    first = np.ones((10, 64), dtype=dtype)
    est = BatchNormalizer().partial_fit(first)
    tracemalloc.start()
    try:
        est.partial_fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 0.1 * X.nbytes, peak / X.nbytes
    # The statistics are those of all the rows.
    mean = (10.0 + X.sum(axis=0, dtype=np.float64)) / (X.shape[0] + 10)
    np.testing.assert_allclose(est.mean_, mean, rtol=1e-9, atol=1e-12)
    assert est.n_samples_seen_ == X.shape[0] + 10


def reference_moments(X, w):
    X = np.asarray(X, dtype=np.longdouble)
    w = np.asarray(w, dtype=np.longdouble)
    present = ~np.isnan(X)
    W = (w[:, None] * present).sum(axis=0)
    Xz = np.where(present, X, 0)
    mean = (w[:, None] * Xz).sum(axis=0) / W
    var = (w[:, None] * np.where(present, (Xz - mean) ** 2, 0)).sum(axis=0) / W
    return W.astype(float), mean.astype(float), var.astype(float)


@pytest.mark.parametrize("rows", [1, 4, 9, 1000])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_blocked_moments_equal_the_reference(monkeypatch, rows, weighted, nan):
    monkeypatch.setattr(_stats, "_BLOCK_BYTES", 8 * 4 * rows)
    rng = np.random.default_rng(rows)
    X = 1e6 + rng.standard_normal((101, 4)) * [1, 1e-3, 1e3, 7]
    if nan:
        X[rng.random(X.shape) < 0.1] = np.nan
        X[60:, 3] = np.nan  # a feature missing from the later blocks
    w = rng.uniform(0, 3, 101) if weighted else np.ones(101)
    shift = np.full(4, 1e6)
    calls = []
    moments, count = _stats.batch_moments(
        X, shift, w if weighted else None, on_nonfinite=lambda: calls.append(1)
    )
    W, mean, var = reference_moments(X, w)
    np.testing.assert_allclose(moments.weight, W, rtol=1e-13)
    np.testing.assert_allclose(moments.mean + shift, mean, rtol=1e-14)
    np.testing.assert_allclose(moments.var, var, rtol=1e-11)
    np.testing.assert_array_equal(count, (~np.isnan(X)).sum(axis=0))
    assert moments.weight.shape == count.shape == (4,)
    # on_nonfinite is called once per batch, and only for a batch with NaN.
    assert len(calls) == (1 if nan else 0)


def test_one_block_shortcut_equals_the_general_update():
    rng = np.random.default_rng(6)
    state = _stats.update_exact(_stats.empty_stream_state(3), rng.normal(size=(5, 3)))
    X = rng.normal(size=(64, 3)) * 3 + 1
    short = _stats._update_exact_one_block(state, X)
    general = _stats._absorb(state, X, None)
    assert short is not None
    for a, b in zip(short, general, strict=True):
        for x, y in zip(
            a if isinstance(a, tuple) else (a,),
            b if isinstance(b, tuple) else (b,),
            strict=True,
        ):
            np.testing.assert_array_equal(x, y)
    # Not taken when there is something the general update must handle.
    X[0, 0] = np.nan
    assert _stats._update_exact_one_block(state, X) is None


# -- DataFrames of the fitted columns take the array path -------------------------


def _frames():
    """(name, make) pairs: each make(library, X) builds a DataFrame variant."""
    cols = ["a", "b", "c"]

    def same(lib, X):
        return (
            lib.DataFrame(X, columns=cols)
            if lib.__name__ == "pandas"
            else (lib.DataFrame(X, schema=cols))
        )

    def renamed(lib, X):
        return (
            same(lib, X).rename({"c": "z"} if lib.__name__ == "polars" else None)
            if (lib.__name__ == "polars")
            else same(lib, X).rename(columns={"c": "z"})
        )

    def reordered(lib, X):
        return same(lib, X)[["b", "a", "c"]]

    def float32(lib, X):
        return same(lib, X.astype(np.float32))

    def with_int(lib, X):
        frame = same(lib, X)
        if lib.__name__ == "pandas":
            return frame.assign(b=np.arange(len(X)))
        return frame.with_columns(lib.Series("b", np.arange(len(X))))

    def with_nan(lib, X):
        X = X.copy()
        X[1, 0] = np.nan
        return same(lib, X)

    def with_inf(lib, X):
        X = X.copy()
        X[2, 2] = np.inf
        return same(lib, X)

    def empty(lib, X):
        return same(lib, X[:0])

    return {
        "same": same,
        "renamed": renamed,
        "reordered": reordered,
        "float32": float32,
        "int column": with_int,
        "nan": with_nan,
        "inf": with_inf,
        "empty": empty,
    }


FRAMES = _frames()


@pytest.mark.parametrize("method", ["partial_fit", "transform", "inverse_transform"])
@pytest.mark.parametrize("variant", list(FRAMES))
@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_dataframes_take_the_same_rules_on_both_paths(
    monkeypatch, library, variant, method
):
    lib = pytest.importorskip(library)
    X = GOOD[:10]

    def run():
        est = BatchNormalizer().fit(FRAMES["same"](lib, GOOD))
        frame = FRAMES[variant](lib, X)
        result = outcome(lambda: getattr(est, method)(frame))
        return est, result

    with monkeypatch.context() as m:
        general_path(m)
        general, general_result = run()
    fast, fast_result = run()
    assert_same_state(fast, general)
    if library == "polars" and variant == "float32" and method != "partial_fit":
        # scikit-learn turns a float32 polars frame into float64; sknorm keeps
        # float32 in, float32 out, as for every other float32 input.
        assert fast_result[0][1].dtype == np.float32
        np.testing.assert_allclose(
            fast_result[0][1], general_result[0][1], rtol=1e-6, atol=1e-6
        )
    else:
        assert_same_outcome(fast_result, general_result)


def test_pandas_frame_without_copy_on_write_view_is_not_changed():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(GOOD.copy(), columns=["a", "b", "c"])
    before = frame.copy()
    est = BatchNormalizer().fit(frame)
    est.transform(frame)
    est.partial_fit(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_all_sparse_pandas_frame_gives_what_the_general_path_gives(monkeypatch):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(GOOD, columns=["a", "b", "c"]).astype(
        pd.SparseDtype("float64", 0.0)
    )

    def run():
        est = BatchNormalizer(with_mean=False).fit(frame)
        return outcome(lambda: est.transform(frame))

    with monkeypatch.context() as m:
        general_path(m)
        general = run()
    assert_same_outcome(run(), general)
