"""BatchNormalizer on dask arrays and DataFrames: threaded scheduler and a cluster.

Every fit is compared with fitting the computed NumPy array and with a NumPy
brute-force reference; the cluster tests run on a real two-process
``distributed.LocalCluster``.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from sknorm import BatchNormalizer

REASON = "the dask extra is not installed (pip install 'sknorm[dask]')"
dask = pytest.importorskip("dask", reason=REASON)
da = pytest.importorskip("dask.array", reason=REASON)
dd = pytest.importorskip("dask.dataframe", reason=REASON)
distributed = pytest.importorskip("distributed", reason=REASON)
pd = pytest.importorskip("pandas", reason=REASON)

from dask.callbacks import Callback  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

MODES = {
    "exact": {},
    "half_life": {"half_life": 150.0},
    "momentum": {"momentum": 0.2},
}
FITTED = ["mean_", "var_", "scale_", "weight_sum_", "n_samples_seen_"]


def make_data(n_rows=700, n_features=5, seed=0, dtype=np.float64, nan_frac=0.1):
    """Data far from 0 (digits would be lost by a naive merge), with NaNs."""
    rng = np.random.default_rng(seed)
    X = 1e6 + rng.standard_normal((n_rows, n_features)) * np.arange(1, n_features + 1)
    X[rng.random(X.shape) < nan_frac] = np.nan
    if nan_frac:
        X[:40, 0] = np.nan  # column 0 has its first value late in the stream
    return X.astype(dtype), rng.random(n_rows)


def row_chunks(n_rows, sizes=(97, 150, 3, 211)):
    """Irregular row chunks (one empty) covering ``n_rows``."""
    chunks, total, i = [], 0, 0
    while total < n_rows:
        size = min(sizes[i % len(sizes)], n_rows - total)
        chunks.append(size)
        total += size
        i += 1
    return tuple(chunks[:2]) + (0,) + tuple(chunks[2:])


def numpy_reference(kwargs, X, w, chunks):
    """The same fit on NumPy: one shot, or one partial_fit per block (momentum)."""
    ref = BatchNormalizer(**kwargs)
    if "momentum" not in kwargs:
        return ref.fit(X, sample_weight=w)
    start = 0
    for size in chunks:
        if size:
            part = None if w is None else w[start : start + size]
            ref.partial_fit(X[start : start + size], sample_weight=part)
        start += size
    return ref


def brute_force(X, w, half_life=None):
    """Weighted NaN-aware mean and biased variance, in long double."""
    Xl = X.astype(np.longdouble)
    w = np.ones(X.shape[0]) if w is None else w.astype(np.longdouble)
    if half_life is not None:
        w = w * np.exp2(-np.arange(X.shape[0] - 1, -1, -1) / half_life)
    W = np.where(np.isnan(Xl), 0, w[:, None])
    Xz = np.where(np.isnan(Xl), 0, Xl)
    mean = (W * Xz).sum(axis=0) / W.sum(axis=0)
    var = (W * (Xz - mean) ** 2).sum(axis=0) / W.sum(axis=0)
    return mean.astype(np.float64), var.astype(np.float64)


def assert_same_fit(a, b, rtol=1e-12):
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=rtol, err_msg=name
        )
    assert a.n_features_in_ == b.n_features_in_


def state_of(est):
    # Caches (the validated parameters) are not state.
    transient = getattr(est, "_transient_attributes", ())
    return pickle.dumps({k: v for k, v in est.__dict__.items() if k not in transient})


class CountComputes(Callback):
    """Counts graph executions and records the results of sknorm's tasks."""

    def __init__(self):
        super().__init__()
        self.computes = 0
        self.results = {}

    def _start(self, dsk):
        self.computes += 1

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(key, str) and key.startswith("sknorm-"):
            self.results[key] = result


@pytest.fixture(autouse=True)
def threaded_scheduler(request):
    if "cluster" in request.fixturenames:
        yield
        return
    with dask.config.set(scheduler="threads"):
        yield


# -- sknorm without dask ------------------------------------------------------


