"""Array API inputs: PyTorch, array-api-strict, CuPy, ... with dispatch on.

Every namespace and device runs where it exists and is skipped with the
reason otherwise: array-api-strict's CPU device, ``device1`` and
``no_float64`` (a device without float64, like PyTorch's MPS), PyTorch on
cpu/cuda/xpu/mps and CuPy. PyTorch's CPU tensors run twice: on their own
route (the NumPy code on zero-copy views) and forced onto the device route
(``torch-cpu-on_device``), which then stands in for a GPU. References are the
NumPy path on the same data (itself tested against StandardScaler and brute
force) and, for the float32 accumulation, np.longdouble.
"""

import copy
import gc
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sknorm._xp
from sknorm import (
    BatchNormalizer,
    GroupNormalizer,
    LayerNormalizer,
    QuantileNormalizer,
    RobustNormalizer,
    StreamingPipeline,
    invert_group_normalization,
)
from sknorm._compat import array_device, array_namespace, can_move_estimators, to_numpy


def _dispatch_works() -> str | None:
    """Why array API dispatch cannot run here, or None."""
    try:
        with sklearn.config_context(array_api_dispatch=True):
            from sklearn.utils._array_api import get_namespace

            get_namespace(np.zeros(1))
    except (ImportError, RuntimeError) as exc:  # old SciPy, no array-api-compat
        return str(exc)
    return None


_NO_DISPATCH = _dispatch_works()
pytestmark = pytest.mark.skipif(
    _NO_DISPATCH is not None,
    reason=f"scikit-learn's array API dispatch is unavailable: {_NO_DISPATCH}",
)

# Namespace and device of the arrays (and the route, for CPU tensors); a
# device that is absent is skipped.
PLACES = [
    ("array_api_strict", "CPU_DEVICE"),
    ("array_api_strict", "device1"),
    ("array_api_strict", "no_float64"),
    ("torch", "cpu"),
    ("torch", "cpu", "on_device"),
    ("torch", "cuda"),
    ("torch", "xpu"),
    ("torch", "mps"),
    ("cupy", None),
]
PLACE_IDS = ["-".join(str(part) for part in place) for place in PLACES]
MODES = [{}, {"momentum": 0.2}, {"half_life": 40.0}]
MODE_IDS = ["exact", "momentum", "half_life"]


def keep_on_the_device(monkeypatch):
    """Send CPU tensors on the device route, as on a GPU (see sknorm._xp)."""
    monkeypatch.setattr(sknorm._xp, "numpy_views", lambda xp, device: None)


class Place:
    """Arrays of one namespace on one device, made from NumPy."""

    def __init__(self, name, device_name, route=None):
        self.name = name
        self.device_name = device_name
        self.route = route
        if name == "array_api_strict":
            module = pytest.importorskip("array_api_strict")
            known = [str(d) for d in module.__array_namespace_info__().devices()]
            if not any(f"'{device_name}'" in d for d in known):
                pytest.skip(f"this array-api-strict has no device {device_name}")
            device = module.Device(device_name)
        elif name == "torch":
            module = pytest.importorskip("torch")
            _skip_absent_torch_device(module, device_name)
            device = module.device(device_name)
        else:
            module = pytest.importorskip(name)
            try:
                module.asarray(1.0) + 1
            except Exception as exc:  # a CuPy without a GPU
                pytest.skip(f"{name} cannot compute here: {exc}")
            device = None
        self.xp = array_namespace(module.asarray(1.0))
        probe = self.xp.asarray(1.0, device=device) if device is not None else None
        self.device = array_device(probe) if probe is not None else None
        floats = self.xp.__array_namespace_info__().dtypes(
            kind="real floating", device=self.device
        )
        self.has_float64 = "float64" in floats

    def __call__(self, X, dtype="float64"):
        if dtype == "float64" and not self.has_float64:
            dtype = "float32"
        X = np.array(X, dtype=dtype)  # a copy: torch.asarray would share X
        return self.xp.asarray(X, device=self.device)

    @property
    def float_name(self):
        return "float64" if self.has_float64 else "float32"

    def holds(self, array) -> bool:
        return array_namespace(array) is self.xp and array_device(array) == self.device


def _skip_absent_torch_device(torch, device_name):
    if device_name == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here (PyTorch CPU build or no GPU)")
    if device_name == "mps" and not torch.backends.mps.is_available():
        pytest.skip("no MPS device here (Apple silicon only)")
    if device_name == "xpu" and not (
        hasattr(torch, "xpu") and torch.xpu.is_available()
    ):
        pytest.skip("no XPU device here")


@pytest.fixture(params=PLACES, ids=PLACE_IDS)
def place(request, monkeypatch):
    place = Place(*request.param)
    if place.route == "on_device":
        keep_on_the_device(monkeypatch)
    return place


