"""Tests for StreamingPipeline and make_streaming_pipeline."""

import copy
import inspect
import types

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    LogisticRegression,
    Perceptron,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from sklearn.utils.estimator_checks import (
    check_dont_overwrite_parameters,
    check_estimators_overwrite_params,
    parametrize_with_checks,
)
from sklearn.utils.validation import check_is_fitted

from sknorm import BatchNormalizer, StreamingPipeline, make_streaming_pipeline
from sknorm._rollback import _JOURNAL_MEMORY, RollbackJournal

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


# -- rollback -----------------------------------------------------------------


def assert_same_state(ours, theirs, path="step"):
    """Assert that two objects hold equal state, following attributes deeply."""
    assert type(ours) is type(theirs), path
    if isinstance(ours, np.ndarray):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, path
        assert_array_equal(ours, theirs, err_msg=path)
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(theirs), path
        for idx, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_state(a, b, f"{path}[{idx}]")
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), f"{path}: {ours.keys() ^ theirs.keys()}"
        for key in ours:
            assert_same_state(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, np.random.RandomState):
        assert_same_state(ours.get_state(), theirs.get_state(), path)
    elif isinstance(ours, float | np.floating) and np.isnan(ours):
        assert np.isnan(theirs), path
    elif isinstance(ours, str | bytes | int | float | complex | np.generic):
        assert ours == theirs, path
    elif hasattr(ours, "__dict__") and not isinstance(ours, type):
        # caches that pickles and copies leave out
        transient = getattr(type(ours), "_transient_attributes", ())

        def state(obj):
            return {k: v for k, v in vars(obj).items() if k not in transient}

        assert_same_state(state(ours), state(theirs), path)


def test_assert_same_state_sees_changes_in_place():
    est = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    est.partial_fit(*next(batches()), classes=[0, 1])
    before = copy.deepcopy(est)
    weight = est.coefs_[0][0, 0]
    est.coefs_[0][0, 0] += 1.0
    with pytest.raises(AssertionError, match=r"coefs_\[0\]"):
        assert_same_state(est, before)
    est.coefs_[0][0, 0] = weight
    est.loss_curve_.append(0.5)
    with pytest.raises(AssertionError, match="loss_curve_"):
        assert_same_state(est, before)


def _mlp_classifier():
    return MLPClassifier(hidden_layer_sizes=(4,), random_state=0)


def _mlp_regressor():
    return MLPRegressor(hidden_layer_sizes=(4,), random_state=0)


LEARNERS = {
    "MLPClassifier": (_mlp_classifier, True),
    "MLPRegressor": (_mlp_regressor, False),
    "SGDClassifier": (lambda: SGDClassifier(random_state=0), True),
    "SGDRegressor": (lambda: SGDRegressor(random_state=0), False),
    "Perceptron": (lambda: Perceptron(random_state=0), True),
}


def _bad_batches(classifier):
    """Batches the final step rejects after the normalizer in front learned."""
    X, y = next(batches(1, seed=11))
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    cases = {
        "fewer features": (X[:, :2], y, {}),
        "NaN in X": (X_nan, y, {}),
        "y too short": (X, y[:-1], {}),
        "sample_weight too short": (X, y, {"sample_weight": np.ones(3)}),
        "NaN in y": (X, np.where(np.arange(len(y)) == 2, np.nan, y), {}),
    }
    if classifier:
        cases["class not in classes"] = (X, np.where(y == 0, 7, y), {})
        cases["y of another type"] = (X, np.c_[y, y], {})
    else:
        cases["y with two columns"] = (X, np.c_[y, y].astype(float), {})
    return cases


