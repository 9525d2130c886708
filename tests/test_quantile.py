"""Tests of QuantileNormalizer against scikit-learn's QuantileTransformer."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sknorm import _req
from sknorm._quantile import QuantileNormalizer

ESTIMATORS = [
    QuantileNormalizer(),
    QuantileNormalizer(n_quantiles=10, output_distribution="normal"),
    # The smallest sketch, so that the checks' data (up to a few hundred
    # rows) also go through compactions.
    QuantileNormalizer(n_quantiles=50, sketch_size=128, random_state=0),
]


# No expected failures: with sketch_size=128 the checks' data are compacted
# too, and every check still passes, since the compaction coins depend only
# on random_state.
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def stream(norm, X, batch):
    for start in range(0, X.shape[0], batch):
        norm.partial_fit(X[start : start + batch])
    return norm


def awkward_data(n, seed=0):
    """Scales far apart, ties, missing values and an all-missing feature."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)) * [1.0, 1e6, 1e-6, 1.0, 1.0]
    X[:, 3] = np.round(X[:, 3] * 2)  # ties
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 4] = np.nan
    return X


def qt_reference(X, **params):
    with pytest.warns(RuntimeWarning, match="All-NaN slice"):
        return QuantileTransformer(subsample=None, **params).fit(X)


@pytest.mark.filterwarnings("ignore:n_quantiles .* is greater")
@pytest.mark.parametrize("output_distribution", ["uniform", "normal"])
@pytest.mark.parametrize("batch", [2048, 300, 1])
@pytest.mark.parametrize("n_quantiles", [1000, 17])
def test_equals_quantile_transformer_while_the_stream_fits(
    output_distribution, batch, n_quantiles
):
    X = awkward_data(2048 if batch > 1 else 700)
    params = {"n_quantiles": n_quantiles, "output_distribution": output_distribution}
    norm = stream(QuantileNormalizer(**params), X, batch)
    reference = qt_reference(X, **params)
    assert norm.n_quantiles_ == reference.n_quantiles_
    np.testing.assert_array_equal(norm.references_, reference.references_)
    np.testing.assert_allclose(norm.quantiles_, reference.quantiles_, rtol=1e-12)
    probe = awkward_data(500, seed=1)
    probe[:3] = [[-1e9] * 5, [1e9] * 5, [0.0] * 5]  # beyond both ends
    probe[:, 4] = 0.0
    with np.errstate(invalid="ignore"):
        expected = reference.transform(probe)
    out = norm.transform(probe)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert np.isnan(out[:, 4]).all() == np.isnan(expected[:, 4]).all()
    np.testing.assert_allclose(
        norm.inverse_transform(out), reference.inverse_transform(expected), rtol=1e-12
    )


def test_fewer_rows_than_quantiles():
    X = np.array([[3.0, 1.0], [1.0, np.nan], [2.0, 5.0]])
    norm = QuantileNormalizer().partial_fit(X[:1])
    assert norm.n_quantiles_ == 1
    norm.partial_fit(X[1:])
    with pytest.warns(UserWarning, match="n_quantiles"):
        reference = QuantileTransformer(subsample=None).fit(X)
    assert norm.n_quantiles_ == reference.n_quantiles_ == 3
    np.testing.assert_array_equal(norm.quantiles_, reference.quantiles_)
    np.testing.assert_array_equal(norm.transform(X), reference.transform(X))


def test_missing_values_are_kept():
    X = awkward_data(300)
    out = QuantileNormalizer(output_distribution="normal").fit(X).transform(X)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(X))
    assert np.all(np.abs(out[~np.isnan(out)]) <= 5.2)  # clipped like sklearn


@pytest.fixture(scope="module")
def long_stream():
    rng = np.random.default_rng(3)
    n = 100_000
    X = np.column_stack(
        [rng.lognormal(0, 2, n), rng.standard_cauchy(n), np.sort(rng.random(n))]
    )
    return X, QuantileTransformer(n_quantiles=1000, subsample=None).fit(X)


def uniform_error_bound(n, u, merge_depth=0, k=2048):
    """The rank bound at u (two-sided) plus one reference spacing each side."""
    spacing = 1 / 999
    eps = np.array(
        [
            max(_req.rank_error_bound(k, n, q, merge_depth=merge_depth) for q in qs)
            for qs in zip(
                np.clip(u - spacing, 0, 1), u, np.clip(u + spacing, 0, 1), strict=True
            )
        ]
    )
    return eps + spacing