@pytest.fixture(params=["numpy_views", "on_device"])
def cpu_route(request, monkeypatch):
    """The route of PyTorch's CPU tensors: their own, or the device route."""
    if request.param == "on_device":
        keep_on_the_device(monkeypatch)
    return request.param


@pytest.fixture
def on_device(monkeypatch):
    """CPU tensors on the device route, standing in for a GPU's."""
    keep_on_the_device(monkeypatch)


@pytest.fixture
def dispatch():
    with sklearn.config_context(array_api_dispatch=True):
        yield


def batches(seed=0, n_batches=5, rows=23, n_features=4, offset=(0.0, 1e4, -3.0, 5.0)):
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 3.0, 0.01, 100.0])[:n_features]
    return [
        rng.standard_normal((rows + i, n_features)) * scale + np.array(offset)
        for i in range(n_batches)
    ]


def fitted_attributes(est):
    return {
        key: getattr(est, key)
        for key in ("mean_", "var_", "scale_", "weight_sum_", "n_samples_seen_")
    }


def assert_on(place, est, dtype_name):
    """Every fitted array of ``est`` is on ``place`` with ``dtype_name``."""
    for key, value in fitted_attributes(est).items():
        if value is None or isinstance(value, int):
            continue
        assert place.holds(value), key
        if key != "n_samples_seen_":
            assert to_numpy(value).dtype == dtype_name, key


def assert_statistics_close(est, ref, rtol):
    """The fitted attributes of ``est`` are those of ``ref`` (a NumPy fit) to
    ``rtol``; a mean to ``rtol`` times the feature's scale (its distance
    from 0 says nothing of its precision)."""
    spread = None if ref.var_ is None else np.sqrt(ref.var_)
    for key, value in fitted_attributes(est).items():
        expected = getattr(ref, key)
        if isinstance(expected, int):
            assert value == expected, key
        elif expected is not None:
            value = to_numpy(value)
            atol = 0.0
            if key == "mean_" and spread is not None:
                atol = rtol * spread + np.spacing(np.abs(expected).astype(value.dtype))
            error = np.abs(value - expected)
            bound = rtol * np.abs(expected) + atol
            assert np.all((error <= bound) | (np.isnan(value) & np.isnan(expected))), (
                key,
                value,
                expected,
            )


def as_numpy(value):
    return value if isinstance(value, int) else to_numpy(value)


def test_only_pytorch_cpu_tensors_take_numpy_views(place):
    views = sknorm._xp.space_of(place(np.ones((2, 2)))).numpy_views
    takes_views = place.name == "torch" and place.device_name == "cpu"
    assert (views is not None) == (takes_views and place.route is None)


# -- BatchNormalizer: the statistics --------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_streamed_statistics_equal_the_numpy_path(place, dispatch, mode, dtype):
    est, ref = BatchNormalizer(**mode), BatchNormalizer(**mode)
    for X in batches():
        X_xp = place(X, dtype)
        est.partial_fit(X_xp)
        ref.partial_fit(to_numpy(X_xp))  # the same values
    assert_on(place, est, place.float_name)
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(est, ref, rtol)
    assert isinstance(est.n_samples_seen_, int)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_missing_values_and_weights_equal_the_numpy_path(place, dispatch, mode):
    rng = np.random.default_rng(1)
    est, ref = BatchNormalizer(**mode), BatchNormalizer(**mode)
    for i, X in enumerate(batches(seed=2)):
        X = X.copy()
        X[rng.random(X.shape) < 0.2] = np.nan
        X[:, 3] = np.nan if i == 0 else X[:, 3]  # a feature without data at first
        w = rng.random(X.shape[0]) * (rng.random(X.shape[0]) < 0.8)
        weights = [w, place(w), w.tolist(), 2.0][i % 4]
        est.partial_fit(place(X), sample_weight=weights)
        ref.partial_fit(to_numpy(place(X)), sample_weight=w if i % 4 != 3 else 2.0)
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(est, ref, rtol)
    assert place.holds(est.n_samples_seen_)  # per-feature counts


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("missing", [False, True])
def test_large_batches_in_blocks_equal_the_numpy_path(place, dispatch, dtype, missing):
    # 64 features: blocks of 1,024 rows on the CPU, the last one partial.
    rng = np.random.default_rng(15)
    X = rng.standard_normal((2500, 64)) * rng.uniform(0.1, 10, 64) + 1e3
    if missing:
        X[rng.random(X.shape) < 0.01] = np.nan
    est, ref = BatchNormalizer(), BatchNormalizer()
    for part in (X[:100], X[100:]):
        X_xp = place(part, dtype)
        est.partial_fit(X_xp)
        ref.partial_fit(to_numpy(X_xp))
    assert_statistics_close(est, ref, 1e-12 if place.has_float64 else 3e-6)


