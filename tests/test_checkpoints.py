"""Checkpoints (pickle, skops) at any point of a stream; concurrent transform."""

import copy
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from sknorm import BatchNormalizer, GroupNormalizer, RobustNormalizer, _stats
from sknorm._checkpoint import FORMAT_KEY, FORMAT_VERSION

MODES = [{}, {"momentum": 0.2}, {"half_life": 13.0}, {"with_mean": False}]


def batches_for(seed, n_batches):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        # At least 2 rows: the momentum mode refuses 1-row batches.
        X = rng.standard_normal((int(rng.integers(2, 9)), 3)) * [1, 1e3, 1e-3] + 1e5
        X[rng.random(X.shape) < 0.1] = np.nan
        out.append(X)
    return out


def assert_identical(a, b):
    for name in ("mean_", "var_", "scale_", "weight_sum_", "n_samples_seen_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def pickle_round_trip(est):
    return pickle.loads(pickle.dumps(est))


def skops_round_trip(est):
    sio = pytest.importorskip("skops.io")
    blob = sio.dumps(est)
    # The minimal trusted list: the estimator class and nothing else of sknorm.
    untrusted = sio.get_untrusted_types(data=blob)
    assert untrusted == ["sknorm.BatchNormalizer"], untrusted
    return sio.loads(blob, trusted=untrusted)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_batches=st.integers(1, 8),
    cut=st.integers(1, 8),
    mode=st.sampled_from(range(len(MODES))),
    how=st.sampled_from(["pickle", "deepcopy"]),
)
def test_resume_from_a_checkpoint_is_bit_identical(seed, n_batches, cut, mode, how):
    batches = batches_for(seed, n_batches)
    cut = min(cut, n_batches)
    params = MODES[mode]
    uninterrupted = BatchNormalizer(**params)
    for b in batches:
        uninterrupted.partial_fit(np.abs(b) if "with_mean" in params else b)
    resumed = BatchNormalizer(**params)
    for b in batches[:cut]:
        resumed.partial_fit(np.abs(b) if "with_mean" in params else b)
    resumed = pickle_round_trip(resumed) if how == "pickle" else copy.deepcopy(resumed)
    for b in batches[cut:]:
        resumed.partial_fit(np.abs(b) if "with_mean" in params else b)
    assert_identical(resumed, uninterrupted)
    probe = np.nan_to_num(batches[0])
    np.testing.assert_array_equal(
        resumed.transform(probe), uninterrupted.transform(probe)
    )


@pytest.mark.parametrize("params", MODES)
def test_skops_round_trip_mid_stream(params):
    batches = [np.abs(b) for b in batches_for(1, 6)]
    uninterrupted = BatchNormalizer(**params)
    for b in batches:
        uninterrupted.partial_fit(b)
    resumed = BatchNormalizer(**params)
    for b in batches[:3]:
        resumed.partial_fit(b)
    resumed = skops_round_trip(resumed)
    for b in batches[3:]:
        resumed.partial_fit(b)
    assert_identical(resumed, uninterrupted)


def test_unfitted_estimator_round_trips():
    est = pickle_round_trip(BatchNormalizer(eps=1e-3))
    assert est.get_params()["eps"] == 1e-3 and not hasattr(est, "mean_")


def test_checkpoint_stores_plain_data_and_its_format():
    est = BatchNormalizer().fit(np.ones((3, 2)))
    stored = est.__getstate__()
    assert stored[FORMAT_KEY] == FORMAT_VERSION
    assert isinstance(stored["_state"], dict)
    assert all(isinstance(v, (np.ndarray, int, str)) for v in stored["_state"].values())


def test_checkpoint_from_a_newer_sknorm_is_refused_clearly():
    est = BatchNormalizer().fit(np.ones((3, 2)))
    stored = est.__getstate__()
    stored[FORMAT_KEY] = FORMAT_VERSION + 1
    fresh = BatchNormalizer.__new__(BatchNormalizer)
    with pytest.raises(ValueError, match="newer than format .* Upgrade sknorm"):
        fresh.__setstate__(stored)


def test_unversioned_checkpoint_is_upgraded():
    # Format 0 pickled the in-memory state (a named tuple) without a version;
    # its moments held the sum of squared deviations where the variance is now.
    X = np.random.default_rng(0).standard_normal((20, 2))
    for params in ({}, {"momentum": 0.5}):
        est = BatchNormalizer(**params).fit(X[:10])
        legacy = {k: v for k, v in est.__dict__.items() if not k.startswith("_s")}
        state = est._state
        if isinstance(state, _stats.StreamState):
            weight, mean, var = state.moments
            state = state._replace(moments=_stats.Moments(weight, mean, var * weight))
        legacy["_state"] = state
        loaded = BatchNormalizer.__new__(BatchNormalizer)
        loaded.__setstate__(legacy)
        loaded.partial_fit(X[10:])
        est.partial_fit(X[10:])
        for name in ("mean_", "var_", "scale_", "weight_sum_", "n_samples_seen_"):
            np.testing.assert_allclose(
                getattr(loaded, name), getattr(est, name), rtol=1e-14, err_msg=name
            )


