"""Fit and transform dask collections, with the statistics reduced on the workers.

``BatchNormalizer`` comes here when it is given a ``dask.array.Array`` or a
``dask.dataframe.DataFrame``. This module is imported only then, and imports
dask only inside its functions, so sknorm without the ``dask`` extra never
imports dask.

Fitting builds one task per row block that turns the block into a statistics
state of O(n_features) (the pure functions of ``_stats``), then combines the
states: in a tree of pairwise merges for the exact and half-life modes (blocks
stay in row order, so the half-life merge is the ordered one), and in a chain,
block after block, for the momentum mode, where every block is one batch. Only
the final state reaches the client. Transforming maps the fitted normalizer
over the blocks lazily.

A dask array chunked along the columns is rechunked to one chunk of columns
before fitting (row chunks are kept): each block then holds whole rows.
Transforming keeps the input's chunks.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from typing import NamedTuple

import numpy as np
from sklearn import config_context, get_config
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from . import _stats
from ._atomic import unchanged_on_error
from ._validation import (
    FLOAT_DTYPES,
    check_no_infinity,
    check_sample_weight,
    format_indices,
)

# Prefix of the keys of the tasks this module adds to a graph.
KEY_PREFIX = "sknorm"


class BlockSummary(NamedTuple):
    """What a task returns about the rows it has seen: O(n_features) numbers.

    ``state`` is a ``StreamState`` (exact and half-life modes) or an
    ``EmaState`` (momentum mode); ``has_weight`` tells whether any of the rows
    had a positive sample weight.
    """

    state: _stats.StreamState | _stats.EmaState
    has_weight: bool


# -- fitting ------------------------------------------------------------------


def learn_dask(estimator, X, sample_weight, reset: bool, need_weight: bool):
    """``BatchNormalizer._learn`` for a dask collection: one pass over the data.

    The state is published only once the whole graph has been computed; if
    anything raises, the estimator is left exactly as it was.
    """
    with unchanged_on_error(estimator):
        mode = estimator._mode()
        X, dtype, n_features = _validate_collection(estimator, X, reset=reset)
        blocks = _row_blocks(X)
        weights = _weight_blocks(sample_weight, X, len(blocks))
        if reset:
            old = estimator._empty_state(mode, n_features)
        else:
            old = estimator._state
            estimator._check_state_matches(old, mode)
        summary = _reduce_graph(
            blocks,
            weights,
            mode=mode,
            param=estimator.momentum if mode == "momentum" else estimator.half_life,
            dtype=dtype,
            old=old,
            assume_finite=get_config()["assume_finite"],
        ).compute()
        state = summary.state
        if state.n_rows == (old.n_rows if mode == "momentum" else 0):
            raise ValueError(
                "The dask collection has no rows: give fit at least one sample."
            )
        if need_weight and not summary.has_weight:
            raise ValueError(
                "All sample weights are zero: fit has nothing to learn from. "
                "Give at least one sample a positive weight."
            )
        if mode != "momentum" and not reset:
            half_life = estimator.half_life if mode == "half_life" else None
            state = _stats.merge_stream_states(old, state, half_life)
        estimator._publish(state)
    return estimator


def _validate_collection(estimator, X, reset: bool):
    """Check X's shape, dtypes and features without computing it.

    Feature counts and names go through ``validate_data`` on an empty stand-in
    of X, so they are checked (and ``n_features_in_`` and ``feature_names_in_``
    set) exactly as for in-memory data. Returns X, with one chunk of columns if
    it is an array, the float dtype the blocks are converted to, and the
    number of features.
    """
    import dask.array as da

    empty = validate_data(
        estimator,
        _stand_in(X),
        reset=reset,
        dtype=FLOAT_DTYPES,
        ensure_all_finite=False,
        ensure_min_samples=0,
    )
    if isinstance(X, da.Array) and X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    return X, empty.dtype, empty.shape[1]


def _stand_in(X):
    """An empty NumPy array or pandas DataFrame with X's columns and dtypes.

    Raises for what can be seen without computing X: a collection that is not
    2-D, an unknown number of columns, non-numeric dtypes.
    """
    import dask.array as da

    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(
                f"Expected a 2-D dask array of shape (n_samples, n_features), got "
                f"{X.ndim}-D; reshape it, e.g. X.reshape(-1, 1) for one feature."
            )
        if np.isnan(X.shape[1]):
            raise ValueError(
                "The dask array has an unknown number of columns; call "
                "X.compute_chunk_sizes() or build it with known chunks."
            )
        if X.dtype.kind not in "biuf":
            raise TypeError(
                f"The dask array has dtype {X.dtype}; BatchNormalizer needs real "
                "numbers. Convert it first, e.g. X.astype(float)."
            )
        if not isinstance(X._meta, np.ndarray):
            raise TypeError(
                f"The dask array has blocks of type {type(X._meta).__name__}; "
                "BatchNormalizer takes dask arrays of NumPy blocks. Convert the "
                "blocks first, e.g. X.map_blocks(lambda b: b.toarray()) for "
                "sparse ones."
            )
        return np.empty((0, X.shape[1]), dtype=X.dtype)
    if _is_dask_dataframe(X):
        meta = X._meta
        bad = [str(c) for c, t in meta.dtypes.items() if t.kind not in "biuf"]
        if bad:
            raise TypeError(
                f"Columns {format_indices(bad)} of the dask DataFrame are not numeric; "
                "BatchNormalizer needs real numbers. Drop or encode them first."
            )
        return meta
    raise TypeError(
        f"Expected a 2-D dask array or a dask DataFrame, got {type(X).__name__}; "
        "for a dask Series, use series.to_frame()."
    )


def _is_dask_dataframe(X) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # dask without its dataframe part (and pandas)
        return False
    return isinstance(X, dd.DataFrame)


def _is_dask_series(X) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:
        return False
    return isinstance(X, dd.Series)


def _row_blocks(X) -> list:
    """One dask Delayed per row block (array chunk or DataFrame partition)."""
    import dask.array as da

    if isinstance(X, da.Array):
        return list(X.to_delayed().ravel())
    return list(X.to_delayed())


def _weight_blocks(sample_weight, X, n_blocks: int) -> list:
    """``sample_weight`` split like the row blocks of X: Delayed, number or None."""
    import dask.array as da

    if sample_weight is None or isinstance(sample_weight, numbers.Number):
        return [sample_weight] * n_blocks
    if _is_dask_dataframe(sample_weight):
        raise ValueError(
            "sample_weight must be 1-D: pass a dask Series or a 1-D dask array, "
            "not a DataFrame."
        )
    if isinstance(sample_weight, da.Array):
        if sample_weight.ndim != 1:
            raise ValueError(
                f"sample_weight must be a 1-D dask array, got {sample_weight.ndim}-D; "
                "pass one weight per row of X."
            )
        if isinstance(X, da.Array):
            sample_weight = _align_weight_chunks(sample_weight, X.chunks[0])
        blocks = list(sample_weight.to_delayed().ravel())
    elif _is_dask_series(sample_weight):
        if (
            _is_dask_dataframe(X)
            and X.known_divisions
            and sample_weight.known_divisions
            and tuple(X.divisions) != tuple(sample_weight.divisions)
        ):
            raise ValueError(
                "sample_weight is partitioned differently from X (their "
                "divisions differ); take it as a column of the same DataFrame, "
                "or repartition it with divisions=X.divisions."
            )
        blocks = list(sample_weight.to_delayed())
    else:
        if not isinstance(X, da.Array) or np.isnan(sum(X.chunks[0])):
            raise TypeError(
                "With a dask DataFrame, or a dask array of unknown row chunks, "
                "pass sample_weight as a dask Series or dask array partitioned "
                "like the rows of X."
            )
        weights = check_sample_weight(sample_weight, X.shape[0])
        blocks = list(da.from_array(weights, chunks=(X.chunks[0],)).to_delayed())
    if len(blocks) != n_blocks:
        raise ValueError(
            f"sample_weight has {len(blocks)} blocks but X has {n_blocks} row "
            "blocks; partition sample_weight like the rows of X (for a dask "
            "DataFrame, take it as a column of the same DataFrame)."
        )
    return blocks


def _align_weight_chunks(sample_weight, row_chunks: tuple):
    """Rechunk a dask array of weights to X's row chunks when both are known."""
    known = not (np.isnan(sum(row_chunks)) or np.isnan(sample_weight.shape[0]))
    if not known or sample_weight.chunks[0] == row_chunks:
        return sample_weight
    if sample_weight.shape[0] != sum(row_chunks):
        raise ValueError(
            f"sample_weight has {sample_weight.shape[0]} values but X has "
            f"{sum(row_chunks)} rows; pass one weight per row of X."
        )
    return sample_weight.rechunk((row_chunks,))