def test_feature_without_any_data_has_nan_statistics(place, dispatch):
    X = np.array([[1.0, np.nan], [3.0, np.nan]])
    est = BatchNormalizer().partial_fit(place(X))
    mean = to_numpy(est.mean_)
    assert mean[0] == 2.0 and np.isnan(mean[1])
    assert np.isnan(to_numpy(est.scale_)[1])
    est.partial_fit(place(np.array([[5.0, 7.0], [6.0, 9.0]])))
    np.testing.assert_allclose(to_numpy(est.mean_), [3.75, 8.0])


@pytest.mark.parametrize("mode", [{}, {"half_life": 40.0}], ids=["exact", "half_life"])
def test_merge_equals_the_numpy_merge(place, dispatch, mode):
    parts = batches(seed=3, n_batches=4)
    a, b = BatchNormalizer(**mode), BatchNormalizer(**mode)
    ra, rb = BatchNormalizer(**mode), BatchNormalizer(**mode)
    for X in parts[:2]:
        a.partial_fit(place(X))
        ra.partial_fit(to_numpy(place(X)))
    for X in parts[2:]:
        b.partial_fit(place(X))
        rb.partial_fit(to_numpy(place(X)))
    a.merge(b)
    ra.merge(rb)
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(a, ra, rtol)
    assert_on(place, a, place.float_name)


def test_fit_in_batches_equals_the_numpy_fit(place, dispatch):
    X = np.concatenate(batches(seed=4))
    est = BatchNormalizer(momentum=0.3, batch_size=20).fit(place(X))
    ref = BatchNormalizer(momentum=0.3, batch_size=20).fit(to_numpy(place(X)))
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(est, ref, rtol)


# -- BatchNormalizer: transforms -------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "params",
    [{}, {"clip": 1.5, "eps": 1e-3}, {"with_mean": False}, {"with_std": False}],
)
def test_transform_and_inverse_equal_the_numpy_path(place, dispatch, dtype, params):
    parts = batches(seed=5)
    est, ref = BatchNormalizer(**params), BatchNormalizer(**params)
    for X in parts:
        est.partial_fit(place(X))
        ref.partial_fit(to_numpy(place(X)))
    X = parts[0].astype(dtype)
    X_xp = place(X, dtype)
    out = est.transform(X_xp)
    assert place.holds(out) and out.dtype == X_xp.dtype
    expected = ref.transform(to_numpy(X_xp))
    tol = 1e-12 if to_numpy(out).dtype == np.float64 else 1e-5
    np.testing.assert_allclose(to_numpy(out), expected, rtol=tol, atol=tol)
    back = est.inverse_transform(out)
    assert place.holds(back) and back.dtype == X_xp.dtype
    expected_back = ref.inverse_transform(expected)
    np.testing.assert_allclose(
        to_numpy(back), expected_back, rtol=tol, atol=tol * np.abs(X).max()
    )


def test_float32_transform_is_exact_at_a_large_offset(place, dispatch):
    # 1e6 + N(0, 1): the float32 mean alone would be off by up to 0.03.
    rng = np.random.default_rng(6)
    X = (1e6 + rng.standard_normal((512, 2))).astype(np.float32)
    est = BatchNormalizer().fit(place(X, "float32"))
    out = to_numpy(est.transform(place(X, "float32")))
    exact = (X.astype(np.longdouble) - X.astype(np.longdouble).mean(0)) / X.astype(
        np.longdouble
    ).std(0)
    assert np.max(np.abs(out - exact.astype(np.float64))) < 1e-6


def test_copy_false_works_in_place_and_copy_true_does_not(place, dispatch):
    X = batches()[0]
    est = BatchNormalizer(copy=False, clip=1.0).fit(place(X))
    X_xp = place(X)
    out = est.transform(X_xp)
    assert out is X_xp
    np.testing.assert_allclose(
        to_numpy(X_xp), to_numpy(est.transform(place(X), copy=True))
    )
    assert np.abs(to_numpy(X_xp)).max() == 1.0
    X_xp = place(X)
    out = est.transform(X_xp, copy=True)
    assert out is not X_xp
    np.testing.assert_array_equal(to_numpy(X_xp), X.astype(to_numpy(X_xp).dtype))


def test_input_on_another_device_or_namespace_raises_saying_what_to_do(dispatch):
    xps = pytest.importorskip("array_api_strict")
    X = batches()[0]
    est = BatchNormalizer().fit(xps.asarray(X, device=xps.Device("device1")))
    message = r"BatchNormalizer.transform\(\) must use the same namespace and the same"
    with pytest.raises(ValueError, match=message):
        est.transform(xps.asarray(X))  # CPU_DEVICE
    with pytest.raises(ValueError, match=message + r".*fitted on array_api_strict"):
        est.transform(X)
    with pytest.raises(ValueError, match=r"BatchNormalizer.partial_fit\(\) must use"):
        est.partial_fit(X)
    with pytest.raises(ValueError, match=r"fitted on NumPy arrays"):
        BatchNormalizer().fit(X).transform(xps.asarray(X))
    before = fitted_attributes(est)
    with sklearn.config_context(array_api_dispatch=False):
        with pytest.raises(ValueError, match="Array API dispatch is off"):
            est.transform(X)
    assert fitted_attributes(est) == before
    other = BatchNormalizer().fit(X)
    with pytest.raises(ValueError, match="different array namespaces or devices"):
        est.merge(other)


