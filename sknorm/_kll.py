r"""Mergeable quantile sketches, one per feature, vectorized over features.

Nothing here knows about scikit-learn. A :class:`QuantileSketch` summarizes
the values of every feature seen so far; the functions take a sketch and
return a new one, never changing their arguments (so a failed update leaves
the old sketch intact).

How it works (Karnin, Lang and Liberty's compactors, with equal capacities).
The sketch keeps, per feature, a hierarchy of *levels*; an item at level ``h``
stands for ``2**h`` values of the stream. New values enter level 0. When a
feature's level ``h`` holds more than ``k`` items (``k`` is the sketch size),
it is *compacted*: its items are sorted, paired up as (1st, 2nd), (3rd, 4th),
... and one item of every pair moves to level ``h + 1`` (the first or the
second of each pair, by a fair coin per compaction); with an odd count the
largest item stays. The weighted rank of a value ``x``,

.. math:: \hat R(x) = \sum_h 2^h \, \#\{\text{items at level } h \le x\},

is then an unbiased estimate of its true rank :math:`R(x)`, and a quantile
is read off the weighted sorted items.

Error guarantee. One compaction at level ``h`` changes :math:`\hat R(x)` by
0, or by :math:`\pm 2^h` with equal probability, and it removes at least ``k``
items of weight ``2**h``, so there are at most :math:`n / (k 2^h)` of them,
and only at levels with :math:`2^h \le n / k`. The errors form a martingale
whose squared increments sum to less than :math:`2 n^2 / k^2`, and
Azuma's inequality gives, for any fixed ``x``, the rank error

.. math:: P\left(|\hat R(x) - R(x)| > \varepsilon n\right)
          \le 2 \exp(-\varepsilon^2 k^2 / 4),

the same after any sequence of updates and merges of sketches of disjoint
data (each compaction of any sketch in a merge tree still removes ``k``
items of weight ``2**h`` that no other compaction removes). A quantile
``q`` read from the sketch is a value whose true rank lies within
:math:`\varepsilon n` of :math:`q n` with probability at least
:math:`1 - \delta`, for :math:`\varepsilon = 2 \sqrt{\ln(2/\delta)} / k`
(:func:`rank_error_bound`; e.g. 0.90 % at 99 % confidence for ``k = 512``).
While a feature has seen at most ``k`` values nothing is compacted and every
quantile is exact.

Memory: at most ``k`` items per level and feature once an update returns, and
at most :math:`\log_2(n / k) + 2` levels: ``O(k log(n / k))`` values per
feature. The per-level capacity is kept equal rather than decreasing with
depth as in the KLL paper; that costs the ``log`` factor of memory but keeps
the error constant small and every level the same shape for all features.

Vectorization. Each level is a ``(n_features, width)`` float64 array plus
per-feature item counts; unused slots hold NaN, which ``np.sort`` moves to
the end. A compaction sorts one level for all over-full features at once;
the Python loops run over levels (about ``log2(n / k)`` of them), never over
features or single rows (a batch is transposed in cache-sized tiles). A new
batch is sorted once and, while it holds at least ``k`` values of every
feature, compacted on its own (halving a sorted run needs no new sort); that
is a compaction of at least ``k`` items like any other.

References
----------
Z. Karnin, K. Lang, E. Liberty, "Optimal Quantile Approximation in
Streams", FOCS 2016. P. Agarwal, G. Cormode, Z. Huang, J. Phillips, Z. Wei,
K. Yi, "Mergeable Summaries", ACM TODS 38(4), 2013.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._config import compiled_kernels

Array = NDArray[np.float64]

__all__ = [
    "QuantileSketch",
    "empty_sketch",
    "update_sketch",
    "merge_sketches",
    "sketch_quantiles",
    "sketch_to_dict",
    "sketch_from_dict",
    "sketch_ranks",
    "sketch_counts",
    "retained_items",
    "rank_error_bound",
]


class QuantileSketch(NamedTuple):
    """Per-feature quantile sketches of sketch size ``k``.

    ``levels[h]`` has shape (n_features, width_h): row ``f`` holds
    ``counts[h, f]`` items of feature ``f`` (in any order) and NaN elsewhere;
    each item weighs ``2**h``. The compaction coins are the bits of a
    counter-based generator (SplitMix64): coin ``i`` is a function of
    ``seed`` and ``i``, and ``coins_drawn`` coins have been used.
    """

    k: int
    levels: tuple[Array, ...]
    counts: NDArray[np.int64]
    seed: int
    coins_drawn: int


def sketch_to_dict(sketch: QuantileSketch) -> dict:
    """The plain-data form of a sketch (arrays, ints and a string)."""
    return {
        "kind": "kll",
        "k": int(sketch.k),
        "levels": [np.asarray(level) for level in sketch.levels],
        "counts": sketch.counts,
        "seed": int(sketch.seed),
        "coins_drawn": int(sketch.coins_drawn),
    }


def sketch_from_dict(data: dict) -> QuantileSketch:
    """Rebuild a sketch from :func:`sketch_to_dict`'s output."""
    if data.get("kind") != "kll":
        raise ValueError(
            f"Unknown sknorm sketch kind {data.get('kind')!r} in checkpoint."
        )
    return QuantileSketch(
        k=int(data["k"]),
        levels=tuple(np.asarray(level, dtype=np.float64) for level in data["levels"]),
        counts=np.asarray(data["counts"], dtype=np.int64),
        seed=int(data["seed"]),
        coins_drawn=int(data["coins_drawn"]),
    )


