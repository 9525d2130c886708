"""Tests for StreamingColumnTransformer and StreamingFeatureUnion."""

import copy
import functools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.compose import (
    ColumnTransformer,
    make_column_selector,
    make_column_transformer,
)
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import FeatureUnion, make_pipeline, make_union
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
)
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from sknorm import (
    BatchNormalizer,
    StreamingColumnTransformer,
    StreamingFeatureUnion,
    make_streaming_column_transformer,
    make_streaming_pipeline,
    make_streaming_union,
)

pd = pytest.importorskip("pandas")

COLORS = ["red", "green", "blue"]


def frame(n_rows=120, seed=0):
    """Numeric columns on scales 1 to 1e6 and a categorical column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "small": rng.normal(size=n_rows),
            "large": rng.normal(size=n_rows) * 1e6 + 5e6,
            "mid": rng.normal(size=n_rows) * 100.0,
            "color": rng.choice(COLORS, size=n_rows),
        }
    )


def chunks(data, size=30):
    return [data.iloc[start : start + size] for start in range(0, len(data), size)]


def encoder(**params):
    return OneHotEncoder(categories=[COLORS], handle_unknown="ignore", **params)


def both(transformers, **params):
    """The same transformers in a StreamingColumnTransformer and a ColumnTransformer."""
    return (
        StreamingColumnTransformer(copy.deepcopy(transformers), **params),
        ColumnTransformer(copy.deepcopy(transformers), **params),
    )


# -- scikit-learn's estimator checks ------------------------------------------

# ColumnTransformer and FeatureUnion fail some checks themselves (their fit
# does not validate X, and FeatureUnion fits `transformer_list` in place): the
# streaming ones are expected to fail exactly those, found by running the
# checks on the plain composite with the same parameters, and to pass all
# the others.
CHECKED = [
    StreamingColumnTransformer([("norm", BatchNormalizer(), slice(0, None))]),
    StreamingColumnTransformer(
        [("norm", BatchNormalizer(), [0])], remainder=BatchNormalizer(momentum=0.5)
    ),
    StreamingFeatureUnion(
        [("a", BatchNormalizer()), ("b", BatchNormalizer(momentum=0.5))]
    ),
]

# What the plain composites are known to fail; a new failure is a surprise.
KNOWN_PLAIN_FAILURES = {
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimators_nan_inf",
    "check_fit1d",
    "check_fit2d_predict1d",
    "check_estimators_empty_data_messages",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_array_api_same_namespace",
}


def _plain(streaming):
    params = streaming.get_params(deep=False)
    if isinstance(streaming, FeatureUnion):
        return FeatureUnion(**params)
    return ColumnTransformer(**params)


@functools.cache
def _plain_failures(key):
    streaming = CHECKED[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)  # no GPU libraries here
        results = check_estimator(_plain(streaming), on_fail=None)
    return frozenset(r["check_name"] for r in results if r["status"] == "failed")


def _expected_failures(estimator):
    key = next(i for i, est in enumerate(CHECKED) if repr(est) == repr(estimator))
    name = type(_plain(estimator)).__name__
    return dict.fromkeys(_plain_failures(key), f"{name} fails it too")


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("key", range(len(CHECKED)))
def test_the_plain_composites_fail_only_known_checks(key):
    assert _plain_failures(key) <= KNOWN_PLAIN_FAILURES


# -- as a ColumnTransformer ------------------------------------------------------


@pytest.mark.parametrize("remainder", ["drop", "passthrough", "normalizer"])
def test_stream_gives_the_column_transformer_fitted_on_all_the_data(remainder):
    data = frame()
    transformers = [
        ("num", BatchNormalizer(), ["small", "large"]),
        ("color", encoder(sparse_output=False), ["color"]),
    ]
    rest = BatchNormalizer() if remainder == "normalizer" else remainder
    ours, theirs = both(transformers, remainder=rest)
    for chunk in chunks(data):
        ours.partial_fit(chunk)
    theirs.fit(data)
    assert_allclose(ours.transform(data), theirs.transform(data), rtol=1e-12)
    assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())
    assert ours.output_indices_ == theirs.output_indices_
    assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    assert ours.named_transformers_["num"].n_samples_seen_ == len(data)


@pytest.mark.parametrize(
    "columns",
    [
        [0, 2],
        ["small", "mid"],
        slice(0, 3, 2),
        [True, False, True, False],
        make_column_selector(pattern="^small$|^mid$"),
    ],
    ids=["indices", "names", "slice", "mask", "selector"],
)
def test_every_kind_of_column_selection(columns):
    data = frame()
    ours = make_streaming_column_transformer((BatchNormalizer(), columns))
    for chunk in chunks(data):
        ours.partial_fit(chunk)
    lone = BatchNormalizer().fit(data[["small", "mid"]].to_numpy())
    assert_allclose(
        ours.transform(data), lone.transform(data[["small", "mid"]].to_numpy())
    )


def test_fitted_stateless_and_frozen_transformers_are_applied_as_they_are():
    data = frame()
    numeric = data[["small", "large", "mid"]].to_numpy()
    pca = PCA(n_components=2).fit(numeric[:40])
    components = pca.components_.copy()
    transformers = [
        ("pca", FrozenEstimator(pca), [0, 1, 2]),
        ("log", FunctionTransformer(np.abs, feature_names_out="one-to-one"), [0]),
        ("norm", BatchNormalizer(), [1, 2]),
    ]
    ours, theirs = both(transformers)
    for start in range(0, 120, 40):
        ours.partial_fit(numeric[start : start + 40])
    theirs.fit(numeric)
    assert_array_equal(pca.components_, components)
    assert ours.named_transformers_["pca"] is ours.transformers[0][1]
    assert_allclose(ours.transform(numeric), theirs.transform(numeric), rtol=1e-12)
    assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())


def test_already_fitted_transformer_without_partial_fit_is_not_refitted():
    numeric = frame()[["small", "mid"]].to_numpy()
    pca = PCA(n_components=1).fit(numeric[:30])
    ours = make_streaming_column_transformer((pca, [0, 1]))
    ours.partial_fit(numeric[30:60])
    assert_array_equal(ours.transform(numeric), pca.transform(numeric))


@pytest.mark.parametrize("output", ["pandas", "polars"])
def test_set_output(output):
    if output == "polars":
        pytest.importorskip("polars")
    data = frame()
    transformers = [
        ("num", BatchNormalizer(), ["small", "large"]),
        ("color", encoder(sparse_output=False), ["color"]),
    ]
    ours, theirs = both(transformers, remainder="passthrough")
    ours.set_output(transform=output)
    theirs.set_output(transform=output)
    for chunk in chunks(data):
        ours.partial_fit(chunk)
    theirs.fit(data)
    got, expected = ours.transform(data), theirs.transform(data)
    assert type(got) is type(expected)
    assert list(got.columns) == list(expected.columns)
    assert_allclose(
        got[["num__small", "num__large", "remainder__mid"]].to_numpy(),
        expected[["num__small", "num__large", "remainder__mid"]].to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0])
def test_sparse_output_is_decided_on_the_first_batch_and_kept(threshold):
    data = frame()
    transformers = [
        ("color", encoder(), ["color"]),
        ("num", BatchNormalizer(), ["small"]),
    ]
    ours, theirs = both(transformers, sparse_threshold=threshold)
    first, *rest = chunks(data)
    ours.partial_fit(first)
    theirs.fit(first)
    assert ours.sparse_output_ == theirs.sparse_output_
    for chunk in rest:
        ours.partial_fit(chunk)
    assert ours.sparse_output_ == theirs.sparse_output_
    assert sp.issparse(ours.transform(data)) == (threshold == 1.0)


def test_transformer_weights_scale_the_outputs():
    numeric = frame()[["small", "mid"]].to_numpy()
    ours, theirs = both(
        [("a", BatchNormalizer(), [0]), ("b", BatchNormalizer(), [1])],
        transformer_weights={"b": 10.0},
    )
    ours.partial_fit(numeric)
    theirs.fit(numeric)
    assert_allclose(ours.transform(numeric), theirs.transform(numeric), rtol=1e-12)


def test_fit_then_partial_fit_continues_the_stream():
    numeric = frame()[["small", "mid"]].to_numpy()
    ours = make_streaming_column_transformer((BatchNormalizer(), [0, 1]))
    ours.fit(numeric[:60])
    ours.partial_fit(numeric[60:])
    assert_allclose(
        ours.named_transformers_["batchnormalizer"].mean_,
        numeric.mean(axis=0),
        rtol=1e-13,
    )


# -- in a StreamingPipeline -----------------------------------------------------


def test_pipeline_streams_into_the_column_transformer():
    data = frame(seed=1)
    y = (data["small"] + data["mid"] / 100 > 0).to_numpy().astype(int)
    mlp = {"hidden_layer_sizes": (5,), "random_state": 0}
    pipe = make_streaming_pipeline(
        make_streaming_column_transformer(
            (BatchNormalizer(), ["small", "large", "mid"]),
            (encoder(sparse_output=False), ["color"]),
        ),
        MLPClassifier(**mlp),
    )
    norm, mlp_by_hand = BatchNormalizer(), MLPClassifier(**mlp)
    hot = encoder(sparse_output=False).fit(data[["color"]])
    for chunk, labels in zip(chunks(data), np.split(y, 4), strict=True):
        pipe.partial_fit(chunk, labels, classes=[0, 1])
        numeric = chunk[["small", "large", "mid"]]
        norm.partial_fit(numeric)
        Z = np.hstack([norm.transform(numeric), hot.transform(chunk[["color"]])])
        mlp_by_hand.partial_fit(Z, labels, classes=[0, 1])
    for ours, theirs in zip(pipe[-1].coefs_, mlp_by_hand.coefs_, strict=True):
        assert_allclose(ours, theirs, rtol=1e-12)


def test_sample_weight_is_routed_by_name():
    numeric = frame()[["small", "mid"]].to_numpy()
    w = np.random.default_rng(3).uniform(0.0, 2.0, len(numeric))
    ct = StreamingColumnTransformer(
        [("a", BatchNormalizer(), [0]), ("b", BatchNormalizer(), [1])]
    )
    ct.partial_fit(numeric, a__sample_weight=w)
    assert_allclose(
        ct.named_transformers_["a"].mean_,
        [np.average(numeric[:, 0], weights=w)],
        rtol=1e-13,
    )
    assert_allclose(ct.named_transformers_["b"].mean_, [numeric[:, 1].mean()])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"c__sample_weight": 1.0}, "no step named 'c'"),
        ({"sample_weight": 1.0}, "no default step"),
    ],
)
def test_unknown_params_are_rejected(params, match):
    ct = StreamingColumnTransformer([("a", BatchNormalizer(), [0])])
    with pytest.raises(ValueError, match=match):
        ct.partial_fit(np.ones((3, 2)), **params)
    assert not hasattr(ct, "transformers_")


# -- steps that cannot follow a stream ---------------------------------------------


@pytest.mark.parametrize(
    "transformer, match",
    [
        (OneHotEncoder(), r"categories=\[\.\.\.\], handle_unknown='ignore'"),
        (PCA(1), r"'bad' \(PCA\) cannot learn from a stream.*IncrementalPCA"),
        (
            make_pipeline(FunctionTransformer(), StandardScaler()),
            r"holds 'standardscaler'.*Use StreamingPipeline",
        ),
    ],
    ids=["encoder without categories", "unfitted PCA", "plain pipeline"],
)
def test_transformer_that_cannot_stream_is_named(transformer, match):
    ct = StreamingColumnTransformer(
        [("good", BatchNormalizer(), [0]), ("bad", transformer, [1])]
    )
    with pytest.raises(ValueError, match=match):
        ct.partial_fit(np.array([[1.0, 0.0], [2.0, 1.0]]))
    assert not hasattr(ct, "transformers_")


def test_nested_streaming_pipeline_learns():
    numeric = frame()[["small", "mid"]].to_numpy()
    ct = make_streaming_column_transformer(
        (make_streaming_pipeline(StandardScaler(), BatchNormalizer()), [0, 1])
    )
    ct.partial_fit(numeric[:60])
    ct.partial_fit(numeric[60:])
    scaler = ct.named_transformers_["streamingpipeline"][0]
    assert scaler.n_samples_seen_ == len(numeric)


def test_scalar_column_gets_the_column_transformer_message():
    ct = StreamingColumnTransformer([("a", BatchNormalizer(), 0)])
    with pytest.raises(ValueError, match="list of one item instead of a scalar"):
        ct.partial_fit(np.ones((3, 2)))


def test_later_batch_with_other_columns_is_rejected():
    data = frame()
    ct = make_streaming_column_transformer((BatchNormalizer(), ["small", "mid"]))
    ct.partial_fit(data.iloc[:30])
    before = ct.named_transformers_["batchnormalizer"].mean_
    with pytest.raises(ValueError, match="feature names should match"):
        ct.partial_fit(data.iloc[30:60].rename(columns={"large": "huge"}))
    assert ct.named_transformers_["batchnormalizer"].mean_ is before


# -- nothing is lost ----------------------------------------------------------------


def test_failing_partial_fit_leaves_every_transformer_as_it_was():
    numeric = frame()[["small", "mid"]].to_numpy()
    ct = StreamingColumnTransformer(
        [
            ("scaler", StandardScaler(), [0]),
            ("norm", BatchNormalizer(), [0]),
            ("pca", IncrementalPCA(1), [0, 1]),
        ]
    )
    ct.partial_fit(numeric[:60])
    before = copy.deepcopy(ct)
    bad = numeric[60:].copy()
    bad[0, 1] = np.nan  # the scaler and the normalizer learn; IncrementalPCA raises
    with pytest.raises(ValueError, match="NaN"):
        ct.partial_fit(bad)
    for name in ("scaler", "norm", "pca"):
        ours, theirs = ct.named_transformers_[name], before.named_transformers_[name]
        for attr in ("mean_", "n_samples_seen_"):
            assert_array_equal(getattr(ours, attr), getattr(theirs, attr))
    assert_array_equal(ct.transform(numeric), before.transform(numeric))


def test_failing_first_call_leaves_it_unfitted():
    ct = StreamingColumnTransformer(
        [("norm", BatchNormalizer(), [0]), ("pca", IncrementalPCA(1), [0, 1])]
    )
    bad = np.array([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(ValueError, match="NaN"):
        ct.partial_fit(bad)
    with pytest.raises(NotFittedError):
        check_is_fitted(ct)
    assert not hasattr(ct.transformers[0][1], "mean_")  # the template is untouched


def test_failing_fit_leaves_it_as_it_was():
    numeric = frame()[["small", "mid"]].to_numpy()
    ct = make_streaming_column_transformer((BatchNormalizer(), [0, 1]))
    ct.partial_fit(numeric)
    state = dict(vars(ct))
    with pytest.raises(ValueError, match="features"):
        ct.fit(np.ones((3, 1)))
    assert vars(ct).keys() == state.keys()
    assert all(vars(ct)[key] is value for key, value in state.items())


def test_pipeline_failure_rolls_back_the_column_transformer():
    data = frame()
    y = np.arange(len(data)) % 2
    pipe = make_streaming_pipeline(
        make_streaming_column_transformer(
            (StandardScaler(), ["small"]), (BatchNormalizer(), ["large"])
        ),
        MLPClassifier(hidden_layer_sizes=(3,), random_state=0),
    )
    pipe.partial_fit(data.iloc[:60], y[:60], classes=[0, 1])
    before = copy.deepcopy(pipe)
    with pytest.raises(ValueError, match="classes"):
        pipe.partial_fit(data.iloc[60:], np.full(60, 4))
    ct, ct_before = pipe[0], before[0]
    for name in ("standardscaler", "batchnormalizer"):
        assert_array_equal(
            ct.named_transformers_[name].mean_,
            ct_before.named_transformers_[name].mean_,
        )
    assert ct.named_transformers_["standardscaler"].n_samples_seen_ == 60


# -- make_streaming_column_transformer ------------------------------------------


def test_make_streaming_column_transformer_names_as_make_column_transformer():
    specs = [(BatchNormalizer(), [0]), (BatchNormalizer(), [1]), ("drop", [2])]
    ours = make_streaming_column_transformer(*specs, remainder="passthrough")
    theirs = make_column_transformer(*specs, remainder="passthrough")
    assert [t[0] for t in ours.transformers] == [t[0] for t in theirs.transformers]
    assert ours.get_params(deep=False).keys() == theirs.get_params(deep=False).keys()


# -- StreamingFeatureUnion ------------------------------------------------------


def test_union_stream_gives_the_union_fitted_on_all_the_data():
    numeric = frame()[["small", "large", "mid"]].to_numpy()
    ours = make_streaming_union(
        BatchNormalizer(), "passthrough", StandardScaler(), "drop"
    )
    theirs = make_union(BatchNormalizer(), "passthrough", StandardScaler(), "drop")
    for start in range(0, 120, 30):
        ours.partial_fit(numeric[start : start + 30])
    theirs.fit(numeric)
    assert_allclose(ours.transform(numeric), theirs.transform(numeric), rtol=1e-12)
    names = ["x0", "x1", "x2"]
    assert_array_equal(
        ours.get_feature_names_out(names), theirs.get_feature_names_out(names)
    )


def test_union_encoder_with_categories_is_fitted_once_and_rolled_back():
    hot = OneHotEncoder(
        categories=[[0.0, 1.0], [2.0, 3.0]],
        handle_unknown="ignore",
        sparse_output=False,
    )
    union = make_streaming_union(hot, IncrementalPCA(1))
    # the encoder is fitted, then IncrementalPCA refuses the NaN
    with pytest.raises(ValueError, match="NaN"):
        union.partial_fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(NotFittedError):
        check_is_fitted(hot)
    union.partial_fit(np.array([[0.0, 2.0], [1.0, 2.0]]))
    assert_array_equal(union.transform([[1.0, 3.0]])[:, :4], [[0.0, 1.0, 0.0, 1.0]])


def test_union_failure_leaves_every_transformer_as_it_was():
    numeric = frame()[["small", "mid"]].to_numpy()
    union = make_streaming_union(StandardScaler(), BatchNormalizer(), IncrementalPCA(1))
    union.partial_fit(numeric[:60])
    before = copy.deepcopy(union)
    bad = numeric[60:].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        union.partial_fit(bad)
    assert_array_equal(union.transform(numeric), before.transform(numeric))
    assert union.named_transformers["standardscaler"].n_samples_seen_ == 60


def test_union_with_a_frozen_learner_keeps_it_fixed():
    numeric = frame()[["small", "mid"]].to_numpy()
    scaler = StandardScaler().fit(numeric[:10])
    union = make_streaming_union(FrozenEstimator(scaler), BatchNormalizer())
    union.partial_fit(numeric)
    assert scaler.n_samples_seen_ == 10


def test_make_streaming_union_names_as_make_union():
    steps = (BatchNormalizer(), BatchNormalizer(), "passthrough")
    ours = make_streaming_union(*steps)
    theirs = make_union(*steps)
    assert [n for n, _ in ours.transformer_list] == [
        n for n, _ in theirs.transformer_list
    ]
