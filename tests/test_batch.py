"""BatchNormalizer in exact mode: numbers, inputs, errors, scikit-learn integration."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import clone
from sklearn.preprocessing import StandardScaler

from sknorm import BatchNormalizer


def stream(est, batches, weights=None):
    for i, batch in enumerate(batches):
        w = None if weights is None else weights[i]
        est.partial_fit(batch, sample_weight=w)
    return est


def split_at(X, cuts):
    return np.split(X, sorted(set(cuts)))


# -- exactness ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120),
    cuts=st.lists(st.integers(0, 120), max_size=12),
    seed=st.integers(0, 2**32 - 1),
    offset=st.sampled_from([0.0, 1e3, -1e8]),
)
def test_any_partition_equals_standard_scaler(n, cuts, seed, offset):
    rng = np.random.default_rng(seed)
    X = offset + rng.standard_normal((n, 4)) * [1.0, 10.0, 1e-3, 1e4]
    batches = [b for b in split_at(X, [c for c in cuts if c < n]) if len(b)]
    est = stream(BatchNormalizer(), batches)
    ref = StandardScaler().fit(X)
    # A mean near 0 is known to rtol 1e-12 of the spread, not of itself.
    tolerance = 1e-12 * (np.abs(ref.mean_) + np.sqrt(ref.var_))
    assert np.all(np.abs(est.mean_ - ref.mean_) <= tolerance)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-12, atol=1e-300)
    assert est.n_samples_seen_ == n


def test_one_row_batches_equal_one_shot_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3)) * 5 + 2
    est = stream(BatchNormalizer(), [row[None, :] for row in X])
    ref = BatchNormalizer().fit(X)
    np.testing.assert_allclose(est.mean_, ref.mean_, rtol=1e-13)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-12)
    # The output is in units of the spread: a value near 0 (x near the mean)
    # is known to 1e-12 of it, not of itself (the means differ by a rounding).
    np.testing.assert_allclose(
        est.transform(X), ref.transform(X), rtol=1e-12, atol=1e-12
    )


def _exact_var(chunks):
    """Two-pass variance in longdouble over a stream given as a chunk factory."""
    total = None
    n = 0
    for c in chunks():
        s = c.astype(np.longdouble).sum(axis=0)
        total = s if total is None else total + s
        n += c.shape[0]
    mean = total / n
    m2 = sum(((c.astype(np.longdouble) - mean) ** 2).sum(axis=0) for c in chunks())
    return (m2 / n).astype(np.float64)


@pytest.mark.parametrize(
    "dtype, offset, n_rows, bound",
    [
        # The figures the issue sets: StandardScaler.partial_fit reaches 1.4e-8 here.
        (np.float64, 1e9, 1_000_000, 1e-12),
        # StandardScaler.partial_fit gets 1.7e-12 on this stream and a
        # float64 running sum 1e-4 (test below): the bound tells them apart.
        (np.float32, 1e6, 1_000_000, 1e-13),
    ],
)
def test_stream_is_as_precise_as_a_one_shot_fit(dtype, offset, n_rows, bound):
    n_features, batch = 64, 64

    def chunks():
        rng = np.random.default_rng(42)
        for _ in range(n_rows // 65536 + 1):
            yield (offset + rng.standard_normal((65536, n_features))).astype(dtype)

    X = np.concatenate(list(chunks()))[:n_rows]
    est = BatchNormalizer()
    for start in range(0, n_rows, batch):
        est.partial_fit(X[start : start + batch])
    var_ref = _exact_var(lambda: iter([X]))
    rel_err = np.max(np.abs(est.var_ - var_ref) / var_ref)
    assert rel_err < bound, rel_err
    assert est.var_.dtype == np.float64


def test_precision_reference_would_catch_naive_merging():
    # The same stream through StandardScaler.partial_fit misses the bound,
    # so the test above can fail.
    rng = np.random.default_rng(42)
    X = 1e9 + rng.standard_normal((64 * 500, 8))
    ref = StandardScaler()
    for start in range(0, X.shape[0], 64):
        ref.partial_fit(X[start : start + 64])
    var_ref = _exact_var(lambda: iter([X]))
    assert np.max(np.abs(ref.var_ - var_ref) / var_ref) > 1e-12
    est = stream(BatchNormalizer(), np.split(X, 500))
    assert np.max(np.abs(est.var_ - var_ref) / var_ref) < 1e-13


def test_float32_precision_reference_would_catch_float64_accumulation():
    # float32 data accumulated in float64 is not enough: StandardScaler's
    # partial_fit and a float64 running sum of squares both miss the 1e-13
    # bound that the float32 stream above is held to.
    rng = np.random.default_rng(7)
    X = (1e6 + rng.standard_normal((64 * 2000, 8))).astype(np.float32)
    var_ref = _exact_var(lambda: iter([X]))
    ref = StandardScaler()
    total = np.zeros(8)
    total_sq = np.zeros(8)
    for start in range(0, X.shape[0], 64):
        batch = X[start : start + 64]
        ref.partial_fit(batch)
        total += batch.sum(axis=0, dtype=np.float64)
        total_sq += np.square(batch, dtype=np.float64).sum(axis=0)
    n = X.shape[0]
    naive = total_sq / n - (total / n) ** 2
    assert np.max(np.abs(ref.var_ - var_ref) / var_ref) > 1e-13
    assert np.max(np.abs(naive - var_ref) / var_ref) > 1e-13
    est = stream(BatchNormalizer(), np.split(X, 2000))
    assert np.max(np.abs(est.var_ - var_ref) / var_ref) < 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_statistics_are_float64(dtype):
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(dtype)
    est = BatchNormalizer().fit(X)
    assert est.mean_.dtype == est.var_.dtype == est.scale_.dtype == np.float64
    assert est.transform(X).dtype == dtype
    assert est.inverse_transform(est.transform(X)).dtype == dtype


def test_float32_transform_is_accurate_for_large_means():
    rng = np.random.default_rng(0)
    X = (1e6 + rng.standard_normal((1000, 4))).astype(np.float32)
    est = BatchNormalizer().fit(X)
    exact = (X.astype(np.float64) - est.mean_) / est.scale_
    # Within a few float32 rounding steps of the exact result.
    np.testing.assert_allclose(est.transform(X), exact, atol=4e-7 * 4)
    naive = (X - est.mean_.astype(np.float32)) / est.scale_.astype(np.float32)
    assert np.max(np.abs(naive - exact)) > np.max(np.abs(est.transform(X) - exact))


def test_integers_become_float64():
    X = np.arange(12).reshape(6, 2)
    assert BatchNormalizer().fit_transform(X).dtype == np.float64


# -- weights, NaN, constants ------------------------------------------------------


def test_sample_weight_equals_standard_scaler():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 3)) * [1, 100, 0.01] + 7
    w = rng.uniform(0, 4, size=90)
    est = BatchNormalizer()
    for idx in np.array_split(np.arange(90), 7):
        est.partial_fit(X[idx], sample_weight=w[idx])
    ref = StandardScaler().fit(X, sample_weight=w)
    np.testing.assert_allclose(est.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-12)
    np.testing.assert_allclose(est.weight_sum_, np.full(3, w.sum()), rtol=1e-13)
    assert est.n_samples_seen_ == 90  # real samples, whatever their weight


def test_nan_is_ignored_in_fit_and_kept_in_transform():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 3))
    X[rng.random((60, 3)) < 0.25] = np.nan
    est = stream(BatchNormalizer(), np.array_split(X, 5))
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(est.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-12)
    np.testing.assert_array_equal(est.n_samples_seen_, (~np.isnan(X)).sum(axis=0))
    assert est.n_samples_seen_.dtype == np.int64
    Xt = est.transform(X)
    np.testing.assert_array_equal(np.isnan(Xt), np.isnan(X))


def test_constant_feature_gets_scale_one_and_eps_is_added():
    X = np.column_stack([np.full(10, 0.1), np.arange(10.0)])
    est = stream(BatchNormalizer(), np.array_split(X, 3))
    assert est.var_[0] == 0.0 and est.scale_[0] == 1.0
    np.testing.assert_array_equal(est.transform(X)[:, 0], 0.0)
    est_eps = BatchNormalizer(eps=1e-2).fit(X)
    np.testing.assert_allclose(est_eps.scale_, np.sqrt(est_eps.var_ + 1e-2))


def test_feature_never_seen_has_nan_statistics():
    X = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    est = BatchNormalizer().fit(X)
    assert np.isnan(est.mean_[0]) and np.isnan(est.scale_[0])
    assert np.isnan(est.transform([[5.0, 1.0]])[0, 0])
    np.testing.assert_array_equal(est.n_samples_seen_, [0, 2])


@pytest.mark.parametrize(
    "params, mean_none, var_none",
    [
        ({}, False, False),
        ({"with_mean": False}, False, False),
        ({"with_std": False}, False, True),
        ({"with_mean": False, "with_std": False}, True, True),
    ],
)
def test_attributes_are_none_as_in_standard_scaler(params, mean_none, var_none):
    X = np.random.default_rng(0).standard_normal((10, 2))
    est = BatchNormalizer(**params).fit(X)
    ref = StandardScaler(**params).fit(X)
    assert (est.mean_ is None) == mean_none == (ref.mean_ is None)
    assert (est.var_ is None) == var_none == (ref.var_ is None)
    assert (est.scale_ is None) == var_none
    np.testing.assert_allclose(est.transform(X), ref.transform(X), rtol=1e-12)


def test_inverse_transform_round_trips():
    X = np.random.default_rng(5).standard_normal((30, 4)) * 50 + 1e4
    est = BatchNormalizer().fit(X)
    np.testing.assert_allclose(est.inverse_transform(est.transform(X)), X, rtol=1e-14)


def test_copy_false_works_in_place():
    X = np.random.default_rng(5).standard_normal((30, 4))
    est = BatchNormalizer(copy=False).fit(X)
    expected = (X - est.mean_) / est.scale_
    out = est.transform(X)
    assert out is X
    np.testing.assert_allclose(X, expected)
    # The copy argument overrides the parameter.
    Y = np.ones((2, 4))
    assert est.transform(Y, copy=True) is not Y


# -- sparse -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_keeps_format_and_matches_dense(fmt):
    X = sp.random(80, 5, density=0.2, format=fmt, random_state=0) * 10
    est = BatchNormalizer(with_mean=False)
    for start in range(0, 80, 16):
        est.partial_fit(X[start : start + 16])
    ref = StandardScaler(with_mean=False).fit(X.toarray())
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-12)
    Xt = est.transform(X)
    assert sp.issparse(Xt) and Xt.format == fmt and Xt.nnz == X.nnz
    np.testing.assert_allclose(Xt.toarray(), ref.transform(X.toarray()), rtol=1e-12)
    np.testing.assert_allclose(est.inverse_transform(Xt).toarray(), X.toarray())


def test_sparse_with_mean_raises_and_names_the_fix():
    X = sp.random(10, 3, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="with_mean=False"):
        BatchNormalizer().fit(X)
    dense = BatchNormalizer().fit(X.toarray())
    with pytest.raises(ValueError, match="with_mean=False"):
        dense.transform(X)


# -- errors: clear, and nothing lost ---------------------------------------------


def _state(est):
    return pickle.dumps(
        (est.mean_, est.var_, est.scale_, est.n_samples_seen_, est.weight_sum_)
    )


GOOD = np.arange(12.0).reshape(4, 3)


@pytest.mark.parametrize(
    "X, kwargs, error, match",
    [
        (np.array([[1.0, np.inf, 2.0]]), {}, ValueError, "infinity in feature"),
        (np.array([[1.0, -np.inf, 2.0]]), {}, ValueError, "np.nan_to_num"),
        (np.ones((2, 4)), {}, ValueError, "4 features, but BatchNormalizer"),
        (np.ones((2, 3)), {"sample_weight": [1.0, -1.0]}, ValueError, "negative"),
        (np.ones((2, 3)), {"sample_weight": [1.0, np.nan]}, ValueError, "NaN"),
        (np.ones((2, 3)), {"sample_weight": [1.0]}, ValueError, "one weight per row"),
        (np.ones((2, 3)), {"sample_weight": ["a", "b"]}, TypeError, "real numbers"),
        (np.array([["a", "b", "c"]]), {}, ValueError, "convert string to float"),
        (np.empty((0, 3)), {}, ValueError, "0 sample"),
        (np.ones(3), {}, ValueError, "Reshape your data"),
        (np.ones((2, 3), dtype=complex), {}, ValueError, "Complex data"),
    ],
)
def test_bad_batch_raises_and_leaves_state_unchanged(X, kwargs, error, match):
    est = BatchNormalizer().partial_fit(GOOD)
    before = _state(est)
    with pytest.raises(error, match=match):
        est.partial_fit(X, **kwargs)
    assert _state(est) == before
    # The stream goes on as if the bad batch never came.
    est.partial_fit(GOOD + 1)
    ref = BatchNormalizer().fit(np.vstack([GOOD, GOOD + 1]))
    np.testing.assert_allclose(est.mean_, ref.mean_)
    np.testing.assert_allclose(est.var_, ref.var_)


def test_failed_first_partial_fit_leaves_estimator_unfitted():
    est = BatchNormalizer()
    with pytest.raises(ValueError, match="infinity"):
        est.partial_fit(np.array([[1.0, np.inf]]))
    assert not hasattr(est, "n_features_in_")
    est.partial_fit(np.ones((2, 3)))
    assert est.n_features_in_ == 3


def test_failed_fit_keeps_previous_fit():
    est = BatchNormalizer().fit(GOOD)
    before = _state(est)
    with pytest.raises(ValueError, match="All sample weights are zero"):
        est.fit(GOOD * 3, sample_weight=np.zeros(4))
    assert _state(est) == before


def test_wrong_feature_names_raise():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(GOOD, columns=["a", "b", "c"])
    est = BatchNormalizer().partial_fit(df)
    before = _state(est)
    with pytest.raises(ValueError, match="feature names"):
        est.partial_fit(df.rename(columns={"a": "z"}))
    assert _state(est) == before


def test_invalid_parameter_is_reported():
    with pytest.raises(ValueError, match="'eps' parameter"):
        BatchNormalizer(eps=-1.0).fit(GOOD)


# -- scikit-learn integration -------------------------------------------------------


def test_pickle_mid_stream_continues_identically():
    rng = np.random.default_rng(6)
    batches = [rng.standard_normal((20, 3)) for _ in range(6)]
    uninterrupted = stream(BatchNormalizer(), batches)
    first = stream(BatchNormalizer(), batches[:3])
    resumed = stream(pickle.loads(pickle.dumps(first)), batches[3:])
    np.testing.assert_array_equal(resumed.mean_, uninterrupted.mean_)
    np.testing.assert_array_equal(resumed.var_, uninterrupted.var_)


def test_clone_is_unfitted_with_same_params():
    est = BatchNormalizer(eps=1e-3, with_mean=False).fit(GOOD)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "mean_")


def test_feature_names_out_and_pandas_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(GOOD, columns=["a", "b", "c"])
    est = BatchNormalizer().set_output(transform="pandas").fit(df)
    out = est.transform(df)
    assert list(out.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(out.to_numpy(), StandardScaler().fit_transform(GOOD))
    np.testing.assert_array_equal(est.get_feature_names_out(), ["a", "b", "c"])
    assert list(BatchNormalizer().fit(GOOD).get_feature_names_out()) == [
        "x0",
        "x1",
        "x2",
    ]


def test_polars_output():
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1.0, 2.0, 4.0], "b": [10.0, 0.0, 5.0]})
    out = BatchNormalizer().set_output(transform="polars").fit_transform(df)
    assert isinstance(out, pl.DataFrame) and out.columns == ["a", "b"]
    np.testing.assert_allclose(
        out.to_numpy(), StandardScaler().fit_transform(df.to_numpy())
    )


# The MLP without normalization does not converge in 300 iterations: that is
# the point of the comparison, not a problem of the test.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_in_pipeline_with_mlp():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    mlp = MLPClassifier(hidden_layer_sizes=(20,), max_iter=300, random_state=0)
    with_norm = make_pipeline(BatchNormalizer(), clone(mlp)).fit(X_train, y_train)
    without = clone(mlp).fit(X_train, y_train)
    assert with_norm.score(X_test, y_test) > 0.95
    assert with_norm.score(X_test, y_test) > without.score(X_test, y_test)
