"""Dask for the rest of the family, through the streaming base.

RobustNormalizer and QuantileNormalizer fit dask arrays and DataFrames with
their sketches built on the workers and reduced in a tree; LayerNormalizer
and GroupNormalizer transform dask input lazily, block by block.
"""

import numpy as np
import pytest
from sklearn.base import clone

from sknorm import (
    GroupNormalizer,
    LayerNormalizer,
    QuantileNormalizer,
    RobustNormalizer,
    _kll,
)

REASON = "the dask extra is not installed (pip install 'sknorm[dask]')"
dask = pytest.importorskip("dask", reason=REASON)
da = pytest.importorskip("dask.array", reason=REASON)
dd = pytest.importorskip("dask.dataframe", reason=REASON)
pd = pytest.importorskip("pandas", reason=REASON)

from dask.callbacks import Callback  # noqa: E402


class CountComputes(Callback):
    def __init__(self):
        super().__init__()
        self.computes = 0

    def _start(self, dsk):
        self.computes += 1


def heavy_tailed(n_rows=40_000, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(2, size=(n_rows, n_features)) * [1.0, 100.0, 0.01]
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def true_rank(column, value):
    column = column[~np.isnan(column)]
    return np.searchsorted(np.sort(column), value, side="right") / column.size


@pytest.mark.parametrize("container", ["array", "dataframe"])
def test_robust_normalizer_fits_dask_within_the_rank_bound(container):
    X = heavy_tailed()
    k = 128
    if container == "array":
        Xd = da.from_array(X, chunks=(5_000, 3))
    else:
        Xd = dd.from_pandas(pd.DataFrame(X, columns=list("abc")), npartitions=8)
    with CountComputes() as cb:
        norm = RobustNormalizer(sketch_size=k, random_state=0).fit(Xd)
    assert cb.computes == 1
    assert np.array_equal(norm.n_samples_seen_, (~np.isnan(X)).sum(axis=0))
    bound = _kll.rank_error_bound(k, delta=0.01)
    for j in range(3):
        assert abs(true_rank(X[:, j], norm.center_[j]) - 0.5) <= bound
    # Every quartile read from the reduced sketches is within the bound too.
    low, high = _kll.sketch_quantiles(norm._state, np.array([0.25, 0.75]))
    for j in range(3):
        assert abs(true_rank(X[:, j], low[j]) - 0.25) <= bound
        assert abs(true_rank(X[:, j], high[j]) - 0.75) <= bound


def test_robust_dask_fit_is_reproducible_for_a_seed_and_chunking():
    X = heavy_tailed(seed=1)
    Xd = da.from_array(X, chunks=(3_000, 3))
    first = RobustNormalizer(sketch_size=64, random_state=7).fit(Xd)
    second = RobustNormalizer(sketch_size=64, random_state=7).fit(Xd)
    np.testing.assert_array_equal(first.center_, second.center_)
    np.testing.assert_array_equal(first.scale_, second.scale_)
    other_seed = RobustNormalizer(sketch_size=64, random_state=8).fit(Xd)
    assert not np.array_equal(first.center_, other_seed.center_)


def test_robust_dask_partial_fit_continues_the_stream_and_keeps_state_on_error():
    X = heavy_tailed(n_rows=6_000, seed=2)
    norm = RobustNormalizer(sketch_size=8192, random_state=0).fit(X[:2_000])
    norm.partial_fit(da.from_array(X[2_000:], chunks=(1_000, 3)))
    # Below the sketch size every statistic is exact: equal to all at once.
    exact = RobustNormalizer(sketch_size=8192).fit(X)
    np.testing.assert_array_equal(norm.center_, exact.center_)
    np.testing.assert_array_equal(norm.n_samples_seen_, exact.n_samples_seen_)
    bad = X[:100].copy()
    bad[5, 1] = np.inf
    before = norm.center_
    with pytest.raises(ValueError, match="infinity"):
        norm.partial_fit(da.from_array(bad, chunks=(50, 3)))
    np.testing.assert_array_equal(norm.center_, before)


def test_quantile_normalizer_fits_dask_like_numpy_while_exact():
    X = heavy_tailed(n_rows=3_000, seed=3)
    Xd = da.from_array(X, chunks=(700, 3))
    kwargs = {"n_quantiles": 50, "sketch_size": 4096, "random_state": 0}
    fitted = QuantileNormalizer(**kwargs).fit(Xd)
    local = QuantileNormalizer(**kwargs).fit(X)
    np.testing.assert_array_equal(fitted.quantiles_, local.quantiles_)


@pytest.mark.parametrize(
    "estimator", [LayerNormalizer(), GroupNormalizer(n_groups=2, eps=0.0)], ids=repr
)
def test_row_normalizers_transform_dask_lazily_block_by_block(estimator):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 6)) * [1, 2, 3, 10, 20, 30]
    Xd = da.from_array(X, chunks=(100, 3))  # column chunks split the groups
    with CountComputes() as cb:
        estimator.fit(Xd)
        lazy = estimator.transform(Xd)
    assert cb.computes == 1  # the fit's pass over the data only
    assert isinstance(lazy, da.Array) and lazy.chunks == Xd.chunks
    np.testing.assert_allclose(lazy.compute(), estimator.transform(X), rtol=1e-12)
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcdef")), npartitions=4)
    out = estimator.fit(frame).transform(frame)
    assert isinstance(out, dd.DataFrame)
    expected = clone(estimator).fit(X).transform(X)
    np.testing.assert_allclose(out.compute().to_numpy(), expected, rtol=1e-12)


def test_group_normalizer_dask_fit_checks_the_groups():
    Xd = da.from_array(np.ones((10, 5)), chunks=(5, 5))
    with pytest.raises(ValueError, match="not divisible by n_groups=2"):
        GroupNormalizer(n_groups=2).fit(Xd)