def rank_error_bound(k: int, delta: float = 0.01) -> float:
    """Normalized rank error that a quantile exceeds with probability <= delta.

    ``2 * sqrt(ln(2 / delta)) / k``, from Azuma's inequality (see the module
    docstring). It holds for any stream length, order and merge tree.
    """
    return 2.0 * math.sqrt(math.log(2.0 / delta)) / k


def empty_sketch(n_features: int, k: int, seed: int) -> QuantileSketch:
    """A sketch of size ``k`` that has seen nothing; ``seed`` sets its coins."""
    if k < 2:
        raise ValueError(f"The sketch size must be at least 2, got {k}.")
    return QuantileSketch(
        k=int(k),
        levels=(np.empty((n_features, 0)),),
        counts=np.zeros((1, n_features), dtype=np.int64),
        seed=int(seed) & _MASK64,
        coins_drawn=0,
    )


class LeveledSketch(Protocol):
    """What :func:`sketch_counts` and :func:`retained_items` read: a sketch of
    this module or of :mod:`sknorm._req`, with its levels and the items per
    level and feature, ``counts`` of shape (n_levels, n_features)."""

    @property
    def levels(self) -> Sequence[object]: ...

    @property
    def counts(self) -> NDArray[np.int64]: ...


def sketch_counts(sketch: LeveledSketch) -> NDArray[np.int64]:
    """Number of (non-NaN) values each feature has seen: ``sum_h counts[h] 2**h``."""
    weights = np.left_shift(1, np.arange(len(sketch.levels), dtype=np.int64))
    return weights @ sketch.counts


def check_sketch_size(stream_size: int, sketch_size: int) -> None:
    """Raise a ValueError if ``sketch_size`` is not the stream's sketch size.

    A stream keeps the size it started with; every estimator with a sketch
    checks a changed ``sketch_size`` parameter here.
    """
    if stream_size != sketch_size:
        raise ValueError(
            f"sketch_size changed from {stream_size} to {sketch_size} after "
            "fitting started; call fit to restart, or keep the sketch size of "
            "the stream."
        )


def retained_items(sketch: LeveledSketch) -> NDArray[np.int64]:
    """Number of items the sketch keeps for each feature."""
    return sketch.counts.sum(axis=0)