def test_sknorm_does_not_import_dask():
    code = (
        "import sys, pickle, numpy as np; from sknorm import BatchNormalizer; "
        "n = BatchNormalizer().fit(np.ones((3, 2))); n.transform(np.ones((1, 2))); "
        "pickle.loads(pickle.dumps(n)); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- fitting on the threaded scheduler ----------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("col_chunk", [5, 2])
def test_fit_array_equals_numpy(mode, weighted, col_chunk):
    X, w = make_data()
    chunks = row_chunks(X.shape[0])
    Xd = da.from_array(X, chunks=(chunks, col_chunk))
    wd = da.from_array(w, chunks=50) if weighted else None  # rechunked to X's rows
    w = w if weighted else None
    norm = BatchNormalizer(**MODES[mode]).fit(Xd, sample_weight=wd)
    assert_same_fit(norm, numpy_reference(MODES[mode], X, w, chunks))
    assert isinstance(norm._state.count, np.ndarray)
    assert isinstance(norm.n_samples_seen_, np.ndarray)  # NaNs: per-feature counts
    np.testing.assert_array_equal(norm.n_samples_seen_, (~np.isnan(X)).sum(axis=0))
    if mode != "momentum":
        mean, var = brute_force(X, w, MODES[mode].get("half_life"))
        np.testing.assert_allclose(norm.mean_, mean, rtol=1e-14)
        np.testing.assert_allclose(norm.var_, var, rtol=1e-10)


@settings(max_examples=30)
@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=8),
    mode=st.sampled_from(["exact", "half_life", "momentum"]),
    weighted=st.booleans(),
)
def test_any_row_chunking_gives_the_numpy_fit(sizes, mode, weighted):
    assume(sum(sizes) > 0)
    X, w = make_data(n_rows=sum(sizes), n_features=3, nan_frac=0.2)
    w = w if weighted else None
    Xd = da.from_array(X, chunks=(tuple(sizes), 3))
    wd = None if w is None else da.from_array(w, chunks=(tuple(sizes),))
    if mode == "momentum" and 1 in sizes:
        # Every block is one batch, and the momentum mode needs 2 rows.
        with pytest.raises(ValueError, match="got 1 sample.*one batch: rechunk"):
            BatchNormalizer(**MODES[mode]).fit(Xd, sample_weight=wd)
        return
    norm = BatchNormalizer(**MODES[mode]).fit(Xd, sample_weight=wd)
    assert_same_fit(norm, numpy_reference(MODES[mode], X, w, sizes))


@pytest.mark.parametrize("mode", MODES)
def test_fit_dataframe_equals_numpy(mode):
    X, w = make_data(n_rows=400)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["weight"] = w
    ddf = dd.from_pandas(df, npartitions=4)
    features = ddf.drop(columns="weight")
    norm = BatchNormalizer(**MODES[mode]).fit(features, sample_weight=ddf["weight"])
    sizes = ddf.map_partitions(len).compute().tolist()
    ref = numpy_reference(MODES[mode], X, w, sizes)
    assert_same_fit(norm, ref)
    assert norm.feature_names_in_.tolist() == df.columns[:-1].tolist()


def test_fit_dataframe_nullable_float32_and_empty_partitions():
    X, _ = make_data(n_rows=300, n_features=3, dtype=np.float32)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["n"] = pd.array(np.arange(300) % 7, dtype="Int64")
    df.loc[::5, "n"] = pd.NA
    ddf = dd.from_pandas(df, npartitions=5)
    # The first partitions become empty.
    ddf = ddf.map_partitions(lambda part: part[part.index >= 120])
    norm = BatchNormalizer().fit(ddf)
    expected = df.iloc[120:].astype({"n": "float64"}).to_numpy(dtype=np.float64)
    ref = BatchNormalizer().fit(expected)
    assert_same_fit(norm, ref)
    assert norm.n_samples_seen_[3] == np.count_nonzero(~np.isnan(expected[:, 3]))
    out = norm.transform(ddf).compute()
    assert out.dtypes.tolist() == [np.dtype(np.float64)] * 4
    pd.testing.assert_index_equal(out.index, df.index[120:])
    np.testing.assert_allclose(
        out.to_numpy(), ref.transform(expected), rtol=1e-12, equal_nan=True
    )
    only_float32 = dd.from_pandas(df[["a", "b"]], npartitions=3)
    norm32 = BatchNormalizer().fit(only_float32)
    assert (
        norm32.transform(only_float32).compute().dtypes.tolist()
        == [np.dtype(np.float32)] * 2
    )