@pytest.mark.parametrize("rollback", ["validated", "full"])
@pytest.mark.parametrize("learner", LEARNERS)
def test_batch_the_final_step_rejects_leaves_every_step_as_it_was(learner, rollback):
    make, classifier = LEARNERS[learner]
    pipe = make_streaming_pipeline(BatchNormalizer(), make(), rollback=rollback)
    classes = {"classes": [0, 1]} if classifier else {}
    first, second = list(batches(2))
    pipe.partial_fit(*first, **classes)
    takes_weights = (
        "sample_weight" in inspect.signature(pipe[-1].partial_fit).parameters
    )
    for case, (X, y, params) in _bad_batches(classifier).items():
        if "sample_weight" in params and not takes_weights:
            continue  # MLPs take sample_weight since scikit-learn 1.7
        before = copy.deepcopy(pipe)
        with pytest.raises(ValueError):
            pipe.partial_fit(X, y, **params)
        for idx in range(2):
            assert_same_state(pipe[idx], before[idx], f"{case}: step {idx}")
    # the stream goes on as if the bad batches had never come
    reference = copy.deepcopy(pipe)
    pipe.partial_fit(*second)
    reference.partial_fit(*second)
    assert_array_equal(pipe.predict(second[0]), reference.predict(second[0]))


def test_rejected_batch_is_rolled_back_without_copying_the_weights():
    # the final step is the last to run: a copy of its __dict__ is enough
    pipe = make_streaming_pipeline(BatchNormalizer(), _mlp_classifier())
    pipe.partial_fit(*next(batches()), classes=[0, 1])
    weights = pipe[-1].coefs_[0]
    with pytest.raises(ValueError, match="classes"):
        X, y = next(batches(seed=3))
        pipe.partial_fit(X, np.full_like(y, 5))
    assert pipe[-1].coefs_[0] is weights
    assert not pipe[-1].loss_curve_[1:]


@pytest.mark.filterwarnings("ignore:overflow|invalid value:RuntimeWarning")
def test_sgd_overflow_after_updating_is_rolled_back_by_default():
    # SGD raises on floating-point overflow after writing into coef_
    pipe = make_streaming_pipeline(FunctionTransformer(), SGDRegressor(random_state=0))
    X, y = next(batches())
    pipe.partial_fit(X, y)
    before = copy.deepcopy(pipe[-1])
    with pytest.raises(ValueError, match="overflow"):
        pipe.partial_fit(X * 1e300, y)
    assert_same_state(pipe[-1], before)
    assert np.isfinite(pipe[-1].coef_).all()


@pytest.mark.filterwarnings("ignore:overflow|invalid value:RuntimeWarning")
def test_mlp_whose_weights_diverge_is_rolled_back_with_full():
    # the MLP checks its weights for inf/NaN only after the update
    pipe = make_streaming_pipeline(BatchNormalizer(), _mlp_regressor(), rollback="full")
    X, y = next(batches())
    pipe.partial_fit(X, y.astype(float))
    pipe.partial_fit(X, y.astype(float))
    before = copy.deepcopy(pipe)
    weights = pipe[-1].coefs_[0]
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        pipe.partial_fit(X, np.full(len(y), 1e308))
    assert_same_state(pipe[0], before[0])
    assert_same_state(pipe[-1], before[-1])
    assert pipe[-1].coefs_[0] is weights  # restored in place
    pipe.partial_fit(X, y.astype(float))
    before.partial_fit(X, y.astype(float))
    assert_array_equal(pipe.predict(X), before.predict(X))


class InPlaceLearner(TransformerMixin, BaseEstimator):
    """A transformer of another library that updates its state in place.

    It adds each batch's column sums into ``total_``, appends to ``history_``,
    keeps a helper object with arrays, draws from a random generator, and
    raises (after all that) on a batch with NaN.
    """

    def partial_fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        if not hasattr(self, "total_"):
            self.total_ = np.zeros(X.shape[1])
            self.history_ = []
            self.helper_ = types.SimpleNamespace(moments=[np.zeros(X.shape[1])], step=0)
            self.rng_ = np.random.RandomState(0)
        self.total_ += X.sum(axis=0)
        self.history_.append(float(X.sum()))
        self.helper_.moments[0] += X.mean(axis=0)
        self.helper_.step += 1
        self.noise_ = self.rng_.uniform()
        if np.isnan(X).any():
            raise ValueError("NaN in the batch")
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float) - self.total_