def update_sketch(
    old: QuantileSketch, X: NDArray, on_infinity: Callable[[], None] | None = None
) -> QuantileSketch:
    """Add a batch of values to the sketch.

    Parameters
    ----------
    old : QuantileSketch
        The sketch of the stream until now.
    X : ndarray of shape (n_samples, n_features), float32 or float64
        The batch; NaN marks a missing value, which is ignored. Infinite
        values are refused.
    on_infinity : callable, default=None
        Called (to raise a more telling error) when X holds +/-inf, which the
        sorted batch shows for free, before the ValueError raised here.

    Returns
    -------
    updated : QuantileSketch
        The sketch of the stream including ``X``.
    """
    k = old.k
    coins = _Coins(old.seed, old.coins_drawn)
    levels = list(old.levels)
    counts = list(old.counts.copy())
    X = np.asarray(X)
    if X.shape[0] == 0:
        return old
    # The batch is one sorted run of level-0 items (NaN sorted last).
    run = _transposed(X)
    run.sort(axis=1)
    if np.isnan(run[:, -1]).any():
        run_count = run.shape[1] - np.isnan(run).sum(axis=1)
        largest = run[np.arange(run.shape[0]), np.maximum(run_count - 1, 0)]
    else:
        run_count = np.full(run.shape[0], run.shape[1], dtype=np.int64)
        largest = run[:, -1]
    if np.isinf(run[:, 0]).any() or np.isinf(largest).any():
        if on_infinity is not None:
            on_infinity()
        raise ValueError("X contains infinity; the sketch takes finite values.")
    h = 0
    # A large sorted batch is compacted on its own first (no sort needed, its
    # halves stay sorted): each such compaction is a compaction of level-h
    # items like any other, so the error analysis is unchanged.
    while run.shape[1] >= k and int(run_count.min()) >= k:
        kept, pairs, leftover, odd = _halve(run, run_count, coins)
        _add_items(levels, counts, h, leftover, odd)
        run, run_count = kept, pairs
        h += 1
    _add_items(levels, counts, h, run, run_count)
    _settle(levels, counts, k, coins)
    return QuantileSketch(k, tuple(levels), np.array(counts), old.seed, coins.drawn)


def merge_sketches(old: QuantileSketch, new: QuantileSketch) -> QuantileSketch:
    """The sketch of the union of two disjoint streams, same guarantee.

    Both sketches must have the same size ``k`` and number of features. The
    result continues the coins of ``old``.
    """
    if old.k != new.k:
        raise ValueError(f"Cannot merge sketches of sizes {old.k} and {new.k}.")
    if old.counts.shape[1] != new.counts.shape[1]:
        raise ValueError(
            f"Cannot merge sketches of {old.counts.shape[1]} and "
            f"{new.counts.shape[1]} features."
        )
    coins = _Coins(old.seed, old.coins_drawn)
    levels = list(old.levels)
    counts = list(old.counts.copy())
    for h, items in enumerate(new.levels):
        _add_items(levels, counts, h, items, new.counts[h])
    _settle(levels, counts, old.k, coins)
    return QuantileSketch(old.k, tuple(levels), np.array(counts), old.seed, coins.drawn)