def _reduce_graph(blocks, weights, *, mode, param, dtype, old, assume_finite):
    """The Delayed ``BlockSummary`` of all the blocks, in row order."""
    from dask import delayed
    from dask.base import tokenize

    token = tokenize(blocks, weights, mode, param, str(dtype), old, assume_finite)
    n_features = old.shift.shape[0]
    if mode == "momentum":
        # Every block is one batch, applied in order: a chain of tasks, each
        # moving only the O(n_features) state to the next.
        summary = BlockSummary(old, False)
        for i, (block, weight) in enumerate(zip(blocks, weights, strict=True)):
            summary = delayed(_momentum_step, pure=True)(
                summary,
                block,
                weight,
                param,
                dtype,
                n_features,
                assume_finite,
                dask_key_name=f"{KEY_PREFIX}-momentum-{token}-{i}",
            )
        return summary
    summaries = [
        delayed(_block_summary, pure=True)(
            block,
            weight,
            mode,
            param,
            dtype,
            n_features,
            assume_finite,
            dask_key_name=f"{KEY_PREFIX}-block-{token}-{i}",
        )
        for i, (block, weight) in enumerate(zip(blocks, weights, strict=True))
    ]
    level = 0
    while len(summaries) > 1:
        # Pairs of neighbours, so that the earlier rows are always on the left.
        summaries = [
            delayed(_merge_summaries, pure=True)(
                *summaries[i : i + 2],
                param,
                dask_key_name=f"{KEY_PREFIX}-merge-{token}-{level}-{i // 2}",
            )
            if i + 1 < len(summaries)
            else summaries[i]
            for i in range(0, len(summaries), 2)
        ]
        level += 1
    return summaries[0]