@pytest.mark.skipif(not can_move_estimators(), reason="needs move_estimator_to")
def test_move_estimator_to_moves_the_statistics(place, dispatch):
    from sklearn.utils._array_api import move_estimator_to

    parts = batches(seed=7)
    ref = BatchNormalizer()
    for X in parts[:3]:
        ref.partial_fit(to_numpy(place(X)))
    moved = move_estimator_to(ref, place.xp, place.device)
    assert_on(place, moved, place.float_name)
    for X in parts[3:]:
        moved.partial_fit(place(X))
        ref.partial_fit(to_numpy(place(X)))
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(moved, ref, rtol)
    back = move_estimator_to(moved, np, "cpu")
    assert isinstance(back.mean_, np.ndarray) and back.mean_.dtype == np.float64
    np.testing.assert_allclose(
        back.transform(parts[0]), ref.transform(parts[0]), rtol=1e-5
    )


# -- checkpoints and copies ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_checkpoint_is_numpy_data_and_resumes_as_numpy(place, dispatch, mode):
    parts = batches(seed=8)
    est, ref = BatchNormalizer(**mode), BatchNormalizer(**mode)
    for X in parts[:3]:
        est.partial_fit(place(X))
        ref.partial_fit(to_numpy(place(X)))
    loaded = pickle.loads(pickle.dumps(est))
    assert type(loaded.mean_) is np.ndarray and loaded.mean_.dtype == np.float64
    assert type(loaded._state.shift) is np.ndarray
    rtol = 1e-12 if place.has_float64 else 3e-6
    assert_statistics_close(loaded, ref, rtol)
    for X in parts[3:]:
        loaded.partial_fit(to_numpy(place(X)))
        ref.partial_fit(to_numpy(place(X)))
    assert_statistics_close(loaded, ref, rtol)


def test_checkpoint_needs_no_valid_parameters_and_loads_with_skops(dispatch):
    torch = _torch()
    sio = pytest.importorskip("skops.io")
    est = BatchNormalizer(momentum=0.5).fit(torch.asarray(batches()[0]))
    est.set_params(momentum=-1.0)  # invalid: checked at the next fit only
    loaded = sio.loads(sio.dumps(est), trusted=[type(est)])
    np.testing.assert_array_equal(loaded.mean_, est.mean_.numpy())
    loaded.set_params(momentum=0.5).partial_fit(batches()[1])
    assert loaded.n_samples_seen_ == len(batches()[0]) + len(batches()[1])


def test_deepcopy_keeps_the_namespace_and_device(place, dispatch):
    est = BatchNormalizer()
    for X in batches(seed=9):
        est.partial_fit(place(X))
    twin = copy.deepcopy(est)
    assert_on(place, twin, place.float_name)
    for key, value in fitted_attributes(est).items():
        np.testing.assert_array_equal(as_numpy(getattr(twin, key)), as_numpy(value))
    twin.partial_fit(place(batches(seed=10)[0]))
    assert twin.n_samples_seen_ > est.n_samples_seen_


# -- errors: same messages, state unchanged ------------------------------------------