@pytest.mark.parametrize("rollback", ["validated", "full"])
@pytest.mark.parametrize("where", ["before the final step", "final step"])
def test_update_in_place_is_rolled_back(rollback, where):
    X = next(batches())[0]
    steps = [InPlaceLearner(), BatchNormalizer()]
    if where == "final step":
        steps = steps[::-1]
    pipe = make_streaming_pipeline(*steps, rollback=rollback)
    pipe.partial_fit(X)
    before = copy.deepcopy(pipe)
    bad = X.copy()
    bad[0, 0] = np.nan  # the normalizer lets it through
    with pytest.raises(ValueError, match="NaN in the batch"):
        pipe.partial_fit(bad)
    learner = pipe.named_steps["inplacelearner"]
    if where == "final step" and rollback == "validated":
        # documented: the final step's changes in place are undone by "full" only
        assert len(learner.history_) == 2
        return
    for idx in range(2):
        assert_same_state(pipe[idx], before[idx], f"step {idx}")


@pytest.mark.parametrize("rollback", ["validated", "full"])
def test_step_that_succeeded_before_a_later_failure_is_rolled_back(rollback):
    pipe = make_streaming_pipeline(
        InPlaceLearner(), SGDClassifier(random_state=0), rollback=rollback
    )
    X, y = next(batches())
    pipe.partial_fit(X, y, classes=[0, 1])
    before = copy.deepcopy(pipe)
    with pytest.raises(ValueError, match="classes"):
        pipe.partial_fit(X, np.full_like(y, 5))
    assert_same_state(pipe[0], before[0])
    assert_same_state(pipe[1], before[1])


def test_rollback_cost_does_not_grow_with_the_history():
    pipe = make_streaming_pipeline(BatchNormalizer(), _mlp_classifier())
    X, y = next(batches())
    pipe.partial_fit(X, y, classes=[0, 1])
    history = pipe[-1].loss_curve_
    history.extend([0.5] * 100_000)  # a long stream's loss curve
    journal = RollbackJournal()
    journal.record(pipe[-1], deep=True)
    # the history is recorded by its length, not copied
    assert [
        (length, kept) for items, length, kept in journal._lists if items is history
    ] == [(100_001, None)]
    history.append(1.0)
    journal.restore()
    assert len(pipe[-1].loss_curve_) == 100_001
    assert pipe[-1].loss_curve_ is history


def test_full_rollback_reuses_its_buffers_from_batch_to_batch():
    pipe = make_streaming_pipeline(
        BatchNormalizer(), _mlp_classifier(), rollback="full"
    )
    X, y = next(batches())
    pipe.partial_fit(X, y, classes=[0, 1])
    pipe.partial_fit(X, y)  # learns which arrays the MLP writes into
    pipe.partial_fit(X, y)
    buffers = [id(buffer) for buffer in _JOURNAL_MEMORY[pipe].buffers]
    pipe.partial_fit(X, y)
    assert (
        buffers and [id(buffer) for buffer in _JOURNAL_MEMORY[pipe].buffers] == buffers
    )
    # the journal lives outside the pipeline: pickles and clones do not carry it
    assert not any("journal" in key or "buffer" in key for key in vars(pipe))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["array", "append", "item", "dict", "rng"]),
            st.floats(-1e3, 1e3),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_journal_restores_any_mix_of_changes(changes):
    state = types.SimpleNamespace(
        array=np.arange(4.0),
        history=[1.0, 2.0],
        layers=[np.ones(2), np.zeros(3)],
        table={"a": np.ones(2), "b": 1},
        rng=np.random.RandomState(1),
    )
    before = copy.deepcopy(state)
    journal = RollbackJournal()
    journal.record_everything(state)
    for kind, value in changes:
        if kind == "array":
            state.array[int(abs(value)) % 4] = value
        elif kind == "append":
            state.history.append(value)
        elif kind == "item":
            state.layers[0] = np.full(2, value)
            state.layers[1] += value
        elif kind == "dict":
            state.table["a"] *= value
            state.table[str(value)] = value
        else:
            state.rng.uniform()
    journal.restore()
    assert_same_state(state, before)


