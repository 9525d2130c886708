"""Fit and transform dask collections, with the statistics reduced on the workers.

Every sknorm streaming estimator comes here when it is given a
``dask.array.Array`` or a ``dask.dataframe.DataFrame``. This module is
imported only then, and imports dask only inside its functions, so sknorm
without the ``dask`` extra never imports dask.

Fitting builds one task per row block that turns the block into a state with
the estimator's own hooks (``_empty_state``, ``_update_state``; see
``_base``), then combines the states: in a tree of pairwise merges
(``_merge_states``) where the estimator's state merges (blocks stay in row
order, so an ordered merge such as half-life's is respected), and otherwise
in a chain, block after block, each block being one batch (the momentum
mode). Only the final state reaches the client. Transforming maps the fitted
estimator over the blocks lazily.

A dask array chunked along the columns is rechunked to one chunk of columns
(row chunks are kept), so that each block holds whole rows; a transformed
array is given the input's chunks back.
"""

from __future__ import annotations

import copy
import numbers
from typing import NamedTuple

import numpy as np
from sklearn import clone, config_context, get_config
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from ._atomic import unchanged_on_error
from ._compat import output_container_requested
from ._validation import (
    FLOAT_DTYPES,
    check_no_infinity,
    check_sample_weight,
    format_indices,
)

# Prefix of the keys of the tasks this module adds to a graph.
KEY_PREFIX = "sknorm"


class BlockSummary(NamedTuple):
    """What a task returns about the rows it has seen: the estimator's state
    (O(n_features) numbers), how many rows and whether any had a positive
    sample weight."""

    state: object
    n_rows: int
    has_weight: bool


# -- fitting ------------------------------------------------------------------


def learn_dask(estimator, X, sample_weight, reset: bool, need_weight: bool):
    """The streaming base's ``_learn`` for a dask collection: one pass.

    The state is published only once the whole graph has been computed; if
    anything raises, the estimator is left exactly as it was.
    """
    with unchanged_on_error(estimator):
        settings = estimator._checked_settings()
        X, dtype, n_features = _validate_collection(estimator, X, reset=reset)
        blocks = _row_blocks(X)
        weights = _weight_blocks(sample_weight, X, len(blocks))
        old = None
        if not reset:
            old = estimator._state
            estimator._check_state(old)
        tree = estimator._state_merges()
        if not tree and old is None:
            old = estimator._empty_state(n_features)
        summary = _reduce_graph(
            clone(estimator),
            blocks,
            weights,
            tree=tree,
            old=None if tree else old,
            dtype=dtype,
            n_features=n_features,
            assume_finite=get_config()["assume_finite"],
        ).compute()
        if not summary.n_rows:
            raise ValueError(
                "The dask collection has no rows: give fit at least one sample."
            )
        if need_weight and not summary.has_weight:
            raise ValueError(
                "All sample weights are zero: fit has nothing to learn from. "
                "Give at least one sample a positive weight."
            )
        state = summary.state
        if tree and old is not None:
            state = estimator._merge_states(old, state)
        estimator._publish(state, settings)
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
        _stand_in(X, type(estimator).__name__),
        reset=reset,
        dtype=FLOAT_DTYPES,
        ensure_all_finite=False,
        ensure_min_samples=0,
    )
    if isinstance(X, da.Array) and X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    return X, empty.dtype, empty.shape[1]