def test_fit_unknown_chunk_sizes():
    X, w = make_data(n_rows=300)
    keep = np.arange(300) % 3 != 0
    Xd = da.from_array(X, chunks=(70, 5))
    wd = da.from_array(w, chunks=70)
    mask = da.from_array(keep, chunks=70)
    Xf, wf = Xd[mask], wd[mask]
    assert np.isnan(Xf.shape[0])
    norm = BatchNormalizer().fit(Xf, sample_weight=wf)
    assert_same_fit(norm, BatchNormalizer().fit(X[keep], sample_weight=w[keep]))


@pytest.mark.parametrize("mode", ["exact", "half_life"])
def test_partial_fit_mixes_numpy_and_dask(mode):
    X, _ = make_data(n_rows=600)
    norm = BatchNormalizer(**MODES[mode])
    norm.partial_fit(X[:100])
    norm.partial_fit(da.from_array(X[100:500], chunks=(90, 3)))
    norm.partial_fit(X[500:])
    assert_same_fit(norm, BatchNormalizer(**MODES[mode]).fit(X))
    again = pickle.loads(pickle.dumps(norm))
    assert_same_fit(again, norm)


def test_partial_fit_momentum_continues_the_chain():
    X, _ = make_data(n_rows=300)
    norm = BatchNormalizer(momentum=0.3).partial_fit(X[:50])
    norm.partial_fit(da.from_array(X[50:], chunks=(125, 5)))
    ref = BatchNormalizer(momentum=0.3)
    for start, stop in [(0, 50), (50, 175), (175, 300)]:
        ref.partial_fit(X[start:stop])
    assert_same_fit(norm, ref)


def test_momentum_refuses_a_one_row_block_and_keeps_state():
    X, _ = make_data(n_rows=60, nan_frac=0.0)
    norm = BatchNormalizer(momentum=0.3).partial_fit(X[:10])
    before = pickle.dumps((norm.mean_, norm.var_, norm.n_samples_seen_))
    with pytest.raises(ValueError, match="got 1 sample.*one batch: rechunk"):
        norm.partial_fit(da.from_array(X[10:], chunks=((49, 1), (5,))))
    assert pickle.dumps((norm.mean_, norm.var_, norm.n_samples_seen_)) == before


def test_numpy_sample_weight_with_dask_array():
    X, w = make_data(n_rows=200)
    norm = BatchNormalizer().fit(da.from_array(X, chunks=64), sample_weight=w)
    assert_same_fit(norm, BatchNormalizer().fit(X, sample_weight=w))
    norm = BatchNormalizer().fit(da.from_array(X, chunks=64), sample_weight=2.0)
    np.testing.assert_allclose(norm.weight_sum_, 2.0 * (~np.isnan(X)).sum(axis=0))


def test_fit_is_one_compute_and_moves_only_states():
    X, _ = make_data(n_rows=4000, n_features=4, nan_frac=0.0)
    Xd = da.from_array(X, chunks=(500, 4))
    with CountComputes() as cb:
        BatchNormalizer().fit(Xd)
    assert cb.computes == 1
    # 8 block summaries and 7 merges, each O(n_features), not O(rows).
    assert len(cb.results) == 15
    for result in cb.results.values():
        state = result.state
        arrays = [state.shift, state.count, *state.moments]
        assert all(a.shape == (4,) for a in arrays)


# -- errors leave the state unchanged -----------------------------------------