@pytest.mark.parametrize("rollback", ["validated", "full"])
def test_nested_streaming_composites_are_rolled_back(rollback):
    inner = make_streaming_pipeline(StandardScaler(), BatchNormalizer())
    pipe = make_streaming_pipeline(inner, _mlp_classifier(), rollback=rollback)
    X, y = next(batches())
    pipe.partial_fit(X, y, classes=[0, 1])
    before = copy.deepcopy(pipe)
    with pytest.raises(ValueError, match="classes"):
        pipe.partial_fit(X, np.full_like(y, 9))
    assert_same_state(pipe[0][0], before[0][0])  # a scaler of another library
    assert_same_state(pipe[0][1], before[0][1])


def test_rollback_is_validated():
    pipe = make_streaming_pipeline(BatchNormalizer(), rollback="everything")
    with pytest.raises(ValueError, match="rollback"):
        pipe.partial_fit(np.ones((2, 2)))


def test_slicing_keeps_the_rollback_setting():
    pipe = make_streaming_pipeline(BatchNormalizer(), SGDRegressor(), rollback="full")
    assert pipe[:1].rollback == "full"
    assert make_streaming_pipeline(BatchNormalizer()).rollback == "validated"


# -- steps that cannot follow a stream ------------------------------------------


def test_final_step_without_partial_fit_is_named_with_what_to_use():
    pipe = make_streaming_pipeline(BatchNormalizer(), LogisticRegression())
    assert not hasattr(pipe, "partial_fit")
    with pytest.raises(
        AttributeError,
        match=r"final step.*'logisticregression' \(LogisticRegression\).*"
        r"Use SGDClassifier\(loss='log_loss'\)",
    ):
        pipe.partial_fit  # noqa: B018


def _column_transformer(inner):
    return make_column_transformer((inner, [0, 1]), remainder="passthrough")


@pytest.mark.parametrize(
    "composite, path, alternative",
    [
        (
            lambda: _column_transformer(BatchNormalizer()),
            "batchnormalizer",
            "StreamingColumnTransformer",
        ),
        (
            lambda: make_union(BatchNormalizer(), FunctionTransformer()),
            "batchnormalizer",
            "StreamingFeatureUnion",
        ),
        (
            lambda: make_pipeline(FunctionTransformer(), StandardScaler()),
            "standardscaler",
            "StreamingPipeline",
        ),
        (
            lambda: _column_transformer(make_pipeline(PCA(1), BatchNormalizer())),
            "pipeline__batchnormalizer",
            "StreamingColumnTransformer",
        ),
    ],
)
@pytest.mark.parametrize("fitted", [False, True])
def test_composite_that_would_freeze_a_learner_is_an_error(
    composite, path, alternative, fitted
):
    X, y = next(batches())
    step = composite()
    if fitted:
        step.fit(X)
    pipe = make_streaming_pipeline(step, SGDClassifier(random_state=0))
    with pytest.raises(
        ValueError,
        match=rf"holds '{path}'.*which learns with partial_fit.*Use {alternative}",
    ):
        pipe.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(pipe[-1], "coef_")


def test_frozen_composite_is_applied_as_it_is():
    X, y = next(batches())
    fitted = _column_transformer(BatchNormalizer()).fit(X)
    mean = fitted.named_transformers_["batchnormalizer"].mean_
    pipe = make_streaming_pipeline(
        FrozenEstimator(fitted), SGDClassifier(random_state=0)
    )
    for X, y in batches():
        pipe.partial_fit(X, y, classes=[0, 1])
    assert fitted.named_transformers_["batchnormalizer"].mean_ is mean