def test_uniform_output_within_the_rank_bound_after_compaction(long_stream):
    X, reference = long_stream
    norm = stream(QuantileNormalizer(random_state=0), X, 1000)
    assert len(norm._state.sketch.levels) > 4  # compacted
    probe = X[::97]
    expected = reference.transform(probe)
    error = np.abs(norm.transform(probe) - expected)
    bound = uniform_error_bound(X.shape[0], expected.ravel()).reshape(expected.shape)
    assert np.all(error <= bound)
    # The tails are much more accurate than the bound's middle.
    tail = (expected < 0.01) | (expected > 0.99)
    assert error[tail].max() < 0.2 * error[~tail].max() + 1 / 999


@pytest.mark.parametrize("tree", ["chain", "balanced", "reversed"])
def test_merge_of_parts_in_a_tree(long_stream, tree):
    X, reference = long_stream
    parts = [
        QuantileNormalizer(random_state=i).fit(part)
        for i, part in enumerate(np.array_split(X, 8))
    ]
    if tree == "chain":
        merged, depth = parts[0], 1
        for part in parts[1:]:
            merged.merge(part)
    elif tree == "reversed":
        merged, depth = parts[-1], 7
        for part in parts[-2::-1]:
            merged = part.merge(merged)
    else:
        depth = 3
        while len(parts) > 1:
            parts = [a.merge(b) for a, b in zip(parts[::2], parts[1::2], strict=True)]
        merged = parts[0]
    assert merged.n_samples_seen_ == X.shape[0]
    probe = X[::97]
    expected = reference.transform(probe)
    error = np.abs(merged.transform(probe) - expected)
    bound = uniform_error_bound(X.shape[0], expected.ravel(), depth)
    assert np.all(error <= bound.reshape(expected.shape))


def test_merge_of_small_parts_is_exact():
    X = awkward_data(1500)
    a = QuantileNormalizer(random_state=0).fit(X[:700])
    a.merge(QuantileNormalizer(random_state=1).fit(X[700:]))
    reference = qt_reference(X)
    np.testing.assert_array_equal(a.quantiles_, reference.quantiles_)
    assert a.n_quantiles_ == 1000


def test_deterministic_given_random_state():
    X = np.random.default_rng(4).standard_normal((20_000, 2))
    a = stream(QuantileNormalizer(random_state=0, sketch_size=128), X, 999)
    b = stream(QuantileNormalizer(random_state=0, sketch_size=128), X, 999)
    c = stream(QuantileNormalizer(random_state=1, sketch_size=128), X, 999)
    np.testing.assert_array_equal(a.quantiles_, b.quantiles_)
    assert not np.array_equal(a.quantiles_, c.quantiles_)


@pytest.mark.parametrize("how", ["pickle", "skops"])
def test_checkpoint_round_trip_resumes_bit_identically(how):
    X = awkward_data(9000)[:, :4]
    a = stream(QuantileNormalizer(sketch_size=128, random_state=0), X[:5000], 700)
    if how == "pickle":
        b = pickle.loads(pickle.dumps(a))
    else:
        sio = pytest.importorskip("skops.io")
        blob = sio.dumps(a)
        b = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    np.testing.assert_array_equal(a.quantiles_, b.quantiles_)
    stream(a, X[5000:], 700)
    stream(b, X[5000:], 700)
    np.testing.assert_array_equal(a.quantiles_, b.quantiles_)
    np.testing.assert_array_equal(a.transform(X[:50]), b.transform(X[:50]))
    stored = a.__getstate__()
    assert "_quantiles_cache" not in stored
    assert isinstance(stored["_state"], dict)


# -- errors -------------------------------------------------------------------


def fitted_state(norm):
    return (norm.n_samples_seen_, norm.n_quantiles_, norm.quantiles_.copy())


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, np.nan, -np.inf]]), r"infinity in feature\(s\) 2\."),
        (np.ones((2, 4)), "3 features"),
        (np.ones((0, 3)), "0 sample"),
        (np.array([["a", "b", "c"]]), "could not convert|dtype"),
    ],
)
def test_failed_partial_fit_leaves_the_state_unchanged(X, match):
    norm = QuantileNormalizer().fit(np.arange(12.0).reshape(4, 3))
    before = fitted_state(norm)
    state = norm._state
    with pytest.raises(ValueError, match=match):
        norm.partial_fit(X)
    after = fitted_state(norm)
    assert before[:2] == after[:2]
    np.testing.assert_array_equal(before[2], after[2])
    assert norm._state is state


@pytest.mark.parametrize(
    "params, match",
    [
        ({"output_distribution": "gaussian"}, "output_distribution"),
        ({"n_quantiles": 0}, "n_quantiles"),
        ({"sketch_size": 64}, "sketch_size"),
    ],
)
def test_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        QuantileNormalizer(**params).fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match=match):
        QuantileNormalizer(**params).partial_fit(np.ones((3, 2)))