LEGACY = Path(__file__).parent / "data" / "sknorm-0.1.0"
# The estimators that wrote the files in LEGACY with sknorm 0.1.0: each
# learned rows 0-200 of data.npy in batches of 50.
LEGACY_MODELS = {
    "batch_exact": BatchNormalizer(),
    "batch_momentum": BatchNormalizer(momentum=0.2),
    "batch_half_life": BatchNormalizer(half_life=50.0),
    "robust": RobustNormalizer(sketch_size=16, random_state=0),
    "group": GroupNormalizer(n_groups=3),
}


def load_legacy(name, how):
    path = LEGACY / f"{name}.{'pkl' if how == 'pickle' else 'skops'}"
    if how == "pickle":
        if np.lib.NumpyVersion(np.__version__) < "2.0.0":
            pytest.skip(
                "these pickles were written with NumPy 2, whose arrays NumPy 1.x "
                "cannot unpickle (numpy._core); the skops files cover NumPy 1.x"
            )
        with open(path, "rb") as f:
            return pickle.load(f)
    sio = pytest.importorskip("skops.io")
    untrusted = sio.get_untrusted_types(file=path)
    # The 0.1 files name the private module path, which must keep loading.
    assert any(t.startswith("sknorm._") for t in untrusted), untrusted
    return sio.load(path, trusted=untrusted)


@pytest.mark.parametrize("how", ["pickle", "skops"])
@pytest.mark.parametrize("name", list(LEGACY_MODELS))
def test_sknorm_0_1_checkpoints_load_and_resume(name, how):
    X = np.load(LEGACY / "data.npy")
    loaded = load_legacy(name, how)
    fresh = clone(LEGACY_MODELS[name])
    for start in range(0, 200, 50):
        fresh.partial_fit(X[start : start + 50])
    for est in (loaded, fresh):
        est.partial_fit(X[200:250]).partial_fit(X[250:])
    assert type(loaded) is type(fresh)
    assert loaded.get_params() == fresh.get_params()
    probe = np.nan_to_num(X[:20], nan=1.0)
    if name.startswith("batch"):
        for attr in ("mean_", "var_", "scale_", "weight_sum_"):
            # 0.1 stored sums of squares: the upgrade divides once.
            np.testing.assert_allclose(
                getattr(loaded, attr), getattr(fresh, attr), rtol=1e-13, err_msg=attr
            )
        np.testing.assert_array_equal(loaded.n_samples_seen_, fresh.n_samples_seen_)
        np.testing.assert_allclose(
            loaded.transform(probe), fresh.transform(probe), rtol=1e-12
        )
    else:
        # The same seed, the same coins: the upgraded sketch is the same.
        np.testing.assert_array_equal(loaded.transform(probe), fresh.transform(probe))
        if name == "robust":
            np.testing.assert_array_equal(loaded.center_, fresh.center_)
            np.testing.assert_array_equal(loaded.n_samples_seen_, fresh.n_samples_seen_)
    # Saved again, it names only the public class.
    if how == "skops":
        sio = pytest.importorskip("skops.io")
        blob = sio.dumps(loaded)
        assert sio.get_untrusted_types(data=blob) == [f"sknorm.{type(loaded).__name__}"]


def test_damaged_checkpoint_is_refused():
    est = BatchNormalizer().fit(np.ones((3, 2)))
    stored = est.__getstate__()
    stored["_state"] = "garbage"
    with pytest.raises(ValueError, match="damaged"):
        BatchNormalizer.__new__(BatchNormalizer).__setstate__(stored)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_concurrent_transform_equals_single_threaded(dtype):
    rng = np.random.default_rng(5)
    est = BatchNormalizer(clip=4.0).fit(rng.standard_normal((500, 8)) * 3 + 7)
    inputs = [
        (rng.standard_normal((int(rng.integers(1, 300)), 8)) * 3 + 7).astype(dtype)
        for _ in range(64)
    ]
    expected = [est.transform(X) for X in inputs]
    results = [None] * len(inputs)
    barrier = threading.Barrier(8)

    def work(worker):
        barrier.wait()
        for _ in range(5):
            for i in range(worker, len(inputs), 8):
                results[i] = est.transform(inputs[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == dtype
