"""Tests for StreamingPipeline and make_streaming_pipeline."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import (
    check_dont_overwrite_parameters,
    check_estimators_overwrite_params,
    parametrize_with_checks,
)
from sklearn.utils.validation import check_is_fitted

from sknorm import BatchNormalizer, StreamingPipeline, make_streaming_pipeline

# -- scikit-learn's estimator checks ------------------------------------------

CHECKED = [
    make_streaming_pipeline(BatchNormalizer(), SGDRegressor(random_state=0)),
    make_streaming_pipeline(BatchNormalizer(eps=1e-5), SGDClassifier(random_state=0)),
    # a stateless step in the middle, applied as is by partial_fit
    make_streaming_pipeline(
        BatchNormalizer(clip=5.0),
        FunctionTransformer(np.tanh),
        SGDRegressor(random_state=0),
    ),
    # transformer only
    make_streaming_pipeline(StandardScaler(), BatchNormalizer(half_life=50.0)),
    make_streaming_pipeline(
        BatchNormalizer(with_mean=False), "passthrough", BatchNormalizer(momentum=0.5)
    ),
]

# Inherent to pipelines: Pipeline.fit fits the step objects held in `steps` in
# place (it clones them only when `memory` caches), so the `steps` parameter
# changes. scikit-learn declares the same two expected failures for Pipeline;
# test_pipeline_fails_the_same_checks shows that Pipeline fails them here too.
STEPS_CHANGE = "Pipeline fits the estimators in `steps` in place, changing `steps`"
PIPELINE_FAILURES = {
    "check_estimators_overwrite_params": STEPS_CHANGE,
    "check_dont_overwrite_parameters": STEPS_CHANGE,
}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: PIPELINE_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "check", [check_estimators_overwrite_params, check_dont_overwrite_parameters]
)
def test_pipeline_fails_the_same_checks(check):
    pipe = make_pipeline(BatchNormalizer(), SGDRegressor(random_state=0))
    with pytest.raises(AssertionError, match="steps"):
        check("Pipeline", pipe)


# -- data ---------------------------------------------------------------------


def batches(n_batches=6, size=40, n_features=3, seed=0):
    """Mini-batches with features on very different scales, and labels."""
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 100.0, 1e4])[:n_features]
    for _ in range(n_batches):
        X = rng.normal(size=(size, n_features)) * scales + scales
        y = (X[:, 0] / scales[0] + X[:, 1] / scales[1] > 2.0).astype(int)
        yield X, y


# -- partial_fit --------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{}, {"momentum": 0.3}, {"half_life": 25.0}, {"eps": 1e-3, "clip": 2.0}]
)
def test_normalizer_step_has_the_statistics_of_a_lone_normalizer(params):
    pipe = make_streaming_pipeline(
        BatchNormalizer(**params), SGDClassifier(random_state=0)
    )
    lone = BatchNormalizer(**params)
    for X, y in batches():
        pipe.partial_fit(X, y, classes=[0, 1])
        lone.partial_fit(X)
    step = pipe.named_steps["batchnormalizer"]
    for attr in ("mean_", "var_", "scale_", "weight_sum_"):
        assert_array_equal(getattr(step, attr), getattr(lone, attr))
    assert step.n_samples_seen_ == lone.n_samples_seen_ == 240


def test_final_step_learns_from_the_transformed_batches():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    norm, clf = BatchNormalizer(), SGDClassifier(random_state=0)
    for X, y in batches():
        pipe.partial_fit(X, y, classes=[0, 1])
        clf.partial_fit(norm.partial_fit(X).transform(X), y, classes=[0, 1])
    assert_array_equal(pipe[-1].coef_, clf.coef_)
    X_test, y_test = next(batches(1, 100, seed=1))
    Z_test = norm.transform(X_test)
    assert_array_equal(pipe.predict(X_test), clf.predict(Z_test))
    assert_array_equal(pipe.decision_function(X_test), clf.decision_function(Z_test))
    assert pipe.score(X_test, y_test) == clf.score(Z_test, y_test)
    assert_array_equal(pipe.classes_, [0, 1])


def test_mlp_pipeline_predicts_as_its_steps():
    mlp_params = {"hidden_layer_sizes": (8,), "random_state": 0}
    pipe = make_streaming_pipeline(BatchNormalizer(), MLPClassifier(**mlp_params))
    norm, mlp = BatchNormalizer(), MLPClassifier(**mlp_params)
    for X, y in batches():
        pipe.partial_fit(X, y, classes=[0, 1])
        mlp.partial_fit(norm.partial_fit(X).transform(X), y, classes=[0, 1])
    X_test, _ = next(batches(1, 50, seed=2))
    assert_allclose(
        pipe.predict_proba(X_test), mlp.predict_proba(norm.transform(X_test))
    )


def test_stateless_step_is_applied_as_is():
    pipe = make_streaming_pipeline(
        FunctionTransformer(np.log1p), BatchNormalizer(momentum=0.5)
    )
    lone = BatchNormalizer(momentum=0.5)
    for X, _ in batches():
        X = np.abs(X)
        pipe.partial_fit(X)
        lone.partial_fit(np.log1p(X))
    assert_array_equal(pipe[-1].mean_, lone.mean_)
    X_test = np.abs(next(batches(1, 10, seed=3))[0])
    assert_array_equal(pipe.transform(X_test), lone.transform(np.log1p(X_test)))


@pytest.mark.parametrize("frozen", [False, True])
def test_fitted_step_without_partial_fit_is_applied_as_is(frozen):
    X0, _ = next(batches(1, 60, seed=4))
    pca = PCA(n_components=2).fit(X0)
    components = pca.components_.copy()
    step = FrozenEstimator(pca) if frozen else pca
    pipe = make_streaming_pipeline(step, BatchNormalizer())
    lone = BatchNormalizer()
    for X, _ in batches():
        pipe.partial_fit(X)
        lone.partial_fit(pca.transform(X))
    assert_array_equal(pca.components_, components)
    assert_array_equal(pipe[-1].mean_, lone.mean_)


def test_frozen_step_with_partial_fit_is_not_updated():
    X0, _ = next(batches(1, 60, seed=5))
    scaler = StandardScaler().fit(X0)
    pipe = make_streaming_pipeline(FrozenEstimator(scaler), BatchNormalizer())
    for X, _ in batches():
        pipe.partial_fit(X)
    assert scaler.n_samples_seen_ == 60
    assert_array_equal(scaler.mean_, X0.mean(axis=0))


def test_step_that_cannot_stream_is_named_in_the_error():
    pipe = make_streaming_pipeline(BatchNormalizer(), PCA(), SGDRegressor())
    X, y = next(batches())
    with pytest.raises(ValueError, match=r"Step 'pca' \(PCA\) cannot learn from a"):
        pipe.partial_fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe[0])


def test_partial_fit_is_offered_only_if_the_final_step_can_stream():
    X, y = next(batches())
    pipe = make_streaming_pipeline(BatchNormalizer(), LogisticRegression())
    assert not hasattr(pipe, "partial_fit")
    pipe[-1].fit(X, y)
    assert hasattr(pipe, "partial_fit")
    coef = pipe[-1].coef_.copy()
    pipe.partial_fit(X, y)
    assert_array_equal(pipe[-1].coef_, coef)
    assert pipe[0].n_samples_seen_ == X.shape[0]


def test_partial_fit_with_passthrough_final_step():
    pipe = StreamingPipeline([("norm", BatchNormalizer()), ("last", "passthrough")])
    lone = BatchNormalizer()
    for X, _ in batches():
        pipe.partial_fit(X)
        lone.partial_fit(X)
    X_test, _ = next(batches(1, 10, seed=6))
    assert_array_equal(pipe.transform(X_test), lone.transform(X_test))


# -- parameters of partial_fit ------------------------------------------------


def test_step_params_and_final_params_are_routed():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    norm, clf = BatchNormalizer(), SGDClassifier(random_state=0)
    rng = np.random.default_rng(7)
    for X, y in batches():
        w = rng.uniform(0.0, 2.0, size=X.shape[0])
        pipe.partial_fit(
            X, y, classes=[0, 1], sample_weight=w, batchnormalizer__sample_weight=w
        )
        norm.partial_fit(X, sample_weight=w)
        clf.partial_fit(norm.transform(X), y, classes=[0, 1], sample_weight=w)
    assert_array_equal(pipe[0].mean_, norm.mean_)
    assert_array_equal(pipe[0].var_, norm.var_)
    assert_array_equal(pipe[-1].coef_, clf.coef_)


def test_routing_is_the_same_with_metadata_routing_enabled():
    X, y = next(batches())
    w = np.random.default_rng(9).uniform(0.0, 2.0, size=X.shape[0])
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    with sklearn.config_context(enable_metadata_routing=True):
        pipe.partial_fit(X, y, classes=[0, 1], batchnormalizer__sample_weight=w)
    assert_allclose(pipe[0].mean_, np.average(X, axis=0, weights=w), rtol=1e-13)


def test_unprefixed_params_go_to_the_final_step_only():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDRegressor(random_state=0))
    X, y = next(batches())
    w = np.zeros(X.shape[0])
    w[:5] = 1.0
    pipe.partial_fit(X, y, sample_weight=w)
    assert_allclose(pipe[0].mean_, X.mean(axis=0), rtol=1e-13)


def test_param_for_unknown_step_is_rejected():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDRegressor())
    X, y = next(batches())
    with pytest.raises(ValueError, match="there is no step named 'scaler'"):
        pipe.partial_fit(X, y, scaler__sample_weight=np.ones(len(y)))


def test_param_for_step_that_does_not_learn_is_rejected():
    pipe = make_streaming_pipeline(FunctionTransformer(), BatchNormalizer())
    X, _ = next(batches())
    with pytest.raises(ValueError, match="'functiontransformer', which does not"):
        pipe.partial_fit(X, functiontransformer__sample_weight=np.ones(len(X)))
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe[-1])


# -- nothing is lost ----------------------------------------------------------


def test_failing_partial_fit_leaves_every_step_as_it_was():
    pipe = make_streaming_pipeline(
        BatchNormalizer(), MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    )
    first, second = list(batches(2))
    pipe.partial_fit(*first, classes=[0, 1])
    before = copy.deepcopy(pipe)
    X, y = second
    y = y.copy()
    y[0] = 7  # not among the classes: the MLP raises after the normalizer learned
    with pytest.raises(ValueError, match="7"):
        pipe.partial_fit(X, y)
    assert_array_equal(pipe[0].mean_, before[0].mean_)
    assert pipe[0].n_samples_seen_ == before[0].n_samples_seen_
    for ours, theirs in zip(pipe[-1].coefs_, before[-1].coefs_, strict=True):
        assert_array_equal(ours, theirs)
    # and the stream goes on as if the bad batch had never come
    pipe.partial_fit(*second)
    before.partial_fit(*second)
    assert_array_equal(pipe.predict_proba(X), before.predict_proba(X))


def test_step_that_cannot_be_pickled_is_restored_too():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    first, (X, y) = list(batches(2))
    pipe.partial_fit(*first, classes=[0, 1])
    mean = pipe[0].mean_.copy()
    pipe[0].callback_ = lambda: "kept"  # lambdas cannot be pickled
    with pytest.raises(ValueError, match="classes should include all valid"):
        pipe.partial_fit(X, np.full_like(y, 7))
    assert_array_equal(pipe[0].mean_, mean)
    assert pipe[0].callback_() == "kept"


def test_failing_fit_leaves_every_step_as_it_was():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    X, y = next(batches())
    pipe.partial_fit(X, y, classes=[0, 1])
    mean, coef = pipe[0].mean_.copy(), pipe[-1].coef_.copy()
    with pytest.raises(ValueError, match="sample_weight"):
        pipe.fit(X[:10] * 3, y[:10], sgdclassifier__sample_weight=np.ones(3))
    assert_array_equal(pipe[0].mean_, mean)
    assert_array_equal(pipe[-1].coef_, coef)


# -- as a Pipeline --------------------------------------------------------------


def test_fit_matches_pipeline():
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    ours = make_streaming_pipeline(BatchNormalizer(), LogisticRegression()).fit(X, y)
    theirs = make_pipeline(BatchNormalizer(), LogisticRegression()).fit(X, y)
    assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))


def test_fit_then_partial_fit_continues_the_stream():
    X, y = next(batches(1, 80))
    X2, y2 = next(batches(1, 80, seed=8))
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    pipe.fit(X, y)
    pipe.partial_fit(X2, y2)
    assert_allclose(pipe[0].mean_, np.vstack([X, X2]).mean(axis=0), rtol=1e-13)


def test_clone_and_slicing_keep_the_class():
    pipe = make_streaming_pipeline(BatchNormalizer(momentum=0.1), SGDRegressor())
    pipe.partial_fit(*next(batches()))
    cloned = clone(pipe)
    assert isinstance(cloned, StreamingPipeline)
    assert cloned.get_params()["batchnormalizer__momentum"] == 0.1
    with pytest.raises(NotFittedError):
        check_is_fitted(cloned)
    assert isinstance(pipe[:1], StreamingPipeline)
    assert_array_equal(
        pipe[:1].transform(np.ones((1, 3))), pipe[0].transform(np.ones((1, 3)))
    )


def test_grid_search_and_cross_val_score_match_pipeline():
    X, y = make_classification(n_samples=150, n_features=4, random_state=1)
    X = X * [1.0, 10.0, 1e3, 1e5]
    grid = {"batchnormalizer__clip": [None, 1.0], "sgdclassifier__alpha": [1e-4, 1e-2]}
    ours = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    theirs = make_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    search = GridSearchCV(ours, grid, cv=3).fit(X, y)
    reference = GridSearchCV(theirs, grid, cv=3).fit(X, y)
    assert_array_equal(
        search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"]
    )
    assert isinstance(search.best_estimator_, StreamingPipeline)
    search.best_estimator_.partial_fit(X[:20], y[:20])
    assert search.best_estimator_[0].n_samples_seen_ == 170
    assert_array_equal(
        cross_val_score(ours, X, y, cv=3), cross_val_score(theirs, X, y, cv=3)
    )


def test_not_fitted_until_every_step_is():
    pipe = make_streaming_pipeline(BatchNormalizer(), FunctionTransformer())
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe)
    pipe.partial_fit(next(batches())[0])
    check_is_fitted(pipe)


def test_nan_support_is_the_common_support_of_the_steps():
    from sklearn.utils import get_tags

    assert get_tags(make_streaming_pipeline(BatchNormalizer())).input_tags.allow_nan
    assert not get_tags(
        make_streaming_pipeline(BatchNormalizer(), SGDRegressor())
    ).input_tags.allow_nan


def test_verbose_reports_each_step(capsys):
    pipe = make_streaming_pipeline(
        BatchNormalizer(), FunctionTransformer(), SGDRegressor(), verbose=True
    )
    pipe.partial_fit(*next(batches()))
    out = capsys.readouterr().out
    assert "(step 1 of 3) partial_fit batchnormalizer (learns)" in out
    assert "(step 2 of 3) partial_fit functiontransformer (as is)" in out


def test_dataframe_in_and_out():
    pd = pytest.importorskip("pandas")
    X, y = next(batches())
    frame = pd.DataFrame(X, columns=["small", "medium", "large"])
    pipe = make_streaming_pipeline(BatchNormalizer(), BatchNormalizer(momentum=0.5))
    pipe.set_output(transform="pandas")
    pipe.partial_fit(frame)
    assert_array_equal(pipe.feature_names_in_, ["small", "medium", "large"])
    out = pipe.transform(frame)
    assert list(out.columns) == ["small", "medium", "large"]
    lone = BatchNormalizer().partial_fit(X)
    Z = lone.transform(X)
    assert_array_equal(
        out.to_numpy(), BatchNormalizer(momentum=0.5).fit(Z).transform(Z)
    )


def test_sparse_batches_stream_through():
    pipe = make_streaming_pipeline(
        BatchNormalizer(with_mean=False), SGDRegressor(random_state=0)
    )
    lone = BatchNormalizer(with_mean=False)
    for X, y in batches():
        X = sp.csr_matrix(np.where(X > X.mean(axis=0), X, 0.0))
        pipe.partial_fit(X, y)
        lone.partial_fit(X)
    assert_array_equal(pipe[0].var_, lone.var_)


# -- steps --------------------------------------------------------------------


def test_make_streaming_pipeline_names_steps_as_make_pipeline():
    steps = (BatchNormalizer(), "passthrough", BatchNormalizer(), SGDRegressor())
    ours = make_streaming_pipeline(*steps, verbose=True)
    assert [n for n, _ in ours.steps] == [n for n, _ in make_pipeline(*steps).steps]
    assert ours.verbose


@pytest.mark.parametrize(
    "steps, error, match",
    [
        ([], ValueError, "The pipeline is empty"),
        ([BatchNormalizer()], TypeError, r"list of \(name, estimator\) tuples"),
        (
            [("a", BatchNormalizer()), ("a", BatchNormalizer())],
            ValueError,
            r"unique; repeated: \['a'\]",
        ),
        (
            [("norm__1", BatchNormalizer()), ("model", SGDRegressor())],
            ValueError,
            r"strings without '__'.*\['norm__1'\]",
        ),
        (
            [("model", SGDRegressor()), ("norm", BatchNormalizer())],
            TypeError,
            "Intermediate step 'model' \\(SGDRegressor\\) has no transform",
        ),
    ],
)
def test_malformed_steps_are_reported(steps, error, match):
    X, y = next(batches())
    with pytest.raises(error, match=match):
        StreamingPipeline(steps).partial_fit(X, y)


def test_pipeline_is_a_pipeline():
    assert issubclass(StreamingPipeline, Pipeline)
    assert (
        "transform_input"
        not in StreamingPipeline([("n", BatchNormalizer())]).get_params()
    )
