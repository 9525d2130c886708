"""Tests for LayerNormalizer, GroupNormalizer and invert_group_normalization."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import sknorm
from sknorm import GroupNormalizer, LayerNormalizer, invert_group_normalization
from sknorm._rowstats import GroupStats

# scikit-learn's checks feed widths such as 3 and 5 that only one group
# divides, so GroupNormalizer with several groups is checked by the tests below
# (pickling, dtypes, pipelines, feature counts) rather than by them.
CHECKED_ESTIMATORS = [
    LayerNormalizer(),
    LayerNormalizer(with_mean=False),
    LayerNormalizer(with_std=False, eps=0.0),
    LayerNormalizer(with_mean=False, with_std=False),
    GroupNormalizer(),
    GroupNormalizer(n_groups=1, with_mean=False, eps=0.0),
]


@parametrize_with_checks(CHECKED_ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- references ---------------------------------------------------------------


def reference(X, n_groups, eps, with_mean=True, with_std=True):
    """Brute force: one group of one row at a time, in long double, NaN-aware."""
    X = np.asarray(X, dtype=np.longdouble)
    n_samples, n_features = X.shape
    size = n_features // n_groups
    out = np.empty_like(X)
    for i in range(n_samples):
        for g in range(n_groups):
            cols = slice(g * size, (g + 1) * size)
            values = X[i, cols]
            kept = values[~np.isnan(values)]
            if kept.size == 0:
                out[i, cols] = np.nan
                continue
            mean = sum(kept) / kept.size
            var = sum((v - mean) ** 2 for v in kept) / kept.size
            center = mean if with_mean else 0
            scale = np.sqrt(var + eps) if with_std else 1
            out[i, cols] = (values - center) / (scale if scale != 0 else 1)
    return out.astype(np.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- numerics -----------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator, n_groups",
    [
        (LayerNormalizer(), 1),
        (GroupNormalizer(1), 1),
        (GroupNormalizer(2), 2),
        (GroupNormalizer(3), 3),
        (GroupNormalizer(6), 6),
    ],
)
@pytest.mark.parametrize(
    "with_mean, with_std", [(True, True), (False, True), (True, False)]
)
def test_matches_brute_force(rng, estimator, n_groups, with_mean, with_std):
    X = rng.normal(5.0, 3.0, size=(15, 12)) * rng.uniform(0.1, 10, size=(15, 1))
    norm = clone(estimator).set_params(with_mean=with_mean, with_std=with_std)
    X_tr = norm.fit(X).transform(X)
    expected = reference(X, n_groups, 1e-5, with_mean, with_std)
    np.testing.assert_allclose(X_tr, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_groups", [1, 3])
def test_nan_ignored_by_statistics_and_kept(rng, n_groups):
    X = rng.normal(size=(10, 6))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[0, :2] = np.nan  # an all-NaN group when there are three groups
    X[1, :] = np.nan  # an all-NaN row
    norm = GroupNormalizer(n_groups, eps=0.0).fit(X)
    X_tr = norm.transform(X)  # pytest turns any RuntimeWarning into an error
    np.testing.assert_array_equal(np.isnan(X_tr), np.isnan(X))
    np.testing.assert_allclose(X_tr, reference(X, n_groups, 0.0), rtol=1e-12)


def test_output_of_a_row_is_standardized(rng):
    # Independent of any reference implementation: the defining property.
    X = rng.normal(100.0, 7.0, size=(5, 40))
    X_tr = LayerNormalizer(eps=0.0).fit_transform(X)
    np.testing.assert_allclose(X_tr.mean(axis=1), 0.0, atol=1e-13)
    np.testing.assert_allclose(X_tr.std(axis=1), 1.0, rtol=1e-13)


@pytest.mark.parametrize("with_mean", [True, False])
def test_constant_group_with_zero_eps_is_divided_by_one(with_mean):
    X = np.array([[4.0, 4.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    norm = GroupNormalizer(2, eps=0.0, with_mean=with_mean).fit(X)
    X_tr, stats = norm.transform(X, return_stats=True)
    assert np.all(np.isfinite(X_tr))
    np.testing.assert_array_equal(stats.scale, [[1.0, 2.0], [1.0, 1.0]])
    if with_mean:
        np.testing.assert_array_equal(X_tr, [[0.0, 0.0, -1.0, 1.0], [0.0] * 4])
    else:
        np.testing.assert_array_equal(X_tr, [[4.0, 4.0, 0.5, 2.5], [0.0] * 4])


def test_eps_regularizes_small_variance():
    X = np.array([[1.0, 1.0 + 1e-4]])  # variance 2.5e-9
    expected = (X - X.mean()) / np.sqrt(X.var() + 1e-5)
    np.testing.assert_allclose(
        LayerNormalizer(eps=1e-5).fit_transform(X), expected, rtol=1e-9
    )


def test_large_offset_loses_no_digits():
    # Would fail with E[x**2] - E[x]**2, which cancels every digit of a
    # unit variance at an offset of 1e9 (the squares are ~1e18).
    rng = np.random.default_rng(1)
    X = 1e9 + rng.standard_normal((20, 64))
    X_tr = LayerNormalizer(eps=0.0).fit_transform(X)
    Xl = X.astype(np.longdouble)
    mean = Xl.mean(axis=1, keepdims=True)
    expected = (Xl - mean) / np.sqrt(((Xl - mean) ** 2).mean(axis=1, keepdims=True))
    assert np.max(np.abs(X_tr - expected.astype(np.float64))) < 1e-6


@pytest.mark.parametrize("sparse", [False, True])
def test_float32_in_float32_out_accurate(rng, sparse):
    X = (1e4 + rng.normal(size=(30, 8))).astype(np.float32)
    norm = GroupNormalizer(2, with_mean=not sparse)
    X_in = sp.csr_matrix(X) if sparse else X
    X_tr = norm.fit(X_in).transform(X_in)
    assert X_tr.dtype == np.float32
    expected = reference(X, 2, 1e-5, with_mean=not sparse).astype(np.float32)
    dense = X_tr.toarray() if sparse else X_tr
    # Within a couple of float32 roundings of the exact result of the float32
    # input; float32 arithmetic throughout would lose the 1e4 offset's digits.
    np.testing.assert_allclose(dense, expected, rtol=3e-7, atol=3e-7)


def test_integers_become_float64():
    X_tr = LayerNormalizer().fit_transform(np.array([[1, 2, 3], [4, 6, 8]]))
    assert X_tr.dtype == np.float64


@settings(max_examples=50, deadline=None)
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.sampled_from([4, 6, 8])),
        elements=st.floats(-1e3, 1e3),
    ),
    gain=st.floats(0.01, 100.0),
    offset=st.floats(-1e3, 1e3),
)
def test_property_invariant_to_affine_change_of_a_row(X, gain, offset):
    # Layer and group normalization remove a per-sample gain and offset: the
    # invariance is what the users want from it.
    # Nearly constant groups: both sides would be dominated by rounding.
    assume(np.ptp(X.reshape(X.shape[0], 2, -1), axis=2).min() > 1e-3)
    norm = GroupNormalizer(2, eps=0.0).fit(X)
    np.testing.assert_allclose(
        norm.transform(gain * X + offset), norm.transform(X), atol=1e-6
    )


# -- sparse -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_sparse_scaled_keeps_sparsity_and_matches_dense(rng, fmt, container):
    dense = rng.normal(size=(12, 8))
    dense[rng.random(dense.shape) < 0.6] = 0.0
    dense[2, 1] = np.nan  # a stored NaN: missing, kept
    X = container(dense).asformat(fmt)
    norm = GroupNormalizer(4, with_mean=False).fit(X)
    X_tr = norm.transform(X)
    assert sp.issparse(X_tr) and X_tr.format == "csr"
    assert X_tr.nnz == sp.csr_matrix(dense).nnz
    expected = reference(dense, 4, 1e-5, with_mean=False)
    np.testing.assert_allclose(X_tr.toarray(), expected, rtol=1e-12)
    np.testing.assert_array_equal(X_tr.toarray() == 0, dense == 0)


def test_sparse_input_is_not_modified(rng):
    X = sp.csr_matrix(rng.normal(size=(6, 4)) * (rng.random((6, 4)) < 0.5))
    before = X.copy()
    LayerNormalizer(with_mean=False).fit(X).transform(X)
    np.testing.assert_array_equal(X.toarray(), before.toarray())


def test_sparse_with_centering_is_a_clear_error():
    X = sp.csr_matrix(np.eye(4))
    with pytest.raises(ValueError, match="Cannot center sparse data: pass with_mean"):
        LayerNormalizer().fit(X)
    norm = LayerNormalizer(with_mean=False).fit(X)
    norm.set_params(with_mean=True)
    with pytest.raises(TypeError, match="Cannot center sparse data"):
        norm.transform(X)


# -- validation and streaming ---------------------------------------------------


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_n_features_not_divisible_by_n_groups(method):
    norm = GroupNormalizer(4)
    with pytest.raises(
        ValueError,
        match=r"n_features=6, which is not divisible by n_groups=4.*\(1, 2, 3, 6\)",
    ):
        getattr(norm, method)(np.ones((2, 6)))
    assert not hasattr(norm, "n_features_in_")


def test_n_groups_changed_after_fit_is_checked_at_transform():
    norm = GroupNormalizer(2).fit(np.ones((2, 6)))
    norm.set_params(n_groups=4)
    with pytest.raises(ValueError, match="not divisible by n_groups=4"):
        norm.transform(np.ones((2, 6)))


def test_partial_fit_checks_feature_count_and_keeps_state():
    norm = GroupNormalizer(2).partial_fit(np.ones((3, 4)))
    state = dict(norm.__dict__)
    with pytest.raises(ValueError, match="X has 6 features, but GroupNormalizer is"):
        norm.partial_fit(np.ones((3, 6)))
    assert norm.__dict__ == state
    with pytest.raises(ValueError, match="X has 6 features, but GroupNormalizer is"):
        norm.transform(np.ones((3, 6)))
    # fit starts over and may change the width.
    assert norm.fit(np.ones((3, 6))).n_features_in_ == 6


def test_partial_fit_checks_feature_names():
    pd = pytest.importorskip("pandas", reason="feature names need pandas")
    norm = LayerNormalizer().partial_fit(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(ValueError, match="feature names should match"):
        norm.partial_fit(pd.DataFrame({"b": [1.0], "c": [2.0]}))
    np.testing.assert_array_equal(norm.feature_names_in_, ["a", "b"])
    np.testing.assert_array_equal(norm.get_feature_names_out(), ["a", "b"])


@pytest.mark.parametrize("method", ["fit", "partial_fit", "transform"])
def test_infinity_is_a_clear_error(method):
    norm = LayerNormalizer().fit(np.ones((1, 3)))
    X = np.array([[1.0, np.inf, 2.0]])
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 1"):
        getattr(norm, method)(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_groups": 0}, "'n_groups' parameter of GroupNormalizer must be an int"),
        ({"n_groups": 1.5}, "'n_groups' parameter of GroupNormalizer must be an int"),
        ({"eps": -1.0}, "'eps' parameter of GroupNormalizer must be a float"),
        ({"with_mean": "yes"}, "'with_mean' parameter of GroupNormalizer must be"),
    ],
)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_parameters(params, match, method):
    with pytest.raises(InvalidParameterError, match=match):
        getattr(GroupNormalizer(**params), method)(np.ones((2, 4)))


def test_transform_before_fit_is_an_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        LayerNormalizer().transform(np.ones((2, 3)))


def test_rows_are_independent_and_fit_data_does_not_matter(rng):
    X = rng.normal(size=(8, 6))
    a = GroupNormalizer(3).fit(rng.normal(size=(2, 6))).transform(X)
    b = np.vstack([GroupNormalizer(3).fit(X).transform(row[None]) for row in X])
    np.testing.assert_array_equal(a, b)


def test_pickle_and_clone_keep_behaviour(rng):
    X = rng.normal(size=(5, 6))
    norm = GroupNormalizer(3, eps=0.5, with_std=True).fit(X)
    restored = pickle.loads(pickle.dumps(norm))
    np.testing.assert_array_equal(restored.transform(X), norm.transform(X))
    cloned = clone(norm)
    assert cloned.get_params() == norm.get_params()
    assert not hasattr(cloned, "n_features_in_")


def test_set_output_pandas_with_and_without_stats(rng):
    pd = pytest.importorskip("pandas", reason="set_output needs pandas")
    df = pd.DataFrame(rng.normal(size=(4, 4)), columns=list("abcd"))
    norm = GroupNormalizer(2).set_output(transform="pandas").fit(df)
    out = norm.transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list("abcd")
    out, stats = norm.transform(df, return_stats=True)
    assert isinstance(out, pd.DataFrame)
    assert stats.center.shape == (4, 2)
    np.testing.assert_allclose(out.to_numpy(), reference(df.to_numpy(), 2, 1e-5))


def test_in_a_scikit_learn_pipeline(rng):
    X = rng.normal(size=(40, 6)) * rng.uniform(0.1, 10, size=(40, 1))
    y = (X[:, 0] > X[:, 1]).astype(int)
    model = make_pipeline(GroupNormalizer(2), SGDClassifier(random_state=0))
    model.fit(X, y)
    assert model.score(X, y) >= 0.9
    np.testing.assert_array_equal(
        model[:-1].transform(X), GroupNormalizer(2).fit(X).transform(X)
    )


def test_streams_in_a_streaming_pipeline(rng):
    if not hasattr(sknorm, "StreamingPipeline"):
        pytest.skip("StreamingPipeline is not in this version of sknorm")
    X = rng.normal(size=(60, 8)) * rng.uniform(0.1, 10, size=(60, 1))
    y = (X[:, 0] > X[:, 4]).astype(int)
    model = sknorm.make_streaming_pipeline(
        GroupNormalizer(4), SGDClassifier(random_state=0)
    )
    for start in range(0, 60, 20):
        model.partial_fit(X[start : start + 20], y[start : start + 20], classes=[0, 1])
    assert model[0].n_features_in_ == 8
    reference_model = SGDClassifier(random_state=0)
    for start in range(0, 60, 20):
        reference_model.partial_fit(
            reference(X[start : start + 20], 4, 1e-5),
            y[start : start + 20],
            classes=[0, 1],
        )
    np.testing.assert_allclose(model[-1].coef_, reference_model.coef_, rtol=1e-10)
    with pytest.raises(ValueError, match="X has 6 features"):
        model.partial_fit(X[:5, :6], y[:5])


# -- inverse ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "with_mean, with_std", [(True, True), (False, True), (True, False)]
)
def test_invert_round_trip_dense(rng, dtype, with_mean, with_std):
    X = rng.normal(3.0, 2.0, size=(10, 6)).astype(dtype)
    X[3, 4] = np.nan
    norm = GroupNormalizer(3, with_mean=with_mean, with_std=with_std).fit(X)
    X_tr, stats = norm.transform(X, return_stats=True)
    assert isinstance(stats, GroupStats)
    assert stats.center.shape == stats.scale.shape == (10, 3)
    back = invert_group_normalization(X_tr, stats)
    assert back.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(back, X, rtol=rtol, atol=rtol)


def test_invert_round_trip_sparse_and_plain_tuple(rng):
    X = sp.random(8, 6, density=0.4, format="csr", random_state=1)
    X_tr, stats = (
        GroupNormalizer(2, with_mean=False).fit(X).transform(X, return_stats=True)
    )
    back = invert_group_normalization(X_tr, tuple(stats))
    assert sp.issparse(back)
    np.testing.assert_allclose(back.toarray(), X.toarray(), rtol=1e-13)


def test_invert_errors(rng):
    X = rng.normal(size=(4, 6))
    X_tr, stats = GroupNormalizer(2).fit(X).transform(X, return_stats=True)
    with pytest.raises(TypeError, match="stats must be the \\(center, scale\\) pair"):
        invert_group_normalization(X_tr, stats.center)
    with pytest.raises(ValueError, match="stats do not match X_tr of shape \\(3, 6\\)"):
        invert_group_normalization(X_tr[:3], stats)
    with pytest.raises(ValueError, match="n_groups dividing 5"):
        invert_group_normalization(X_tr[:, :5], stats)
    with pytest.raises(ValueError, match="Cannot add a nonzero center to sparse"):
        invert_group_normalization(sp.csr_matrix(X_tr), stats)


# -- PyTorch (optional) -----------------------------------------------------------


@pytest.mark.parametrize("n_channels, n_groups", [(6, 1), (6, 2), (6, 3), (6, 6)])
def test_matches_torch_group_norm(rng, n_channels, n_groups):
    torch = pytest.importorskip("torch", reason="optional comparison with PyTorch")
    X3d = rng.normal(2.0, 3.0, size=(7, n_channels, 5))
    expected = torch.nn.functional.group_norm(
        torch.from_numpy(X3d), n_groups, eps=1e-5
    ).numpy()
    X_tr = GroupNormalizer(n_groups).fit_transform(X3d.reshape(7, -1))
    np.testing.assert_allclose(X_tr, expected.reshape(7, -1), rtol=1e-10, atol=1e-12)
    if n_groups == n_channels:
        instance = torch.nn.functional.instance_norm(torch.from_numpy(X3d), eps=1e-5)
        np.testing.assert_allclose(
            X_tr, instance.numpy().reshape(7, -1), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_layer_norm(rng, dtype):
    torch = pytest.importorskip("torch", reason="optional comparison with PyTorch")
    X = rng.normal(-4.0, 0.5, size=(9, 16)).astype(dtype)
    expected = torch.nn.functional.layer_norm(
        torch.from_numpy(X.astype(np.float64)), (16,), eps=1e-5
    ).numpy()
    X_tr = LayerNormalizer().fit_transform(X)
    assert X_tr.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(X_tr, expected, rtol=tol, atol=tol)