def fitted_on_dataframe():
    X, _ = make_data(n_rows=100, n_features=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    return BatchNormalizer().fit(df), df


@pytest.mark.parametrize(
    "make_bad, error, match",
    [
        (
            lambda df: dd.from_pandas(df.assign(b=np.inf), npartitions=2),
            ValueError,
            "contains infinity in feature",
        ),
        (
            lambda df: dd.from_pandas(df[["a", "b"]], npartitions=2),
            ValueError,
            "yet now missing",
        ),
        (
            lambda df: da.from_array(df.to_numpy()[:, :2], chunks=50),
            ValueError,
            "expecting 3 features",
        ),
        (
            lambda df: dd.from_pandas(df.rename(columns={"c": "z"}), npartitions=2),
            ValueError,
            "feature names",
        ),
        (
            lambda df: dd.from_pandas(df.assign(c="text"), npartitions=2),
            TypeError,
            "Columns c of the dask DataFrame are not numeric",
        ),
        (
            lambda df: da.from_array(df.to_numpy()[:, 0], chunks=10),
            ValueError,
            "Expected a 2-D dask array",
        ),
        (
            lambda df: dd.from_pandas(df, npartitions=2)["a"],
            TypeError,
            "use series.to_frame",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_bad_input_leaves_state_unchanged(make_bad, error, match):
    norm, df = fitted_on_dataframe()
    before = state_of(norm)
    with pytest.raises(error, match=match):
        norm.partial_fit(make_bad(df))
    assert state_of(norm) == before


@pytest.mark.parametrize(
    "make_weight, error, match",
    [
        (lambda w: da.from_array(-w, chunks=25), ValueError, "negative"),
        (lambda w: da.from_array(w[:-1], chunks=25), ValueError, "99 values"),
        (lambda w: da.from_array(w[:, None], chunks=25), ValueError, "1-D dask"),
        (
            lambda w: da.from_array(w, chunks=20)[da.from_array(w, chunks=20) > 0.5],
            ValueError,
            "sample_weight has 5 blocks but X has 4 row blocks",
        ),
        (lambda w: np.zeros(100), ValueError, "All sample weights are zero"),
    ],
)
def test_bad_sample_weight_leaves_state_unchanged(make_weight, error, match):
    X, w = make_data(n_rows=100, n_features=3)
    norm = BatchNormalizer().fit(X[:10])
    before = state_of(norm)
    Xd = da.from_array(X, chunks=(30, 3))
    with pytest.raises(error, match=match):
        norm.fit(Xd, sample_weight=make_weight(w))
    assert state_of(norm) == before


def test_weight_partitions_must_match_rows():
    X, w = make_data(n_rows=100, n_features=3)
    ddf = dd.from_pandas(pd.DataFrame(X), npartitions=4)
    norm = BatchNormalizer()
    uneven = da.from_array(w, chunks=((40, 20, 20, 20),))
    with pytest.raises(ValueError, match=r"sample_weight has \d+ values but the block"):
        norm.fit(ddf, sample_weight=uneven)
    with pytest.raises(TypeError, match="partitioned like the rows of X"):
        norm.fit(ddf, sample_weight=w)
    assert not hasattr(norm, "_state")


def test_weight_series_with_other_divisions():
    X, w = make_data(n_rows=100, n_features=3)
    ddf = dd.from_pandas(pd.DataFrame(X), npartitions=4)
    weights = dd.from_pandas(pd.Series(w, index=np.arange(100) + 7), npartitions=4)
    with pytest.raises(ValueError, match="divisions differ"):
        BatchNormalizer().fit(ddf, sample_weight=weights)


def test_sparse_blocks_are_rejected_before_computing():
    X = da.from_array(np.eye(6), chunks=3).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, 0))
    )
    norm = BatchNormalizer(with_mean=False)
    with CountComputes() as cb, pytest.raises(TypeError, match="blocks of type"):
        norm.fit(X)
    assert cb.computes == 0 and not hasattr(norm, "n_features_in_")


def test_mode_change_and_object_dtype():
    X, _ = make_data(n_rows=60, n_features=2)
    norm = BatchNormalizer().fit(X)
    before = state_of(norm)
    with pytest.raises(ValueError, match="statistics mode changed"):
        norm.set_params(momentum=0.1).partial_fit(da.from_array(X, chunks=20))
    with pytest.raises(TypeError, match="needs real numbers"):
        norm.set_params(momentum=None).partial_fit(
            da.from_array(X.astype(object), chunks=20)
        )
    assert state_of(norm) == before


# -- transforming -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transform_array_is_lazy_and_equals_numpy(dtype):
    X, _ = make_data(n_rows=300, dtype=dtype)
    Xd = da.from_array(X, chunks=((100, 0, 200), (2, 3)))
    norm = BatchNormalizer(clip=3.0).fit(X)
    with CountComputes() as cb:
        Z = norm.transform(Xd)
        back = norm.inverse_transform(Z)
    assert cb.computes == 0
    assert isinstance(Z, da.Array) and Z.chunks == Xd.chunks and Z.dtype == dtype
    expected = norm.transform(X)
    np.testing.assert_array_equal(Z.compute(), expected)
    np.testing.assert_array_equal(back.compute(), norm.inverse_transform(expected))
    np.testing.assert_array_equal(Xd.compute(), X)  # blocks not modified


def test_transform_dataframe_keeps_index_and_columns():
    X, _ = make_data(n_rows=200, n_features=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(200) * 10 + 5)
    ddf = dd.from_pandas(df, npartitions=3)
    norm = BatchNormalizer().fit(ddf)
    with CountComputes() as cb:
        Z = norm.transform(ddf)
    assert cb.computes == 0
    assert isinstance(Z, dd.DataFrame) and Z.npartitions == 3
    result = Z.compute()
    pd.testing.assert_index_equal(result.index, df.index)
    assert result.columns.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(result.to_numpy(), norm.transform(df))
    back = norm.inverse_transform(Z).compute()
    np.testing.assert_allclose(back.to_numpy(), X, rtol=1e-12)


def test_transform_checks_features_without_computing():
    X, _ = make_data(n_rows=50, n_features=3)
    norm = BatchNormalizer().fit(X)
    with pytest.raises(ValueError, match="features"):
        norm.transform(da.from_array(X[:, :2], chunks=10))
    Z = norm.transform(da.from_array(np.where(X > 1e6, np.inf, X), chunks=10))
    with pytest.raises(ValueError, match="infinity"):
        Z.compute()


def test_set_output_pandas_gives_pandas():
    X, _ = make_data(n_rows=80, n_features=2)
    df = pd.DataFrame(X, columns=["a", "b"], index=np.arange(80) + 100)
    norm = BatchNormalizer().set_output(transform="pandas").fit(df)
    out = norm.transform(dd.from_pandas(df, npartitions=2))
    assert isinstance(out, pd.DataFrame)
    # Also checks that transforming dask input kept the estimator's config.
    pd.testing.assert_frame_equal(out, norm.transform(df))


def test_transform_rejects_text_columns_before_computing():
    norm, df = fitted_on_dataframe()
    with pytest.raises(TypeError, match="Columns b of the dask DataFrame"):
        norm.transform(dd.from_pandas(df.assign(b="x"), npartitions=2))


def test_set_output_pandas_on_dask_array():
    X, _ = make_data(n_rows=60, n_features=2)
    norm = BatchNormalizer().fit(X)
    with sklearn.config_context(transform_output="pandas"):
        out = norm.transform(da.from_array(X, chunks=25))
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == ["x0", "x1"]
    np.testing.assert_array_equal(out.to_numpy(), norm.transform(X))
    assert isinstance(norm.transform(da.from_array(X, chunks=25)), da.Array)


@pytest.mark.parametrize("kind", ["array", "dataframe"])
def test_set_output_polars(kind):
    pl = pytest.importorskip("polars", reason="polars is not installed")
    X, _ = make_data(n_rows=60, n_features=2)
    df = pd.DataFrame(X, columns=["a", "b"])
    norm = BatchNormalizer().fit(df if kind == "dataframe" else X)
    norm.set_output(transform="polars")
    lazy_input = (
        dd.from_pandas(df, npartitions=2)
        if kind == "dataframe"
        else da.from_array(X, chunks=25)
    )
    out = norm.transform(lazy_input)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == (["a", "b"] if kind == "dataframe" else ["x0", "x1"])
    eager_input = df if kind == "dataframe" else X
    np.testing.assert_array_equal(
        out.to_numpy(), norm.set_output(transform="default").transform(eager_input)
    )


def test_pipeline_on_dask():
    X, _ = make_data(n_rows=300, n_features=4, nan_frac=0.0)
    Xd = da.from_array(X, chunks=(100, 4))
    lazy = make_pipeline(BatchNormalizer(), BatchNormalizer(with_mean=False))
    Z = lazy.fit(Xd).transform(Xd)
    assert isinstance(Z, da.Array)
    np.testing.assert_allclose(
        Z.compute(),
        make_pipeline(BatchNormalizer(), BatchNormalizer(with_mean=False))
        .fit(X)
        .transform(X),
        rtol=1e-12,
    )
    # A step that only takes NumPy computes the normalized data in memory.
    pca = make_pipeline(BatchNormalizer(), PCA(n_components=2, random_state=0))
    ref = make_pipeline(BatchNormalizer(), PCA(n_components=2, random_state=0))
    np.testing.assert_allclose(
        np.abs(pca.fit_transform(Xd)), np.abs(ref.fit_transform(X)), rtol=1e-9
    )


def test_streaming_pipeline_on_dask_batches():
    from sklearn.linear_model import SGDRegressor

    from sknorm import make_streaming_pipeline

    X, _ = make_data(n_rows=300, n_features=4, nan_frac=0.0)
    y = X @ np.arange(1.0, 5.0) - 1e7

    def pipeline():
        return make_streaming_pipeline(
            BatchNormalizer(),
            BatchNormalizer(with_mean=False),
            SGDRegressor(random_state=0),
        )

    on_dask, on_numpy = pipeline(), pipeline()
    for start in (0, 150):
        batch = slice(start, start + 150)
        Xd = da.from_array(X[batch], chunks=50)
        on_dask.partial_fit(Xd, da.from_array(y[batch], chunks=50))
        on_numpy.partial_fit(X[batch], y[batch])
    for name in ("mean_", "var_"):
        np.testing.assert_allclose(
            getattr(on_dask[0], name), getattr(on_numpy[0], name), rtol=1e-12
        )
    np.testing.assert_allclose(on_dask[1].var_, on_numpy[1].var_, rtol=1e-12)
    np.testing.assert_allclose(on_dask[-1].coef_, on_numpy[-1].coef_, rtol=1e-9)
    assert isinstance(on_dask[:-1].transform(da.from_array(X, chunks=100)), da.Array)


# -- on a two-process LocalCluster --------------------------------------------


class TaskSizes(SchedulerPlugin):
    """Records the size in bytes of every sknorm task's result."""

    name = "sknorm-task-sizes"

    def __init__(self):
        self.sizes = {}

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        ts = self.scheduler.tasks.get(key)
        if finish == "memory" and ts is not None:
            self.sizes[str(key)] = ts.nbytes


def clear_task_sizes(client):
    client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.plugins[TaskSizes.name].sizes.clear()
    )