def sketch_quantiles(
    sketch: QuantileSketch, q: ArrayLike, cache: dict | None = None
) -> Array:
    """Quantiles of every feature, interpolated like ``np.nanquantile``.

    Each item of weight ``w`` counts as ``w`` equal values; the quantile of
    that multiset is taken with NumPy's default ("linear") method, so a
    sketch that has compacted nothing returns exactly ``np.nanquantile``.
    (After compactions, items of different levels whose values lie within
    64 units in the last place of each other may be taken in either order;
    see :func:`_select_items`.)

    Parameters
    ----------
    sketch : QuantileSketch
    q : array-like of shape (n_quantiles,)
        Probabilities in [0, 1].
    cache : dict or None
        Kept by the caller between calls on successive sketches of one stream:
        the sorted items of every level that has not changed since the last
        call (an update changes the lowest levels, rarely the others) are
        taken from it instead of being sorted again. The result is the same
        with or without it.

    Returns
    -------
    quantiles : ndarray of shape (n_quantiles, n_features)
        NaN for a feature that has seen no value.
    """
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    n_features = sketch.counts.shape[1]
    out = np.full((q.size, n_features), np.nan)
    n = sketch_counts(sketch)
    if not n.any():
        return out
    # Positions (0-based) in the multiset where each item counts w times.
    virtual = (n - 1) * q[:, None]
    below = np.floor(virtual)
    gamma = virtual - below
    above = np.minimum(below + 1, n - 1)
    empty = n == 0
    below = below.astype(np.int64)
    above = above.astype(np.int64)
    below[:, empty] = above[:, empty] = 0
    keys = _sorted_levels(sketch, cache)
    kernels = compiled_kernels()
    if kernels is not None and cache is not None:
        full, slot = _level_slots(keys, sketch.k, cache)
        items = kernels.select_slotted_items(full, slot, sketch.counts, n, below, above)
    elif kernels is not None:
        items = kernels.select_sketch_items(keys, sketch.counts, n, below, above)
    else:
        positions = np.concatenate([below, above])
        items = _select_items(keys, sketch.counts, positions, cache)
    # Order keys are their own inverse: back to the float64 values.
    a, b = _order_keys(items).view(np.float64).reshape(2, q.size, n_features)
    diff = b - a
    lerp = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    out[:, n > 0] = lerp[:, n > 0]
    return out


# Levels are stored in the 6 low bits of the sort keys of _select_items (at
# most 62 levels: n < k * 2**61); padding (NaN) gets the largest key.
_LEVEL_MASK = 63
_PADDING_KEY = np.iinfo(np.int64).max & ~_LEVEL_MASK


def _sorted_levels(sketch: QuantileSketch, cache: dict | None) -> list[NDArray]:
    """Per level, the order keys of its items, each row sorted, padding last.

    Row ``f`` of level ``h`` holds ``counts[h, f]`` keys, then
    ``_PADDING_KEY``; the width is the largest count. Levels whose array is
    the one of the cached entry are not sorted again.
    """
    entries = [] if cache is None else cache.get("sorted_levels", [])
    sorted_levels = []
    for h, level in enumerate(sketch.levels):
        entry = entries[h] if h < len(entries) else None
        if entry is None or entry[0] is not level:
            keys = _order_keys(level)
            keys[np.isnan(level)] = _PADDING_KEY
            keys.sort(axis=1)
            width = int(sketch.counts[h].max()) if keys.size else 0
            entry = (level, np.ascontiguousarray(keys[:, :width]))
        sorted_levels.append(entry)
    if cache is not None:
        # Holding the level arrays keeps their identities unique.
        cache["sorted_levels"] = sorted_levels
    return [keys for _, keys in sorted_levels]


def _level_slots(
    keys: list[NDArray[np.int64]], k: int, cache: dict
) -> tuple[NDArray[np.int64], int]:
    """The sorted keys of every level side by side, level ``h`` in columns
    ``h * slot`` on (``slot`` is ``k``, or the widest level if wider), kept
    in ``cache`` between reads: only the levels whose keys changed since the
    last read are copied in (usually the lowest two or three), not all of
    them (megabytes, at the default size)."""
    n_features = keys[0].shape[0]
    slot = max([k, *(level.shape[1] for level in keys)])
    memo = cache.get("level_slots")
    if memo is None or memo[0].shape != (n_features, len(keys) * slot):
        unwritten: list[NDArray[np.int64] | None] = [None] * len(keys)
        memo = (np.empty((n_features, len(keys) * slot), np.int64), unwritten)
    full, written = memo
    for h, level in enumerate(keys):
        if written[h] is not level:
            full[:, h * slot : h * slot + level.shape[1]] = level
            written[h] = level
    cache["level_slots"] = memo
    return full, slot