def _block_arrays(block, weight, dtype, n_features: int, assume_finite: bool):
    """Validate one block (on a worker): a float array and its weights."""
    X = check_array(block, dtype=dtype, ensure_all_finite=False, ensure_min_samples=0)
    if X.shape[1] != n_features:
        raise ValueError(
            f"A block of X has {X.shape[1]} columns, expected {n_features}."
        )
    if weight is not None and not isinstance(weight, numbers.Number):
        n_weights = np.shape(weight)[0]
        if n_weights != X.shape[0]:
            raise ValueError(
                f"A block of sample_weight has {n_weights} values but the block "
                f"of X it goes with has {X.shape[0]} rows; partition "
                "sample_weight like the rows of X."
            )
    weight = check_sample_weight(weight, X.shape[0])
    with config_context(assume_finite=assume_finite):
        check_no_infinity(X)
    return X, weight


def _has_weight(X: np.ndarray, weight: np.ndarray | None) -> bool:
    return X.shape[0] > 0 and (weight is None or bool(weight.any()))


def _block_summary(
    block, weight, mode: str, half_life, dtype, n_features: int, assume_finite: bool
) -> BlockSummary:
    """The statistics of one block of rows, from an empty stream."""
    X, weight = _block_arrays(block, weight, dtype, n_features, assume_finite)
    state = _stats.empty_stream_state(n_features)
    if X.shape[0]:
        if mode == "half_life":
            state = _stats.update_half_life(state, X, half_life, weight)
        else:
            state = _stats.update_exact(state, X, weight)
    return BlockSummary(state, _has_weight(X, weight))


def _merge_summaries(old: BlockSummary, new: BlockSummary, half_life) -> BlockSummary:
    """Combine the summaries of two neighbouring runs of rows, ``old`` first."""
    state = _stats.merge_stream_states(old.state, new.state, half_life)
    return BlockSummary(state, old.has_weight or new.has_weight)


def _momentum_step(
    old: BlockSummary,
    block,
    weight,
    momentum: float,
    dtype,
    n_features: int,
    assume_finite: bool,
) -> BlockSummary:
    """One block as one momentum batch; an empty block (partition) is skipped."""
    X, weight = _block_arrays(block, weight, dtype, n_features, assume_finite)
    if not X.shape[0]:
        return old
    if X.shape[0] < 2:
        # As BatchNormalizer.partial_fit: the unbiased batch variance needs 2.
        raise ValueError(
            "The momentum mode needs at least 2 samples per batch, and every "
            "row block of a dask collection is one batch: got a block of 1 "
            "sample. Rechunk the rows into larger blocks."
        )
    state = _stats.update_momentum(old.state, X, momentum, weight)
    return BlockSummary(state, old.has_weight or _has_weight(X, weight))