def _stand_in(X, owner: str):
    """An empty NumPy array or pandas DataFrame with X's columns and dtypes.

    Raises for what can be seen without computing X: a collection that is not
    2-D, an unknown number of columns, non-numeric dtypes.
    """
    import dask.array as da
    from dask.array.utils import meta_from_array

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
                f"The dask array has dtype {X.dtype}; {owner} needs real "
                "numbers. Convert it first, e.g. X.astype(float)."
            )
        meta = meta_from_array(X)
        if not isinstance(meta, np.ndarray):
            raise TypeError(
                f"The dask array has blocks of type {type(meta).__name__}; "
                f"{owner} takes dask arrays of NumPy blocks. Convert the "
                "blocks first, e.g. X.map_blocks(lambda b: b.toarray()) for "
                "sparse ones."
            )
        return np.empty((0, X.shape[1]), dtype=X.dtype)
    if _is_dask_dataframe(X):
        from dask.dataframe.utils import make_meta

        meta = make_meta(X)
        bad = [str(c) for c, t in meta.dtypes.items() if t.kind not in "biuf"]
        if bad:
            raise TypeError(
                f"Columns {format_indices(bad)} of the dask DataFrame are not numeric; "
                f"{owner} needs real numbers. Drop or encode them first."
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


def _reduce_graph(
    learner, blocks, weights, *, tree, old, dtype, n_features, assume_finite
):
    """The Delayed ``BlockSummary`` of all the blocks, in row order.

    ``learner`` is an unfitted copy of the estimator whose hooks the tasks
    call; ``old`` is the state a chain starts from.
    """
    from dask import delayed
    from dask.base import tokenize

    token = tokenize(
        blocks,
        weights,
        type(learner).__name__,
        repr(learner),
        old,
        str(dtype),
        assume_finite,
    )
    check = (dtype, n_features, assume_finite)
    if not tree:
        # Every block is one batch, applied in order: a chain of tasks, each
        # moving only the state to the next.
        summary = BlockSummary(old, 0, False)
        for i, (block, weight) in enumerate(zip(blocks, weights, strict=True)):
            summary = delayed(_chain_step, pure=True)(
                learner,
                summary,
                block,
                weight,
                check,
                dask_key_name=f"{KEY_PREFIX}-chain-{token}-{i}",
            )
        return summary
    summaries = [
        delayed(_block_summary, pure=True)(
            learner,
            i,
            block,
            weight,
            check,
            dask_key_name=f"{KEY_PREFIX}-block-{token}-{i}",
        )
        for i, (block, weight) in enumerate(zip(blocks, weights, strict=True))
    ]
    level = 0
    while len(summaries) > 1:
        # Pairs of neighbours, so that the earlier rows are always on the left.
        summaries = [
            delayed(_merge_summaries, pure=True)(
                learner,
                *summaries[i : i + 2],
                dask_key_name=f"{KEY_PREFIX}-merge-{token}-{level}-{i // 2}",
            )
            if i + 1 < len(summaries)
            else summaries[i]
            for i in range(0, len(summaries), 2)
        ]
        level += 1
    return summaries[0]


def _block_arrays(learner, block, weight, check):
    """Validate one block (on a worker): a float array and its weights."""
    dtype, n_features, assume_finite = check
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
    if X.shape[0]:
        try:
            learner._check_batch(X)
        except ValueError as exc:
            raise ValueError(
                f"{exc} Every row block of a dask collection is one batch: "
                "rechunk the rows into larger blocks."
            ) from exc
    return X, weight


def _has_weight(X: np.ndarray, weight: np.ndarray | None) -> bool:
    return X.shape[0] > 0 and (weight is None or bool(weight.any()))


def _block_summary(learner, index: int, block, weight, check) -> BlockSummary:
    """The state of one block of rows, from an empty stream."""
    X, weight = _block_arrays(learner, block, weight, check)
    state = learner._empty_state(check[1], block=index)
    if X.shape[0]:
        state = learner._update_state(state, X, weight)
    return BlockSummary(state, X.shape[0], _has_weight(X, weight))


def _merge_summaries(learner, old: BlockSummary, new: BlockSummary) -> BlockSummary:
    """Combine the summaries of two neighbouring runs of rows, ``old`` first."""
    return BlockSummary(
        learner._merge_states(old.state, new.state),
        old.n_rows + new.n_rows,
        old.has_weight or new.has_weight,
    )


def _chain_step(learner, old: BlockSummary, block, weight, check) -> BlockSummary:
    """One block as one batch; an empty block (partition) is skipped."""
    X, weight = _block_arrays(learner, block, weight, check)
    if not X.shape[0]:
        return old
    state = learner._update_state(old.state, X, weight)
    return BlockSummary(
        state, old.n_rows + X.shape[0], old.has_weight or _has_weight(X, weight)
    )


# -- transforming -------------------------------------------------------------


def transform_dask(estimator, X, method: str):
    """``transform`` or ``inverse_transform`` of a dask collection, lazily.

    Returns a collection of the same kind: a dask array with X's chunks, or a
    dask DataFrame with X's columns, index and partitions. Nothing is
    computed; errors found in the data (such as infinity) are raised when the
    result is computed. The blocks are never modified in place, whatever
    ``copy``.
    """
    import dask.array as da

    stand_in = _stand_in(X, type(estimator).__name__)
    dtype = validate_data(
        estimator,
        stand_in,
        reset=False,
        dtype=FLOAT_DTYPES,
        ensure_all_finite="allow-nan",
        ensure_min_samples=0,
    ).dtype
    if method == "transform" and output_container_requested(estimator):
        # set_output asks for an in-memory pandas or polars DataFrame, which
        # scikit-learn's wrapper cannot build from a lazy collection (pandas
        # would drop the index, polars refuses it): compute the result here,
        # as a NumPy array or pandas DataFrame, and let the wrapper convert it.
        lazy = copy.deepcopy(estimator).set_output(transform="default")
        return transform_dask(lazy, X, method).compute()
    part = _block_transformer(estimator)
    name = f"{KEY_PREFIX}-{method.replace('_', '-')}"
    if isinstance(X, da.Array):
        chunks = X.chunks
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        result = X.map_blocks(
            _transform_block,
            part,
            method,
            dtype,
            dtype=dtype,
            meta=np.empty((0, 0), dtype=dtype),
            token=name,
        )
        return result.rechunk(chunks) if result.chunks != chunks else result
    meta = stand_in.astype(dtype)
    return X.map_partitions(
        _transform_partition, part, method, dtype, meta=meta, token=name
    )


def _block_transformer(estimator):
    """A fitted copy that transforms plain NumPy blocks.

    It has no feature names (the blocks are arrays), writes its output to
    NumPy and copies its input: dask blocks must not be modified in place.
    """
    # A deep copy: set_output below must not change the estimator's config.
    part = copy.deepcopy(estimator)
    part.__dict__.pop("feature_names_in_", None)
    if "copy" in part.get_params():
        part.copy = True
    return part.set_output(transform="default")


def _transform_block(block, part, method: str, dtype):
    """Transform one array block."""
    if block.shape[0] == 0:
        return np.empty(block.shape, dtype=dtype)
    return getattr(part, method)(block)


def _transform_partition(partition, part, method: str, dtype):
    """Transform one DataFrame partition, keeping its index and columns."""
    import pandas as pd

    X = check_array(
        partition, dtype=dtype, ensure_all_finite=False, ensure_min_samples=0
    )
    if X.shape[0]:
        X = getattr(part, method)(X)
    return pd.DataFrame(X, index=partition.index, columns=partition.columns)