def test_final_composite_that_cannot_stream_is_named():
    pipe = make_streaming_pipeline(
        BatchNormalizer(), _column_transformer(StandardScaler())
    )
    with pytest.raises(AttributeError, match="holds 'standardscaler'"):
        pipe.partial_fit  # noqa: B018


# -- categorical columns ------------------------------------------------------


def test_encoder_given_its_categories_is_fitted_on_the_first_batch():
    rng = np.random.default_rng(12)
    categories = [[0.0, 1.0, 2.0, 3.0]]
    pipe = make_streaming_pipeline(
        OneHotEncoder(
            categories=categories, handle_unknown="ignore", sparse_output=False
        ),
        BatchNormalizer(),
    )
    lone = BatchNormalizer()
    reference = OneHotEncoder(categories=categories, sparse_output=False)
    for _ in range(4):
        X = rng.integers(0, 2, size=(20, 1)).astype(float)  # 2 and 3 come later
        pipe.partial_fit(X)
        lone.partial_fit(reference.fit_transform(X))
    assert_array_equal(pipe[0].categories_[0], categories[0])
    assert_array_equal(pipe[-1].mean_, lone.mean_)
    assert_array_equal(
        pipe.transform([[3.0], [9.0]]), lone.transform([[0, 0, 0, 1], [0, 0, 0, 0]])
    )


@pytest.mark.parametrize(
    "encoder, match",
    [
        (OneHotEncoder(), r"categories=\[\.\.\.\], handle_unknown='ignore'"),
        (
            OrdinalEncoder(),
            r"categories=\[\.\.\.\], handle_unknown='use_encoded_value'",
        ),
        (
            OneHotEncoder(categories=[[0.0, 1.0]], min_frequency=5),
            "min_frequency, max_categories",
        ),
    ],
)
def test_encoder_that_would_learn_categories_from_one_batch_is_an_error(encoder, match):
    pipe = make_streaming_pipeline(encoder, BatchNormalizer())
    X = np.array([[0.0], [1.0]])
    with pytest.raises(ValueError, match=match):
        pipe.partial_fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(encoder)


def test_encoder_fitted_on_the_first_batch_is_unfitted_after_a_failure():
    encoder = OneHotEncoder(categories=[[0.0, 1.0]], sparse_output=False)
    pipe = make_streaming_pipeline(encoder, SGDClassifier(random_state=0))
    with pytest.raises(ValueError, match="classes"):
        pipe.partial_fit(np.array([[0.0], [1.0]]), [0, 1])  # no classes=
    with pytest.raises(NotFittedError):
        check_is_fitted(encoder)


@pytest.mark.parametrize("rollback", ["validated", "full"])
def test_guarded_update_that_runs_again_learns_the_batch_once(rollback):
    # with "full", the MLP's arrays are guarded: its first write into coefs_
    # is refused, undone, and the batch runs again with the weights copied
    pipe = make_streaming_pipeline(
        BatchNormalizer(), _mlp_classifier(), rollback=rollback
    )
    norm, mlp = BatchNormalizer(), _mlp_classifier()
    for X, y in batches(4):
        pipe.partial_fit(X, y, classes=[0, 1])
        mlp.partial_fit(norm.partial_fit(X).transform(X), y, classes=[0, 1])
    assert_same_state(pipe[-1], mlp)
    assert len(pipe[-1].loss_curve_) == 4


def test_full_rollback_copies_only_the_arrays_the_mlp_writes_into():
    pipe = make_streaming_pipeline(
        BatchNormalizer(), _mlp_classifier(), rollback="full"
    )
    for X, y in batches(3):
        pipe.partial_fit(X, y, classes=[0, 1])
    written = _JOURNAL_MEMORY[pipe].written
    assert written == {
        ("MLPClassifier", attr, layer)
        for attr in ("coefs_", "intercepts_")
        for layer in range(2)
    }
    mlp = pipe[-1]
    arrays = [*mlp.coefs_, *mlp.intercepts_, *mlp._best_coefs, *mlp._optimizer.ms]
    assert all(array.flags.writeable for array in arrays)  # guards are lifted