# -- transforming -------------------------------------------------------------


def transform_dask(estimator, X, inverse: bool):
    """``transform`` or ``inverse_transform`` of a dask collection, lazily.

    Returns a collection of the same kind: a dask array with X's chunks, or a
    dask DataFrame with X's columns, index and partitions. Nothing is
    computed; errors found in the data (such as infinity) are raised when the
    result is computed. The blocks are never modified in place, whatever
    ``copy``.
    """
    import dask.array as da

    stand_in = _stand_in(X)
    dtype = validate_data(
        estimator,
        stand_in,
        reset=False,
        dtype=FLOAT_DTYPES,
        ensure_all_finite="allow-nan",
        ensure_min_samples=0,
    ).dtype
    if not inverse and _container_requested(estimator, stand_in):
        # set_output asks for an in-memory pandas or polars DataFrame, which
        # scikit-learn's wrapper cannot build from a lazy collection (pandas
        # would drop the index, polars refuses it): compute the result here,
        # as a NumPy array or pandas DataFrame, and let the wrapper convert it.
        lazy = copy.deepcopy(estimator).set_output(transform="default")
        return transform_dask(lazy, X, inverse).compute()
    method = "inverse_transform" if inverse else "transform"
    name = f"{KEY_PREFIX}-{method.replace('_', '-')}"
    if isinstance(X, da.Array):
        bounds = np.cumsum((0,) + X.chunks[1])
        per_chunk = [
            _column_slice(estimator, start, stop)
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return X.map_blocks(
            _transform_block,
            per_chunk,
            method,
            dtype,
            dtype=dtype,
            meta=np.empty((0, 0), dtype=dtype),
            token=name,
        )
    meta = stand_in.astype(dtype)
    return X.map_partitions(
        _transform_partition,
        _column_slice(estimator, 0, estimator.n_features_in_),
        method,
        dtype,
        meta=meta,
        token=name,
    )


def _container_requested(estimator, stand_in) -> bool:
    """Whether ``set_output`` (the estimator's or the global one) asks for a
    pandas or polars DataFrame rather than the default output.

    Found by transforming one row of zeros, which goes through the same
    output wrapper as the real call.
    """
    shape = (1, stand_in.shape[1])
    if isinstance(stand_in, np.ndarray):
        row = np.zeros(shape, dtype=stand_in.dtype)
    else:
        row = type(stand_in)(np.zeros(shape), columns=stand_in.columns)
    with warnings.catch_warnings():
        # Feature-name warnings were already given for X itself.
        warnings.simplefilter("ignore", UserWarning)
        return not isinstance(estimator.transform(row), np.ndarray)


def _column_slice(estimator, start: int, stop: int):
    """A fitted copy for columns ``start:stop`` that transforms plain arrays.

    It has no feature names (the blocks are arrays), writes its output to
    NumPy and copies its input: dask blocks must not be modified in place.
    """
    n_features = estimator.n_features_in_
    # A deep copy: set_output below must not change the estimator's config.
    part = copy.deepcopy(estimator)
    for key, value in estimator.__dict__.items():
        if isinstance(value, np.ndarray) and value.shape == (n_features,):
            setattr(part, key, value[start:stop])
    part.__dict__.pop("feature_names_in_", None)
    part.__dict__.pop("_state", None)
    part.n_features_in_ = int(stop - start)
    part.copy = True
    return part.set_output(transform="default")


def _transform_block(block, per_chunk, method: str, dtype, block_id=None):
    """Transform one array block with the copy fitted for its columns."""
    if block.shape[0] == 0:
        return np.empty(block.shape, dtype=dtype)
    return getattr(per_chunk[block_id[1]], method)(block, copy=True)


def _transform_partition(partition, part, method: str, dtype):
    """Transform one DataFrame partition, keeping its index and columns."""
    import pandas as pd

    # A copy: the partition may be held in memory (persisted) and is not ours.
    X = check_array(
        partition,
        dtype=dtype,
        ensure_all_finite=False,
        ensure_min_samples=0,
        copy=True,
    )
    if X.shape[0]:
        X = getattr(part, method)(X, copy=False)
    return pd.DataFrame(X, index=partition.index, columns=partition.columns)