# Columns per chunk of the cumulative weights in _select_items.
_CHUNK = 64


def _select_items(
    level_keys: list[NDArray],
    counts: NDArray[np.int64],
    positions: NDArray,
    work: dict | None = None,
) -> NDArray[np.int64]:
    """Order keys of the items holding ``positions`` in the weighted order.

    The items of all levels are ordered by their value's order key with its
    6 low bits replaced by the level (an item of level ``h`` weighs
    ``2**h``); items with equal such keys are of one level and are taken in
    the order of their exact values. So the order is the exact order of the
    values, except that items of different levels within 64 units in the last
    place of each other are ordered by level; the item holding position ``j``
    is the first whose cumulative weight exceeds ``j``.

    Parameters
    ----------
    level_keys : list of ndarray of shape (n_features, width_h)
        From :func:`_sorted_levels`.
    counts : ndarray of shape (n_levels, n_features)
        Items per level and feature.
    positions : ndarray of shape (n_targets, n_features), int64
        Positions in ``[0, n - 1]`` of each feature's weighted multiset.
    work : dict or None
        Keeps the work arrays between calls (see :func:`_work_arrays`).

    Returns
    -------
    keys : ndarray of shape (n_targets, n_features), int64
        The order keys (all 64 bits) of the items.
    """
    n_targets, n_features = positions.shape
    widths = [keys.shape[1] for keys in level_keys]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    # Padded to whole chunks with padding keys, which sort last and are never
    # reached: every position is below n, the weight of the items.
    width = -(-int(starts[-1]) // _CHUNK) * _CHUNK
    segments, ordered, weight = _work_arrays(work, (n_features, width))
    for h, keys in enumerate(level_keys):
        # Masking the low bits keeps each level's row sorted.
        segment = segments[:, starts[h] : starts[h + 1]]
        np.bitwise_and(keys, ~np.int64(_LEVEL_MASK), out=segment)
        segment |= h
    segments[:, starts[-1] :] = _PADDING_KEY
    ordered[...] = segments
    ordered.sort(axis=1)
    rows = np.arange(n_features)
    row = np.broadcast_to(rows[:, None], (n_features, n_targets)).T
    # The chunk of columns where each position's cumulative weight is
    # reached, then the column within it.
    np.bitwise_and(ordered, _LEVEL_MASK, out=weight)
    np.left_shift(1, weight, out=weight)
    chunk_weight = weight.reshape(n_features, -1, _CHUNK).sum(axis=2)
    np.cumsum(chunk_weight, axis=1, out=chunk_weight)
    offset = rows * (int(chunk_weight[:, -1].max()) + 1)
    n_chunks = chunk_weight.shape[1]
    chunk = np.searchsorted(
        (chunk_weight + offset[:, None]).ravel(), positions + offset, side="right"
    )
    chunk -= rows * n_chunks
    before = np.where(chunk > 0, chunk_weight[row, np.maximum(chunk - 1, 0)], 0)
    within = weight.reshape(n_features, n_chunks, _CHUNK)[row, chunk]
    np.cumsum(within, axis=2, out=within)
    column = (within <= (positions - before)[..., None]).sum(axis=2)
    index = chunk * _CHUNK + column
    key = ordered[row, index]
    level = key & _LEVEL_MASK
    # Equal keys are of one level: the item's rank among them gives its rank
    # among the level's sorted items with that key.
    flat = ordered.ravel()
    equal_before = index - _first_at_least(flat, row * width, 0, index, key)
    start = starts[level]
    in_level = _first_at_least(
        segments.ravel(), row * width + start, 0, counts[level, row], key
    )
    in_level += equal_before
    # A feature without items finds padding (not read): it gets key 0.
    items = np.zeros_like(key)
    for h in np.unique(level):
        at = (level == h) & (in_level < widths[h])
        items[at] = level_keys[h][row[at], in_level[at]]
    return items


def _work_arrays(work: dict | None, shape: tuple[int, int]) -> list[NDArray[np.int64]]:
    """Three int64 arrays of ``shape``, kept in ``work`` between calls.

    Fresh arrays of a megabyte or more cost as much in page faults as the
    arithmetic done in them; a stream's reads reuse the same ones.
    """
    arrays = None if work is None else work.get("work_arrays")
    if arrays is None or arrays[0].shape != shape:
        arrays = [np.empty(shape, dtype=np.int64) for _ in range(3)]
        if work is not None:
            work["work_arrays"] = arrays
    return arrays


def _first_at_least(
    flat: NDArray[np.int64],
    row_start: NDArray[np.int64],
    lo: int | NDArray[np.int64],
    hi: NDArray[np.int64],
    key: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Vectorized binary search: for each query, the first ``i`` in
    ``[lo, hi)`` with ``flat[row_start + i] >= key`` (``hi`` if none); the
    ranges must be sorted."""
    low = np.broadcast_to(lo, key.shape).copy()
    high = np.array(hi, copy=True)
    last = flat.size - 1
    while True:
        active = low < high
        if not active.any():
            return low
        mid = (low + high) >> 1
        smaller = flat[np.minimum(row_start + mid, last)] < key
        low = np.where(active & smaller, mid + 1, low)
        high = np.where(active & ~smaller, mid, high)


def _order_keys(values: Array) -> NDArray[np.int64]:
    """int64 keys in the order of the (non-NaN) float64 values (a new array).

    Non-negative floats order like their bit patterns; negative ones in
    reverse, which flipping all bits but the sign restores.
    """
    bits = values.view(np.int64)
    return bits ^ ((bits >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))


def sketch_ranks(sketch: QuantileSketch, x: ArrayLike) -> NDArray[np.int64]:
    r"""Estimated number of values <= ``x[f]`` seen by each feature ``f``.

    Parameters
    ----------
    sketch : QuantileSketch
    x : array-like of shape (n_features,)

    Returns
    -------
    ranks : ndarray of shape (n_features,), int64
        :math:`\hat R(x) = \sum_h 2^h \#\{\text{items at level } h \le x\}`.
    """
    x = np.asarray(x, dtype=np.float64)[:, None]
    ranks = np.zeros(sketch.counts.shape[1], dtype=np.int64)
    for h, level in enumerate(sketch.levels):
        ranks += (level <= x).sum(axis=1) << h
    return ranks


_MASK64 = (1 << 64) - 1


class _Coins:
    """Fair coins from SplitMix64 (Steele, Lea, Flood 2014), counter-based.

    Coin ``i`` is the top bit of SplitMix64's output ``i + 1`` for ``seed``;
    it needs no generator state besides the count of coins drawn, so a
    sketch stays an immutable value.
    """

    __slots__ = ("seed", "drawn")

    def __init__(self, seed: int, drawn: int):
        self.seed = seed
        self.drawn = drawn

    def flip(self) -> int:
        self.drawn += 1
        z = (self.seed + self.drawn * 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return (z ^ (z >> 31)) >> 63


def _transposed(X: NDArray) -> Array:
    """``X.T`` as a new C-contiguous float64 array.

    Copied in tiles of about 32 KB (a few thousand values): NumPy's own
    transposing copy strides through memory and takes twice as long on a
    batch of 1024 x 64. The number of tiles is kept below about a thousand.
    """
    n_samples, n_features = X.shape
    if n_features > 256:  # rows too wide to tile usefully
        return np.array(X.T, dtype=np.float64, order="C")
    out = np.empty((n_features, n_samples))
    rows = max(16, 4096 // max(n_features, 1), -(-n_samples // 1024))
    for start in range(0, n_samples, rows):
        out[:, start : start + rows] = X[start : start + rows].T
    return out


def _halve(
    sorted_items: Array, count: NDArray[np.int64], coins: _Coins
) -> tuple[Array, NDArray[np.int64], Array | None, NDArray[np.int64]]:
    """Compact sorted rows: the first or the second item of every pair.

    One coin for all rows: each row's error only needs its coin to be fair
    and fresh, and a shared coin lets the kept items be a strided view.

    Returns the kept items (sorted, NaN-padded; possibly a view of
    ``sorted_items``), their counts, the leftover largest item of rows with an
    odd count (NaN for the others, shape (m, 1); None if no row is odd) and
    the number of leftovers per row (0 or 1).
    """
    pairs = count // 2
    n_pairs = int(pairs.max())
    coin = coins.flip()
    kept = sorted_items[:, coin : 2 * n_pairs : 2]
    if int(pairs.min()) != n_pairs:
        kept = kept.copy()
        kept[np.arange(n_pairs) >= pairs[:, None]] = np.nan
    odd = count - 2 * pairs
    leftover = None
    if odd.any():
        last = sorted_items[np.arange(count.shape[0]), np.maximum(count - 1, 0)]
        leftover = np.where(odd == 1, last, np.nan)[:, None]
    return kept, pairs, leftover, odd


def _add_items(
    levels: list[Array],
    counts: list[NDArray[np.int64]],
    h: int,
    items: Array | None,
    count: NDArray[np.int64],
) -> None:
    """Append NaN-padded items to level ``h`` (creating levels as needed)."""
    n_features = count.shape[0]
    while len(levels) <= h:
        levels.append(np.empty((n_features, 0)))
        counts.append(np.zeros(n_features, dtype=np.int64))
    if items is None or not count.any():
        return
    if levels[h].shape[1] == 0:
        # A copy: items may be a view of a larger array, or of another sketch.
        levels[h] = np.array(items, order="C")
    else:
        levels[h] = np.concatenate([levels[h], items], axis=1)
    counts[h] = counts[h] + count


def _settle(
    levels: list[Array],
    counts: list[NDArray[np.int64]],
    k: int,
    coins: _Coins,
) -> None:
    """Compact every over-full level, bottom up, until all hold <= k items."""
    h = 0
    while h < len(levels):
        # A level no wider than k cannot hold more than k items: no reduction
        # needed for the (many) levels this call did not touch.
        if levels[h].shape[1] > k and int(counts[h].max()) > k:
            over = counts[h] > k
            if over.all():
                # Every over-full level was built in this call: sorting in
                # place changes no array of the input sketches.
                items = levels[h]
                items.sort(axis=1)
                kept, pairs, leftover, odd = _halve(items, counts[h], coins)
                levels[h] = items[:, :0] if leftover is None else leftover
                counts[h] = odd
                _add_items(levels, counts, h + 1, kept, pairs)
            else:
                rows = np.flatnonzero(over)
                items = levels[h][rows]
                items.sort(axis=1)
                kept, pairs, leftover, odd = _halve(items, counts[h][rows], coins)
                level = levels[h].copy()
                level[rows] = np.nan
                if leftover is not None:
                    level[rows, :1] = leftover
                levels[h] = level
                counts[h] = counts[h].copy()
                counts[h][rows] = odd
                n_features = over.shape[0]
                spread = np.full((n_features, kept.shape[1]), np.nan)
                spread[rows] = kept
                spread_count = np.zeros(n_features, dtype=np.int64)
                spread_count[rows] = pairs
                _add_items(levels, counts, h + 1, spread, spread_count)
        if levels[h].shape[1] > 2 * k:
            # Missing values leave NaN gaps; squeeze them out now and then.
            levels[h] = np.sort(levels[h], axis=1)[:, : int(counts[h].max())]
        h += 1