def bad_calls(place):
    X = batches()[0]
    bad = X.copy()
    bad[2, 1] = np.inf
    return [
        (
            "infinity",
            lambda e: e.partial_fit(place(bad)),
            r"infinity in feature\(s\) 1\.",
        ),
        (
            "negative weight",
            lambda e: e.partial_fit(place(X), sample_weight=place(-np.ones(len(X)))),
            "negative",
        ),
        (
            "weight shape",
            lambda e: e.partial_fit(place(X), sample_weight=place(np.ones(3))),
            "sample_weight has 3 values",
        ),
        (
            "width",
            lambda e: e.partial_fit(place(X[:, :2])),
            "X has 2 features, but BatchNormalizer is expecting 4",
        ),
        (
            "mode change",
            lambda e: e.set_params(momentum=0.5).partial_fit(place(X)),
            "statistics mode changed",
        ),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_batch_raises_as_numpy_does_and_changes_nothing(place, dispatch, case):
    name, call, message = bad_calls(place)[case]
    est = BatchNormalizer().fit(place(batches()[1]))
    before = {key: as_numpy(v) for key, v in fitted_attributes(est).items()}
    state = est._state
    with pytest.raises((ValueError, TypeError), match=message):
        call(est)
    est.set_params(momentum=None)
    assert est._state is state
    for key, value in fitted_attributes(est).items():
        np.testing.assert_array_equal(as_numpy(value), before[key])


def test_fit_with_only_zero_weights_raises(place, dispatch):
    X = batches()[0]
    with pytest.raises(ValueError, match="All sample weights are zero"):
        BatchNormalizer().fit(place(X), sample_weight=place(np.zeros(len(X))))


def test_momentum_rejects_a_one_row_batch(place, dispatch):
    est = BatchNormalizer(momentum=0.1).fit(place(batches()[0]))
    with pytest.raises(ValueError, match="at least 2 samples per batch"):
        est.partial_fit(place(batches()[0][:1]))


# -- Layer and group normalization ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "est",
    [
        LayerNormalizer(),
        GroupNormalizer(n_groups=2, eps=0.0),
        LayerNormalizer(with_mean=False),
    ],
)
def test_row_normalization_equals_the_numpy_path(place, dispatch, dtype, est):
    X = batches(seed=11, n_features=4)[2].astype(dtype)
    X[3, 1] = np.nan
    X[4, :2] = np.nan
    xp_est = clone(est).fit(place(X, dtype))
    ref = clone(est).fit(X)
    X_xp = place(X, dtype)
    out, stats = xp_est.transform(X_xp, return_stats=True)
    expected, expected_stats = ref.transform(to_numpy(X_xp), return_stats=True)
    assert place.holds(out) and out.dtype == X_xp.dtype
    assert place.holds(stats.center) and place.holds(stats.scale)
    tol = 1e-12 if to_numpy(out).dtype == np.float64 else 1e-5
    np.testing.assert_allclose(to_numpy(out), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(stats.scale), expected_stats.scale, rtol=1e-6)
    back = invert_group_normalization(out, stats)
    assert place.holds(back) and back.dtype == X_xp.dtype
    np.testing.assert_allclose(to_numpy(back), to_numpy(X_xp), rtol=1e-5, atol=1e-3)
    # NumPy statistics with an array X_tr, and the other way round
    back = invert_group_normalization(out, expected_stats)
    assert place.holds(back)
    np.testing.assert_allclose(
        invert_group_normalization(expected, stats),
        to_numpy(X_xp),
        rtol=1e-5,
        atol=1e-3,
    )


def test_row_normalizer_rejects_infinity_when_learning(place, dispatch):
    X = batches()[0]
    X[1, 2] = -np.inf
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) 2\."):
        LayerNormalizer().fit(place(X))


# -- estimators without array API support ---------------------------------------------


@pytest.mark.parametrize("est", [RobustNormalizer(), QuantileNormalizer()])
def test_unsupported_estimators_say_so(dispatch, est):
    torch = pytest.importorskip("torch")
    X = torch.asarray(batches()[0])
    with pytest.raises(TypeError, match="does not support array API inputs.*NumPy"):
        clone(est).fit(X)
    fitted = clone(est).fit(batches()[0])
    with pytest.raises(TypeError, match="does not support array API inputs"):
        fitted.transform(X)
    with sklearn.config_context(array_api_dispatch=False):
        out = clone(est).fit(X).transform(X)
    assert isinstance(out, np.ndarray)


# -- without dispatch: NumPy conversion keeping float32 --------------------------------


@pytest.mark.parametrize(
    "est", [BatchNormalizer(), LayerNormalizer(), GroupNormalizer(n_groups=2)]
)
def test_without_dispatch_float32_tensors_give_float32_numpy(est):
    torch = pytest.importorskip("torch")
    X = torch.asarray(batches()[0], dtype=torch.float32)
    est = clone(est).fit(X)
    out = est.transform(X)
    assert type(out) is np.ndarray and out.dtype == np.float32
    expected = clone(est).fit(X.numpy()).transform(X.numpy())
    np.testing.assert_array_equal(out, expected)
    if isinstance(est, BatchNormalizer):
        assert est.inverse_transform(torch.asarray(out)).dtype == np.float32
        assert type(est.mean_) is np.ndarray


def test_without_dispatch_an_unconvertible_tensor_says_what_to_do():
    torch = pytest.importorskip("torch")
    X = torch.ones((4, 2), requires_grad=True)
    with pytest.raises(TypeError, match="array_api_dispatch=True"):
        BatchNormalizer().fit(X)


# -- PyTorch: autograd, in-place writes, device synchronisation ------------------------


def _torch():
    return pytest.importorskip("torch")