def test_changing_the_sketch_size_mid_stream_is_refused():
    norm = QuantileNormalizer().partial_fit(np.ones((3, 2)))
    norm.set_params(sketch_size=4096)
    with pytest.raises(ValueError, match="sketch_size changed from 2048 to 4096"):
        norm.partial_fit(np.ones((3, 2)))
    assert norm.n_samples_seen_ == 3


def test_merge_errors():
    X = np.random.default_rng(9).standard_normal((10, 2))
    norm = QuantileNormalizer().fit(X)
    with pytest.raises(TypeError, match="expects a fitted QuantileNormalizer"):
        norm.merge(QuantileTransformer(n_quantiles=5).fit(X))
    with pytest.raises(ValueError, match="different parameters"):
        norm.merge(QuantileNormalizer(output_distribution="normal").fit(X))
    with pytest.raises(ValueError, match="2 features, other has 3"):
        norm.merge(QuantileNormalizer().fit(np.ones((3, 3))))
    assert norm.n_samples_seen_ == 10


# -- integration --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:n_quantiles .* is greater")
def test_parameters_change_the_mapping_at_the_next_update():
    X = np.random.default_rng(8).standard_normal((100, 2))
    norm = QuantileNormalizer().fit(X)
    quantiles = norm.quantiles_
    norm.set_params(output_distribution="normal")
    out = norm.transform(X)  # the mapping reads the parameter
    np.testing.assert_allclose(
        out, QuantileTransformer(output_distribution="normal").fit(X).transform(X)
    )
    norm.set_params(n_quantiles=10).partial_fit(X[:1])
    assert norm.n_quantiles_ == 10 and quantiles.shape[0] == 100


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 40.0]})
    norm = QuantileNormalizer().set_output(transform="pandas").fit(df)
    out = norm.transform(df)
    assert list(out.columns) == ["a", "b"]
    assert list(norm.get_feature_names_out()) == ["a", "b"]
    np.testing.assert_allclose(
        out.to_numpy(), QuantileTransformer(n_quantiles=3).fit_transform(df)
    )


def test_clone_is_unfitted():
    norm = QuantileNormalizer(sketch_size=256).fit(np.ones((3, 2)))
    fresh = clone(norm)
    assert fresh.sketch_size == 256
    assert not hasattr(fresh, "quantiles_")


def test_dask_fit_is_exact_while_short():
    da = pytest.importorskip("dask.array")
    X = awkward_data(1800)[:, :4]
    norm = QuantileNormalizer(random_state=0).fit(da.from_array(X, chunks=500))
    reference = QuantileTransformer(subsample=None).fit(X)
    np.testing.assert_array_equal(norm.quantiles_, reference.quantiles_)
    np.testing.assert_array_equal(norm.n_samples_seen_, (~np.isnan(X)).sum(axis=0))


def test_learns_in_a_streaming_pipeline():
    from sklearn.linear_model import SGDClassifier

    from sknorm import make_streaming_pipeline

    rng = np.random.default_rng(11)
    n = 6000
    y = rng.integers(0, 2, n)
    # A class signal hidden under a heavy-tailed, skewed scale.
    X = np.exp(rng.standard_normal((n, 3)) * 2 + y[:, None] * 3)
    pipe = make_streaming_pipeline(
        QuantileNormalizer(output_distribution="normal", random_state=0),
        SGDClassifier(random_state=0),
    )
    for start in range(0, n - 1000, 500):
        pipe.partial_fit(X[start : start + 500], y[start : start + 500], classes=[0, 1])
    assert pipe.score(X[-1000:], y[-1000:]) > 0.7  # Bayes: 0.90
    assert pipe[0].n_samples_seen_ == n - 1000


def test_learns_in_a_streaming_column_transformer():
    pd = pytest.importorskip("pandas")
    from sknorm import BatchNormalizer, make_streaming_column_transformer

    X = pd.DataFrame(awkward_data(3000)[:, :3], columns=["a", "b", "c"])
    ct = make_streaming_column_transformer(
        (QuantileNormalizer(n_quantiles=100, sketch_size=4096), ["a", "b"]),
        (BatchNormalizer(), ["c"]),
    )
    for start in range(0, 3000, 500):
        ct.partial_fit(X[start : start + 500])
    # Below the sketch size the streamed mapping is QuantileTransformer's.
    reference = QuantileTransformer(n_quantiles=100, subsample=None).fit(X[["a", "b"]])
    out = ct.transform(X)
    np.testing.assert_allclose(
        out[:, :2], reference.transform(X[["a", "b"]]), rtol=1e-12, atol=1e-12
    )
    assert list(ct.get_feature_names_out()) == [
        "quantilenormalizer__a",
        "quantilenormalizer__b",
        "batchnormalizer__c",
    ]
