"""The guarantees the streaming base gives every estimator, tested on each.

Parameters validated on every call, fitted arrays that never alias the state,
one infinity message, all-or-nothing updates, versioned checkpoints that name
only public classes, merge, ``batch_size``, and the edge cases of the exact
mode (overflow, NaN in rows of weight 0).
"""

import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

import sknorm
from sknorm import (
    BatchNormalizer,
    GroupNormalizer,
    LayerNormalizer,
    QuantileNormalizer,
    RobustNormalizer,
    StreamingImputer,
)

ESTIMATORS = [
    BatchNormalizer(),
    BatchNormalizer(momentum=0.3),
    BatchNormalizer(half_life=20.0, clip=3.0),
    RobustNormalizer(sketch_size=16, random_state=0),
    QuantileNormalizer(n_quantiles=20, sketch_size=128, random_state=0),
    LayerNormalizer(),
    GroupNormalizer(n_groups=2),
    StreamingImputer(),
    StreamingImputer(strategy="median", sketch_size=16, random_state=0),
    StreamingImputer(strategy="most_frequent", add_indicator=True),
    StreamingImputer(strategy="constant", keep_empty_features=True),
]
IDS = [repr(e) for e in ESTIMATORS]


def data(seed=0, n=40, p=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * [1.0, 10.0, 1e3, 0.1] + [0.0, 5.0, -1e4, 3.0]
    X[rng.random(X.shape) < 0.05] = np.nan
    return X


def fitted_state(est) -> dict:
    """Everything an estimator has learned (parameters and caches left out)."""
    skip = set(est._transient_attributes) | set(est.get_params())
    state = {k: v for k, v in est.__dict__.items() if k not in skip}
    if "_state" in state:
        # The checkpoint form: a sketch may hold the same items in other chunks.
        state["_state"] = est._state_to_dict(state["_state"])
    return state


def assert_same(a, b, path="state"):
    """Recursive exact equality of fitted states (arrays bit for bit)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b or (a != a and b != b), path


def outputs(est, X):
    X = np.nan_to_num(X, nan=1.0)
    return est.transform(X)


# -- one policy, everywhere -----------------------------------------------------

BAD_PARAMS = {
    "BatchNormalizer": [{"eps": -5}, {"clip": -1}, {"with_mean": "yes"}],
    "RobustNormalizer": [{"sketch_size": 2}, {"with_centering": "yes"}],
    "QuantileNormalizer": [{"n_quantiles": 0}, {"output_distribution": "cauchy"}],
    "LayerNormalizer": [{"eps": -1.0}, {"with_std": "no"}],
    "GroupNormalizer": [{"n_groups": 0}, {"eps": -1e-3}],
    "StreamingImputer": [{"strategy": "mode"}, {"sketch_size": 2}],
}


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_parameters_are_validated_on_every_call(estimator):
    X = data()
    for bad in BAD_PARAMS[type(estimator).__name__]:
        est = clone(estimator).partial_fit(X[:20])
        before = fitted_state(est)
        est.set_params(**bad)
        with pytest.raises(InvalidParameterError, match="parameter of"):
            est.partial_fit(X[20:])
        assert_same(fitted_state(est), before)
        with pytest.raises(InvalidParameterError, match="parameter of"):
            est.fit(X)
        assert_same(fitted_state(est), before)
        # Assigning the attribute directly is caught too.
        est.set_params(**clone(estimator).get_params())
        name, value = next(iter(bad.items()))
        setattr(est, name, value)
        with pytest.raises(InvalidParameterError):
            est.partial_fit(X[20:])
        assert_same(fitted_state(est), before)


def test_invalid_parameters_no_longer_give_silent_wrong_answers():
    X = data()
    est = BatchNormalizer().partial_fit(X)
    est.set_params(eps=-5)
    with pytest.raises(InvalidParameterError, match="'eps'"):
        est.partial_fit(X)
    assert np.all(np.isfinite(est.scale_))
    est.set_params(eps=0.0, clip=-1)
    with pytest.raises(InvalidParameterError, match="'clip'"):
        est.transform(X)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_fitted_arrays_do_not_alias_the_state(estimator):
    X, Y = data(0), data(1)
    est = clone(estimator).partial_fit(X)
    twin = clone(estimator).partial_fit(X)
    for name in dir(est):
        if name.endswith("_") and not name.startswith("_"):
            value = getattr(est, name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                value *= 0  # a user writing into a fitted attribute
    est.partial_fit(Y)
    twin.partial_fit(Y)
    np.testing.assert_array_equal(outputs(est, Y), outputs(twin, Y))


def test_writing_into_weight_sum_does_not_move_the_mean():
    rng = np.random.default_rng(0)
    norm = BatchNormalizer().partial_fit(rng.normal(2.0, 1.0, (50, 1)))
    twin = copy.deepcopy(norm)
    norm.weight_sum_ *= 0
    batch = rng.normal(7.0, 1.0, (50, 1))
    np.testing.assert_array_equal(
        norm.partial_fit(batch).mean_, twin.partial_fit(batch).mean_
    )


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_the_same_infinity_message_everywhere(estimator):
    X = data()
    bad = np.nan_to_num(X.copy(), nan=0.0)
    bad[3, 1] = np.inf
    expected = r"Input X contains infinity in feature\(s\) 1\. NaN marks a missing"
    est = clone(estimator)
    with pytest.raises(ValueError, match=expected):
        est.fit(bad)
    est.fit(X)
    with pytest.raises(ValueError, match=expected):
        est.partial_fit(bad)
    with pytest.raises(ValueError, match=expected):
        est.transform(bad)
    with pytest.raises(ValueError, match=expected):
        est.transform(bad.tolist())  # the general path says the same
    if hasattr(est, "inverse_transform"):
        with pytest.raises(ValueError, match=expected):
            est.inverse_transform(bad)


def test_public_names_are_exported_and_name_the_public_module():
    for name in sknorm.__all__:
        if name == "__version__":
            continue
        assert getattr(sknorm, name).__module__ == "sknorm", name
    assert issubclass(sknorm.SparseCenteringError, ValueError)
    assert sknorm.GroupStats._fields == ("center", "scale")
    blob = pickle.dumps(BatchNormalizer().fit(data()))
    assert b"sknorm._batch" not in blob and b"BatchNormalizer" in blob


# -- checkpoints for every estimator ----------------------------------------------


@pytest.mark.parametrize("how", ["pickle", "skops"])
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_every_estimator_resumes_bit_identically_from_a_checkpoint(estimator, how):
    batches = [data(seed) for seed in range(4)]
    uninterrupted = clone(estimator)
    for b in batches:
        uninterrupted.partial_fit(b)
    resumed = clone(estimator).partial_fit(batches[0]).partial_fit(batches[1])
    if how == "pickle":
        resumed = pickle.loads(pickle.dumps(resumed))
    else:
        sio = pytest.importorskip("skops.io")
        blob = sio.dumps(resumed)
        name = type(estimator).__name__
        assert sio.get_untrusted_types(data=blob) == [f"sknorm.{name}"]
        resumed = sio.loads(blob, trusted=[f"sknorm.{name}"])
    for b in batches[2:]:
        resumed.partial_fit(b)
    assert_same(fitted_state(resumed), fitted_state(uninterrupted))
    np.testing.assert_array_equal(
        outputs(resumed, batches[0]), outputs(uninterrupted, batches[0])
    )


# -- merge ----------------------------------------------------------------------

MERGEABLE = [e for e in ESTIMATORS if hasattr(e, "merge")]


@pytest.mark.parametrize("estimator", MERGEABLE, ids=repr)
def test_merge_is_offered_where_it_is_defined(estimator):
    X = data(0, n=60)
    left = clone(estimator).fit(X[:30])
    right = clone(estimator).fit(X[30:])
    if getattr(estimator, "momentum", None) is not None:
        with pytest.raises(ValueError, match="not defined for the momentum mode"):
            left.merge(right)
        return
    before = fitted_state(right)
    merged = left.merge(right)
    assert merged is left
    assert_same(fitted_state(right), before)  # other is not changed
    assert merged.n_samples_seen_ is not None


def test_row_normalizers_offer_no_merge():
    assert not hasattr(LayerNormalizer(), "merge")
    assert not hasattr(GroupNormalizer(), "merge")
    assert not hasattr(LayerNormalizer(), "inverse_transform")


# -- batch_size -------------------------------------------------------------------


def test_batch_size_streams_fit_in_consecutive_batches():
    X = data(3, n=103)
    fitted = BatchNormalizer(momentum=0.2, batch_size=10).fit(X)
    streamed = BatchNormalizer(momentum=0.2)
    # 103 rows: ten batches of 10, the last holding 13 (a remainder of 3
    # rows makes a batch of its own; only a 1-row remainder joins).
    for start in range(0, 100, 10):
        streamed.partial_fit(X[start : start + 10])
    streamed.partial_fit(X[100:])
    np.testing.assert_array_equal(fitted.mean_, streamed.mean_)
    np.testing.assert_array_equal(fitted.var_, streamed.var_)
    one_batch = BatchNormalizer(momentum=0.2).fit(X)
    assert not np.allclose(fitted.mean_, one_batch.mean_)


def test_batch_size_joins_a_one_row_remainder_in_momentum_mode():
    X = data(4, n=21)
    fitted = BatchNormalizer(momentum=0.5, batch_size=10).fit(X)
    streamed = BatchNormalizer(momentum=0.5).partial_fit(X[:10]).partial_fit(X[10:])
    np.testing.assert_array_equal(fitted.mean_, streamed.mean_)


@pytest.mark.parametrize("params", [{}, {"half_life": 30.0}])
def test_batch_size_does_not_change_exact_or_half_life_statistics(params):
    X = data(5, n=97)
    with_batches = BatchNormalizer(batch_size=7, **params).fit(X)
    one_batch = BatchNormalizer(**params).fit(X)
    np.testing.assert_allclose(with_batches.mean_, one_batch.mean_, rtol=1e-12)
    np.testing.assert_allclose(with_batches.var_, one_batch.var_, rtol=1e-12)


def test_grid_search_can_tune_momentum_through_batch_size():
    rng = np.random.default_rng(0)
    # A drifting stream: later batches have larger means.
    X = rng.standard_normal((400, 2)) + np.linspace(0, 20, 400)[:, None]
    search = GridSearchCV(
        BatchNormalizer(batch_size=20),
        {"momentum": [0.01, 0.9]},
        scoring=lambda est, X, y=None: -np.abs(est.transform(X).mean()),
        cv=[(np.arange(200), np.arange(200, 220))],
    ).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] != scores[1]
    # The test rows follow the training rows: the fast-forgetting mode wins.
    assert search.best_params_ == {"momentum": 0.9}


# -- defects of the exact mode ------------------------------------------------------


def test_exact_mode_stays_finite_while_the_variance_is_representable():
    rng = np.random.default_rng(0)
    X = 1e153 * rng.standard_normal((2000, 2))
    reference = np.var(X.astype(np.longdouble) / 1e150, axis=0) * 1e300
    assert np.all(reference > 1e305)
    for params in ({}, {"momentum": 0.1}, {"half_life": 1e9}):
        est = BatchNormalizer(**params)
        for start in range(0, 2000, 64):
            est.partial_fit(X[start : start + 64])
        assert np.all(np.isfinite(est.var_)), params
        if not params:
            np.testing.assert_allclose(est.var_, reference.astype(float), rtol=1e-12)
            np.testing.assert_allclose(
                BatchNormalizer().fit(X).var_, reference.astype(float), rtol=1e-12
            )


def test_deviations_whose_squares_overflow_still_give_the_variance():
    # |x - mean| beyond 1.3e154 has a square beyond float64, the variance not.
    X = np.zeros((10_000, 1))
    X[0, 0] = 5e154
    expected = float(np.var(X.astype(np.longdouble)))
    np.testing.assert_allclose(BatchNormalizer().fit(X).var_, expected, rtol=1e-12)


def test_a_variance_beyond_float64_is_refused_with_the_state_kept():
    est = BatchNormalizer().fit(np.array([[0.0], [1.0]]))
    before = fitted_state(est)
    with pytest.raises(ValueError, match="overflow float64"):
        est.partial_fit(np.array([[-1e308], [1e308]]))
    assert_same(fitted_state(est), before)


def test_nan_in_a_row_of_zero_weight_is_not_counted():
    X = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, 6.0], [4.0, 7.0]])
    w = np.array([0.0, 1.0, 1.0, 0.0])
    fitted = BatchNormalizer().fit(X, sample_weight=w)
    np.testing.assert_array_equal(fitted.n_samples_seen_, [4, 3])
    streamed = BatchNormalizer()
    for row, weight in zip(X, w, strict=True):
        streamed.partial_fit(row[None, :], sample_weight=[weight])
    np.testing.assert_array_equal(streamed.n_samples_seen_, [4, 3])
    np.testing.assert_allclose(streamed.mean_, fitted.mean_, rtol=1e-15)