def task_sizes(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: dict(dask_scheduler.plugins[TaskSizes.name].sizes)
    )


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local_cluster,
        distributed.Client(local_cluster) as client,
    ):
        client.register_plugin(TaskSizes())
        yield client


@pytest.mark.parametrize("mode", MODES)
def test_cluster_fit_and_transform_equal_numpy(cluster, mode):
    X, w = make_data(n_rows=1000)
    chunks = (250, 250, 250, 250)
    Xd = da.from_array(X, chunks=(chunks, 5))
    wd = da.from_array(w, chunks=250)
    norm = BatchNormalizer(**MODES[mode]).fit(Xd, sample_weight=wd)
    assert_same_fit(norm, numpy_reference(MODES[mode], X, w, chunks))
    clear_task_sizes(cluster)
    Z = norm.transform(Xd)
    assert task_sizes(cluster) == {}  # lazy: nothing ran on the cluster
    np.testing.assert_allclose(Z.compute(), norm.transform(X), rtol=1e-12)
    assert any("sknorm-transform" in key for key in task_sizes(cluster))
    ddf = dd.from_dask_array(Xd, columns=list("abcde"))
    norm = BatchNormalizer(**MODES[mode]).fit(ddf, sample_weight=wd)
    assert_same_fit(norm, numpy_reference(MODES[mode], X, w, chunks))


def test_cluster_moves_only_states(cluster):
    n_rows, n_features = 40_000, 8
    Xd = da.random.default_rng(0).standard_normal(
        (n_rows, n_features), chunks=(5_000, n_features)
    )
    clear_task_sizes(cluster)
    norm = BatchNormalizer().fit(Xd)
    sizes = task_sizes(cluster)
    ours = {k: v for k, v in sizes.items() if k.startswith("sknorm-")}
    data = {k: v for k, v in sizes.items() if not k.startswith("sknorm-")}
    assert len(ours) == 8 + 7  # block summaries and tree merges
    block_bytes = 5_000 * n_features * 8
    assert max(data.values()) >= block_bytes
    # A state is a handful of (n_features,) arrays: far below one block.
    assert max(ours.values()) < 100 * n_features * 8 < block_bytes / 10
    assert norm.n_samples_seen_ == n_rows
    np.testing.assert_allclose(norm.mean_, Xd.mean(axis=0).compute(), atol=1e-12)
    np.testing.assert_allclose(norm.var_, Xd.var(axis=0).compute(), rtol=1e-12)