def test_statistics_never_keep_autograd_history(dispatch, cpu_route):
    torch = _torch()
    X = torch.randn(32, 8, dtype=torch.float32, requires_grad=True)
    est = BatchNormalizer().partial_fit(X)
    rss = []
    for i in range(10_000):
        est.partial_fit(X)
        if i in (999, 9_999):
            gc.collect()
            rss.append(_resident_bytes())
    # The state: tensors on the device route, NumPy arrays (which cannot hold
    # a history) on the NumPy-views route; the published statistics: tensors.
    state = [*est._state.stats.moments, est._state.stats.shift]
    state_type = np.ndarray if cpu_route == "numpy_views" else torch.Tensor
    assert all(type(a) is state_type for a in state)
    tensors = [t for t in state if type(t) is torch.Tensor] + [est.mean_, est.scale_]
    assert all(not t.requires_grad and t.grad_fn is None for t in tensors)
    # A history kept by the statistics would grow by several KB per call.
    assert rss[1] - rss[0] < 8 * 2**20
    assert est.n_samples_seen_ == 32 * 10_001


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # not Linux: the autograd check above still holds
        return 0


@pytest.mark.parametrize(
    "est", [BatchNormalizer(clip=3.0), BatchNormalizer(copy=False)]
)
def test_transform_is_differentiable_and_never_writes_into_a_grad_tensor(dispatch, est):
    torch = _torch()
    data = torch.randn(64, 5, dtype=torch.float64) * 3 + 1
    est = clone(est).fit(data)
    X = data.clone().requires_grad_(True)
    version = X._version
    out = est.transform(X)
    assert out is not X and X._version == version
    torch.testing.assert_close(X.detach(), data)
    out.sum().backward()
    inside = (out.detach().abs() < 3.0).to(torch.float64)
    expected = inside / est.scale_ if est.clip else (1 / est.scale_).expand(64, 5)
    torch.testing.assert_close(X.grad, expected)


def test_layer_norm_gradient_equals_pytorch(dispatch):
    torch = _torch()
    X = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    out = GroupNormalizer(n_groups=2).fit(X).transform(X)
    weights = torch.randn(6, 8, dtype=torch.float64)
    (out * weights).sum().backward()
    ours = X.grad.clone()
    X.grad = None
    reference = torch.nn.functional.group_norm(X, 2, eps=1e-5)
    torch.testing.assert_close(out, reference)
    (reference * weights).sum().backward()
    torch.testing.assert_close(ours, X.grad)


# Tensor methods and functions that move a value to the host (a device
# synchronisation on a GPU). TorchFunctionMode sees every one of them, on any
# device, so the count of CPU tensors on the device route stands for a GPU's.
# On their own route, CPU tensors are read only through ``numpy``, which
# makes a zero-copy view and reads nothing.
_SYNCING = {
    "__bool__", "__int__", "__float__", "__index__", "__complex__", "__array__",
    "item", "tolist", "numpy", "cpu", "nonzero", "argwhere", "masked_select",
    "unique", "equal", "allclose", "is_nonzero",
}  # fmt: skip


@pytest.fixture
def count_syncs():
    torch = _torch()
    from torch.overrides import TorchFunctionMode

    class Counter(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.syncs = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in _SYNCING:
                self.syncs.append(name)
            elif name == "to" and "cpu" in repr((args[1:], kwargs)):
                self.syncs.append(name)
            elif name == "__getitem__" and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool
                for i in (args[1] if isinstance(args[1], tuple) else (args[1],))
            ):
                self.syncs.append("boolean index")
            return func(*args, **kwargs)

    return Counter


def test_the_sync_counter_sees_host_transfers(count_syncs):
    torch = _torch()
    t = torch.arange(3.0)
    with count_syncs() as counter:
        bool(t.sum() > 0)
        t.tolist()
        t[t > 0]
    assert counter.syncs == ["__bool__", "tolist", "boolean index"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_one_sync_per_partial_fit_none_per_transform(
    dispatch, on_device, count_syncs, mode
):
    torch = _torch()
    X = torch.randn(64, 16, dtype=torch.float32)
    est = BatchNormalizer(clip=2.0, **mode).fit(X)
    for call, limit in [
        (lambda: est.partial_fit(X), 1),  # the fast path
        (lambda: est.partial_fit(X.to(torch.float16)), 1),  # through validate_data
        (lambda: est.partial_fit(X, sample_weight=torch.ones(64)), 1),
        (lambda: est.transform(X), 0),
        (lambda: est.inverse_transform(X), 0),
        (lambda: est.transform(X.to(torch.float16)), 0),
    ]:
        with count_syncs() as counter:
            call()
        assert len(counter.syncs) == limit, counter.syncs


def test_a_batch_with_missing_values_costs_one_more_sync(
    dispatch, on_device, count_syncs
):
    torch = _torch()
    X = torch.randn(64, 16)
    est = BatchNormalizer().fit(X)
    X[3, 4] = float("nan")
    with count_syncs() as counter:
        est.partial_fit(X)
    assert len(counter.syncs) == 2


def test_row_normalizers_transform_without_sync(dispatch, on_device, count_syncs):
    torch = _torch()
    X = torch.randn(64, 16)
    est = GroupNormalizer(n_groups=4).fit(X)
    with count_syncs() as counter:
        est.transform(X)
        est.transform(X, return_stats=True)
    assert counter.syncs == []
    with count_syncs() as counter:
        est.partial_fit(X)
    assert len(counter.syncs) == 1  # the infinity check


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_cpu_tensors_are_read_only_through_numpy_views(dispatch, count_syncs, mode):
    torch = _torch()
    X = torch.randn(64, 16, dtype=torch.float32)
    X[3, 4] = float("nan")
    est = BatchNormalizer(clip=2.0, **mode).fit(X)
    group = GroupNormalizer(n_groups=4).fit(X)
    for call in [
        lambda: est.partial_fit(X),
        lambda: est.partial_fit(X.to(torch.float16)),
        lambda: est.partial_fit(X, sample_weight=torch.ones(64)),
        lambda: est.transform(X),
        lambda: est.inverse_transform(X),
        lambda: est.transform(X.to(torch.float16)),
        lambda: group.partial_fit(X),
        lambda: group.transform(X, return_stats=True),
    ]:
        with count_syncs() as counter:
            call()
        assert counter.syncs and set(counter.syncs) == {"numpy"}, counter.syncs


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_cpu_tensors_learn_on_numpy_views_and_publish_fresh_tensors(dispatch, mode):
    torch = _torch()
    parts = batches(seed=16)
    est, ref = BatchNormalizer(**mode), BatchNormalizer(**mode)
    for X in parts[:3]:
        est.partial_fit(torch.asarray(X, dtype=torch.float32))
        ref.partial_fit(X.astype(np.float32))
    # The state is the NumPy path's, and no published tensor shares its memory.
    assert type(est._state.stats) is type(ref._state)
    state = [a for a in est._state.stats if isinstance(a, np.ndarray)]
    state += [a for a in getattr(est._state.stats, "moments", ()) if a is not None]
    published = [est.mean_, est.var_, est.scale_, est.weight_sum_]
    assert all(type(t) is torch.Tensor and t.dtype == torch.float64 for t in published)
    for tensor in published:
        assert not any(np.shares_memory(tensor.numpy(), a) for a in state)
    # Writing into them changes nothing that is learned next.
    for tensor in published:
        tensor += 100.0
    for X in parts[3:]:
        est.partial_fit(torch.asarray(X, dtype=torch.float32))
        ref.partial_fit(X.astype(np.float32))
    for key in ("mean_", "var_", "scale_", "weight_sum_"):
        np.testing.assert_array_equal(getattr(est, key).numpy(), getattr(ref, key))


def test_cpu_tensors_are_never_copied_to_numpy(dispatch):
    # A copy made with NumPy would show in tracemalloc (PyTorch's own memory
    # does not): partial_fit and transform must work on views.
    torch = _torch()
    X = torch.randn(100_000, 64, dtype=torch.float32) * 3 + 1e3
    est = BatchNormalizer().partial_fit(X[:10])
    tracemalloc.start()
    try:
        est.partial_fit(X)
        learning = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        out = est.transform(X)
        transforming = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert learning <= 0.1 * X.numpy().nbytes, learning
    # transform allocates its output (with NumPy), and nothing more.
    assert transforming <= 1.1 * X.numpy().nbytes, transforming
    expected = BatchNormalizer().partial_fit(X[:10].numpy()).partial_fit(X.numpy())
    np.testing.assert_array_equal(out.numpy(), expected.transform(X.numpy()))


def test_cuda_partial_fit_synchronises_once():
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the CPU sync counter stands in for it")
    X = torch.randn(256, 32, device="cuda")
    with sklearn.config_context(array_api_dispatch=True):
        est = BatchNormalizer().fit(X)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est.partial_fit(X)
                n_fit = len(caught)
                est.transform(X)
                n_transform = len(caught) - n_fit
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert n_fit <= 1 and n_transform == 0


# -- precision on a device without float64 -------------------------------------------


def stream_on_a_float32_device(offset, n_batches=400, rows=64):
    """Errors of BatchNormalizer and StandardScaler streaming ``offset +
    N(0, 1)`` (float32) on array-api-strict's device without float64: the
    mean's in units of float32 spacing at the mean (0.5 is the best a float32
    can do), the variance's relative to the exact variance of the data."""
    place = Place("array_api_strict", "no_float64")  # skips if absent
    xps, device = place.xp, place.device
    rng = np.random.default_rng(12)
    data = (offset + rng.standard_normal((n_batches * rows, 3))).astype(np.float32)
    exact = data.astype(np.longdouble)
    mean, var = exact.mean(0), exact.var(0)
    ulp = np.spacing(mean.astype(np.float32)).astype(np.longdouble)
    errors = {}
    with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
        # StandardScaler divides 0 by 0 on its first batch.
        warnings.simplefilter("ignore", RuntimeWarning)
        for est in (BatchNormalizer(), StandardScaler()):
            try:
                for start in range(0, len(data), rows):
                    batch = data[start : start + rows]
                    est.partial_fit(xps.asarray(batch, device=device))
            except TypeError:  # StandardScaler of scikit-learn < 1.7 there
                assert isinstance(est, StandardScaler)
                continue
            assert to_numpy(est.var_).dtype == np.float32
            errors[type(est).__name__] = (
                float(np.max(np.abs(to_numpy(est.mean_) - mean) / ulp)),
                float(np.max(np.abs(to_numpy(est.var_) / var - 1))),
            )
    return errors


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_float32_accumulation_keeps_float32_precision(offset):
    errors = stream_on_a_float32_device(offset)
    mean_ulps, var_error = errors["BatchNormalizer"]
    # The mean correctly rounded, or nearly; the variance within a few float32
    # roundings after 400 merges.
    assert mean_ulps <= 0.6
    assert var_error < 4 * np.finfo(np.float32).eps
    # scikit-learn's plain float32 loses the variance's digits at 1e6.
    if offset == 1e6 and "StandardScaler" in errors:
        assert errors["StandardScaler"][1] > 100 * var_error


@pytest.mark.parametrize("device_name", ["CPU_DEVICE", "no_float64"])
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_no_data_dependent_shapes(dispatch, device_name, mode):
    # Lazy and compiled libraries cannot run boolean indexing or nonzero.
    place = Place("array_api_strict", device_name)
    X = np.concatenate(batches())
    X[3, 1] = np.nan  # the careful path, and anchoring past a NaN
    X[0, 2] = np.nan
    with place.xp.ArrayAPIStrictFlags(
        boolean_indexing=False, data_dependent_shapes=False
    ):
        est = BatchNormalizer(clip=2.0, **mode).partial_fit(place(X[:50]))
        est.partial_fit(place(X[50:]), sample_weight=place(np.ones(len(X) - 50)))
        est.inverse_transform(est.transform(place(X)))
        group = GroupNormalizer(n_groups=2).fit(place(X))
        invert_group_normalization(*group.transform(place(X), return_stats=True))
    ref = BatchNormalizer(**mode).partial_fit(to_numpy(place(X[:50])))
    ref.partial_fit(to_numpy(place(X[50:])))
    assert_statistics_close(est, ref, 1e-12 if place.has_float64 else 3e-6)


# -- in pipelines ----------------------------------------------------------------------


def test_pipeline_with_an_array_api_estimator(dispatch):
    torch = _torch()
    rng = np.random.default_rng(13)
    X = rng.standard_normal((80, 6)) * 10 + 3
    y = X @ rng.standard_normal(6)
    pipe = make_pipeline(BatchNormalizer(), Ridge(alpha=1.0, solver="svd"))
    pred = pipe.fit(torch.asarray(X), torch.asarray(y)).predict(torch.asarray(X))
    assert isinstance(pred, torch.Tensor)
    with sklearn.config_context(array_api_dispatch=False):
        expected = make_pipeline(BatchNormalizer(), Ridge(alpha=1.0, solver="svd"))
        expected = expected.fit(X, y).predict(X)
    np.testing.assert_allclose(pred.numpy(), expected, rtol=1e-8)


def test_streaming_pipeline_passes_tensors_through(dispatch):
    torch = _torch()
    pipe = StreamingPipeline(
        [("batch", BatchNormalizer()), ("layer", LayerNormalizer())]
    )
    ref = StreamingPipeline(
        [("batch", BatchNormalizer()), ("layer", LayerNormalizer())]
    )
    for X in batches(seed=14):
        pipe.partial_fit(torch.asarray(X))
        ref.partial_fit(X)
    out = pipe.transform(torch.asarray(X))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ref.transform(X), rtol=1e-10, atol=1e-12)


# -- scikit-learn's array API checks with values, and the float32-only device ----------


@pytest.mark.parametrize(
    "est", [BatchNormalizer(), BatchNormalizer(momentum=0.5), LayerNormalizer()]
)
def test_sklearn_array_api_values(place, est):
    import inspect

    from sklearn.utils.estimator_checks import check_array_api_input

    if place.name not in ("array_api_strict", "torch"):
        pytest.skip("scikit-learn's helper makes these namespaces itself")
    options = {"dtype_name": place.float_name, "check_values": True}
    if "device_name" in inspect.signature(check_array_api_input).parameters:
        options["device_name"] = place.device_name
    elif place.name == "torch" or place.device_name == "CPU_DEVICE":
        options["device"] = "cpu" if place.name == "torch" else None
    else:
        pytest.skip("this scikit-learn's check cannot make arrays on this device")
    check_array_api_input(
        type(est).__name__, est, array_namespace=place.name, **options
    )
