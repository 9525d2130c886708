r"""Mergeable quantile sketches with relative rank error at both ends.

Nothing here knows about scikit-learn. Like :mod:`sknorm._kll`, a
:class:`RelativeErrorSketch` holds one sketch per feature, vectorized over
features, with the same functions (``empty_sketch``, ``update_sketch``,
``merge_sketches``, ``sketch_quantiles``, ``sketch_counts``, ...), so an
estimator can use either module; the functions take a sketch and return a new
one, never changing their arguments (a failed update leaves the old sketch
intact).

Why. A quantile sketch with a uniform rank error ``eps * n`` (KLL) is poor in
the tails: at rank ``0.001 n`` an error of ``0.002 n`` is 200 % of the rank,
and a normal output amplifies rank errors by ``1 / phi(z)``, about 300x at
rank 0.999. Here the rank error shrinks towards both ends of the data: values
of rank ``R`` get an error that grows like ``min(R, n - R)`` (relative
error), not like ``n``.

How it works (relative compactors in the style of the REQ sketch of Cormode,
Karnin, Liberty, Thaler and Vesely, made two-sided). Per feature there is a
hierarchy of *levels*; an item at level ``h`` stands for ``2**h`` values.
Let ``k`` be the sketch size, ``P = k // 16`` the protected count,
``s = k // 128`` the section size and ``L = 8`` the number of sections.

- *Scheduled compaction.* When a feature's level ``h`` holds more than ``k``
  items, it is sorted and its middle is compacted: the ``a`` smallest and the
  ``a`` largest items stay, where

  .. math:: a = P + (L - j)\, s, \qquad j = \min(z + 1, L),

  and ``z`` is the number of trailing one bits of the count ``C`` of earlier
  compactions of that level (the "ruler" schedule ``j = 1, 2, 1, 3, 1, 2, 1,
  4, ...``: the sections nearest the ends are compacted exponentially less
  often). Of the items in between, sorted and paired up, the first or the
  second of every pair (a fair coin per compaction) moves to level ``h + 1``.
  So the ``P`` smallest and ``P`` largest items of every level never move.
- *Batch compaction.* A new batch is sorted once. Once a feature has seen
  more than ``k`` values, its sorted batch is compacted on its own before it
  joins level 0, keeping its ``a_f = k // 128`` smallest and largest values
  and halving the middle, which stays sorted; the half is compacted again at
  level 1, and so on while it holds at least ``4 a_f`` items (at most 4
  times). Only what is kept joins the levels, so most values are sorted once.

While a feature has seen at most ``k`` values nothing is compacted and every
quantile is exact.

Error guarantee. Fix a value ``y`` with true rank ``R`` (number of values
``<= y``) among the ``n`` values of a feature, and let ``m = min(R, n - R)``.
A compaction at level ``h`` changes the estimated rank :math:`\hat R(y)` by 0
or by :math:`\pm 2^h` with equal probability, the latter only if ``y`` lies
inside the compacted middle. That needs more than ``P`` items ``<= y`` and
more than ``P`` items ``> y`` in the level, so only levels with
:math:`2^h \lesssim m / P` can err. At such a level, a charging argument over
the ruler schedule (every compaction that errs with ``j < L`` sections is
followed, before the next compaction with more sections, by one that removes
at least ``s`` items ``<= y`` per erring compaction charged to it; and
symmetrically for items ``> y``) bounds the erring compactions by
:math:`R_h / s + L - 1` plus those with all ``L`` sections, where
:math:`R_h \approx m / 2^h` counts the items on ``y``'s smaller side that
entered level ``h``. A batch compaction errs only with more than ``a_f`` such
items. The errors form a martingale; with :math:`V` the sum of the squared
sizes of its possible steps, to first order in :math:`1/s`,

.. math::

    V_{rel} = m^2 \left(\frac{2}{sP} + \frac{4 L}{3 P^2}\right)
              + \frac{8 n m}{k P 2^L} + \frac{16 m}{a_f},

and, since each scheduled compaction removes more than ``k / 2`` items and
there are fewer than ``2 n / (2^h k)`` of them at level ``h``,

.. math:: V_{add} = \frac{8 n^2}{k^2} + \frac{4 n}{a_f}.

Azuma's inequality gives, for any fixed ``y``,

.. math:: P\left(|\hat R(y) - R(y)| > \sqrt{2 \ln(2/\delta)\,
          \min(V_{rel}, V_{add})}\right) \le \delta

(:func:`rank_error_bound`). In the tails ``V_rel`` wins: the error is about
``4 %`` of ``m`` (one standard deviation, worst case) for ``k = 2048``,
plus terms that fade as ``m`` grows; in the middle ``V_add`` gives a KLL-like
``eps n`` with ``eps = 2.8 / k`` (one standard deviation). Measured errors are
several times smaller than the bound (the bound assumes every compaction in
range errs).

Merges. Merging adds the other sketch's items to each level of the first
sketch, as if they had just arrived there, and continues the first sketch's
schedule and coins. Every bound above still holds for the merged sketch with
``V`` multiplied by ``1 + d``, where ``d`` is the largest number of merges in
which a value's sketch was the one merged in (the second argument): ``d = 1``
for sketches merged one by one into a running total, ``log2`` of the number
of parts for a balanced tree.

Memory: at most ``k`` items per level and feature once an update returns, and
at most :math:`\max(\log_2(2 n / k) + 1, 5)` levels, so ``O(k log(n / k))``
values per feature (at most 11 levels, 22,528 values or 180 KB, at ``k = 2048`` and
``n = 10**6``; about 11,000 values are kept in practice).

References
----------
G. Cormode, Z. Karnin, E. Liberty, J. Thaler, P. Vesely, "Relative Error
Streaming Quantiles", PODS 2021 (J. ACM 70(5), 2023). Z. Karnin, K. Lang,
E. Liberty, "Optimal Quantile Approximation in Streams", FOCS 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kll import (
    _LEVEL_MASK,
    _MASK64,
    _PADDING_KEY,
    _Coins,
    _order_keys,
    _transposed,
    retained_items,
    sketch_counts,
)

Array = NDArray[np.float64]

__all__ = [
    "RelativeErrorSketch",
    "empty_sketch",
    "update_sketch",
    "merge_sketches",
    "sketch_quantiles",
    "sketch_ranks",
    "sketch_counts",
    "retained_items",
    "rank_error_bound",
    "sketch_to_dict",
    "sketch_from_dict",
]

# Sections per side of the scheduled compactions; 2**(L - 1) compactions of
# a level pass between two that compact all sections (see the bound).
_N_SECTIONS = 8
# Batch compactions stop after this many levels (the bound's 16 = 2**4).
_BATCH_LEVELS = 4
_MIN_SIZE = 128
_KIND = "relative-error quantile sketch"


class RelativeErrorSketch(NamedTuple):
    """Per-feature relative-error quantile sketches of sketch size ``k``.

    ``levels[h]`` is a tuple of chunks of shape (n_features, width): the
    rows ``f`` of the chunks of level ``h`` hold together ``counts[h, f]``
    items of feature ``f`` (in any order) and NaN elsewhere; each item weighs
    ``2**h``. (Chunks, not one array per level, so that adding a few items
    to a level does not copy the level; they are joined when it compacts.)
    ``compactions[h, f]`` counts the scheduled
    compactions of level ``h`` of feature ``f`` (it sets how many sections
    the next one compacts). The coins are those of ``sknorm._kll``: coin
    ``i`` is a function of ``seed`` and ``i``, and ``coins_drawn`` have been
    used.
    """

    k: int
    levels: tuple[tuple[Array, ...], ...]
    counts: NDArray[np.int64]
    compactions: NDArray[np.int64]
    seed: int
    coins_drawn: int


class _Layout(NamedTuple):
    protected: int  # P: items kept at each end of every level
    section: int  # s
    margin: int  # a_f: items kept at each end of a compacted batch


def _layout(k: int) -> _Layout:
    return _Layout(protected=k // 16, section=k // 128, margin=k // 128)


def rank_error_bound(
    k: int, n: int, q: float = 0.5, delta: float = 0.01, merge_depth: int = 0
) -> float:
    r"""Normalized rank error that the estimate at rank ``q n`` exceeds w.p. <= delta.

    The bound of the module docstring,
    :math:`\sqrt{2 \ln(2/\delta) (1 + d) \min(V_{rel}, V_{add})} / n` with
    ``m = min(q, 1 - q) n``, for a stream of ``n`` values, any order and batch
    sizes, and merge trees in which a value's sketch was merged in at most
    ``merge_depth`` times.

    Parameters
    ----------
    k : int
        Sketch size.
    n : int
        Number of values the feature has seen.
    q : float in [0, 1], default=0.5
        True rank fraction of the value.
    delta : float in (0, 1), default=0.01
        Probability of exceeding the bound.
    merge_depth : int, default=0
        ``d`` of the module docstring (0 for one stream).

    Returns
    -------
    eps : float
        Bound on :math:`|\hat R(y) - R(y)| / n`; 0 while ``n <= k``.

    Examples
    --------
    >>> from sknorm._req import rank_error_bound
    >>> round(rank_error_bound(2048, 10**6, q=0.001) * 10**6)  # ranks, at 1e-3
    171
    >>> round(rank_error_bound(2048, 10**6, q=0.5), 4)
    0.0048
    """
    if n <= k:
        return 0.0
    P, s, a_f = _layout(k)
    L = _N_SECTIONS
    m = min(q, 1.0 - q) * n
    v_rel = (
        m * m * (2.0 / (s * P) + 4.0 * L / (3.0 * P * P))
        + 8.0 * n * m / (k * P * 2.0**L)
        + 2.0**_BATCH_LEVELS * m / a_f
    )
    v_add = 8.0 * n * n / (k * k) + 2.0**_BATCH_LEVELS * n / (4.0 * a_f)
    v = (1 + merge_depth) * min(v_rel, v_add)
    return math.sqrt(2.0 * math.log(2.0 / delta) * v) / n


def empty_sketch(n_features: int, k: int, seed: int) -> RelativeErrorSketch:
    """A sketch of size ``k`` that has seen nothing; ``seed`` sets its coins."""
    if k < _MIN_SIZE:
        raise ValueError(f"The sketch size must be at least {_MIN_SIZE}, got {k}.")
    return RelativeErrorSketch(
        k=int(k),
        levels=((),),
        counts=np.zeros((1, n_features), dtype=np.int64),
        compactions=np.zeros((1, n_features), dtype=np.int64),
        seed=int(seed) & _MASK64,
        coins_drawn=0,
    )


def update_sketch(
    old: RelativeErrorSketch,
    X: NDArray,
    on_infinity: Callable[[], None] | None = None,
) -> RelativeErrorSketch:
    """Add a batch of values to the sketch.

    Parameters
    ----------
    old : RelativeErrorSketch
        The sketch of the stream until now.
    X : ndarray of shape (n_samples, n_features), float32 or float64
        The batch; NaN marks a missing value, which is ignored. Infinite
        values are refused.
    on_infinity : callable, default=None
        Called (to raise a more telling error) when X holds +/-inf, before
        the ValueError raised here.

    Returns
    -------
    updated : RelativeErrorSketch
        The sketch of the stream including ``X``.
    """
    X = np.asarray(X)
    if X.shape[0] == 0:
        return old
    k = old.k
    layout = _layout(k)
    coins = _Coins(old.seed, old.coins_drawn)
    levels = list(old.levels)
    counts = list(old.counts.copy())
    compactions = list(old.compactions.copy())
    # The batch is one sorted run of level-0 items (NaN sorted last).
    run = _transposed(X)
    # -0.0 becomes 0.0: the two compare equal, so their order after a sort
    # depends on the input order, and with it which one a compaction keeps;
    # one zero keeps a resumed or re-batched stream's sketch identical.
    run += 0.0
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
    # Features past the exact regime compact their sorted batch on its own:
    # halving a sorted run needs no new sort.
    past_exact = sketch_counts(old) + run_count > k
    h = 0
    while h < _BATCH_LEVELS:
        eligible = past_exact & (run_count >= 4 * layout.margin)
        if not eligible.any():
            break
        keep = np.where(eligible, layout.margin, run_count // 2)
        kept, kept_count, run, run_count = _split(run, run_count, keep, coins.flip())
        _add_level_items(levels, counts, compactions, h, kept, kept_count)
        h += 1
    _add_level_items(levels, counts, compactions, h, run, run_count)
    _settle(levels, counts, compactions, k, layout, coins)
    return RelativeErrorSketch(
        k,
        tuple(levels),
        np.array(counts),
        np.array(compactions),
        old.seed,
        coins.drawn,
    )


def merge_sketches(
    old: RelativeErrorSketch, new: RelativeErrorSketch
) -> RelativeErrorSketch:
    """The sketch of the union of two disjoint streams (see Merges above).

    Both sketches must have the same size ``k`` and number of features. The
    result continues the schedule and the coins of ``old``; the items of
    ``new`` join its levels as new arrivals.
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
    compactions = list(old.compactions.copy())
    for h, chunks in enumerate(new.levels):
        # Chunks are never written to, so the merged sketch may share them.
        _add_level_items(levels, counts, compactions, h, None, new.counts[h])
        levels[h] = (*levels[h], *chunks)
        counts[h] = counts[h] + new.counts[h]
    _settle(levels, counts, compactions, old.k, _layout(old.k), coins)
    return RelativeErrorSketch(
        old.k,
        tuple(levels),
        np.array(counts),
        np.array(compactions),
        old.seed,
        coins.drawn,
    )


def sketch_quantiles(sketch: RelativeErrorSketch, q: ArrayLike) -> Array:
    """Quantiles of every feature, interpolated between item centres.

    An item of weight ``w`` whose cumulative weight (itself included) in the
    sorted items is ``c`` covers the positions ``c - w, ..., c - 1`` of the
    sorted stream; it is placed at the centre of those, ``c - (w + 1) / 2``,
    and the quantile ``q`` is the linear interpolation, at position
    ``(n - 1) q``, between the two items placed around it (clamped to the
    smallest and largest items). With all weights 1 this is exactly
    ``np.nanquantile(X, q, axis=0)`` (NumPy's default "linear" method, the
    same floating-point operations), so a sketch that has compacted nothing
    is exact.

    Parameters
    ----------
    sketch : RelativeErrorSketch
    q : array-like of shape (n_quantiles,)
        Probabilities in [0, 1].

    Returns
    -------
    quantiles : ndarray of shape (n_quantiles, n_features)
        NaN for a feature that has seen no value.

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import _req
    >>> X = np.array([[1.0, 4.0], [3.0, np.nan], [2.0, 5.0]])
    >>> sketch = _req.update_sketch(_req.empty_sketch(2, 128, seed=0), X)
    >>> _req.sketch_quantiles(sketch, [0.0, 0.25, 1.0]).tolist()
    [[1.0, 4.0], [1.5, 4.25], [3.0, 5.0]]
    """
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    n_features = sketch.counts.shape[1]
    out = np.full((q.size, n_features), np.nan)
    values, weights = _weighted_sorted(sketch.levels)
    width = values.shape[1] if values.size else 0
    if width == 0:
        return out
    n = sketch_counts(sketch)
    retained = retained_items(sketch)
    cumulative = np.cumsum(weights, axis=1)
    centres = cumulative - (weights + 1) * 0.5  # exact: integers and halves
    virtual = (n - 1) * q[:, None]
    # The item after position v is the first whose centre exceeds v, that is
    # exceeds floor(2 v) / 2 (centres are multiples of 1/2): one searchsorted
    # over all rows, made one increasing sequence by offsetting row f by
    # f * (max(n) + 1), all exact in float64 (below 2**52).
    offset = np.arange(n_features) * float(int(cumulative[:, -1].max()) + 1)
    flat_centres = (centres + offset[:, None]).ravel()
    target = np.floor(2.0 * virtual) * 0.5 + offset
    row_start = np.arange(n_features) * width
    last = row_start + np.maximum(retained - 1, 0)
    after = np.minimum(np.searchsorted(flat_centres, target, side="right"), last)
    # Before the first centre or from the last one on: that item alone.
    alone = (after == row_start) | (flat_centres[after] <= target)
    before = np.where(alone, after, after - 1)
    flat_values = values.ravel()
    a, b = flat_values[before], flat_values[after]
    centres = centres.ravel()
    span = np.where(alone, 1.0, centres[after] - centres[before])
    gamma = np.where(alone, 0.0, (virtual - centres[before]) / span)
    diff = b - a
    lerp = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    seen = n > 0
    out[:, seen] = lerp[:, seen]
    return out


def sketch_to_dict(sketch: RelativeErrorSketch) -> dict[str, Any]:
    """The plain-data form of a sketch: NumPy arrays, ints and strings only.

    Each level is stored without its NaN padding: ``items`` concatenates,
    for every level in turn, the retained items of every feature in turn,
    in the order of ``counts`` (level-major, then feature).

    Examples
    --------
    >>> import numpy as np
    >>> from sknorm import _req
    >>> sketch = _req.update_sketch(_req.empty_sketch(1, 128, 0), np.ones((3, 1)))
    >>> data = _req.sketch_to_dict(sketch)
    >>> sorted(data)
    ['coins_drawn', 'compactions', 'counts', 'items', 'k', 'kind', 'seed']
    >>> _req.sketch_counts(_req.sketch_from_dict(data)).tolist()
    [3]
    """
    n_features = sketch.counts.shape[1]
    items = [_retained_rows(_joined(level, n_features)) for level in sketch.levels]
    return {
        "kind": _KIND,
        "k": int(sketch.k),
        "items": np.concatenate(items) if items else np.empty(0),
        "counts": np.array(sketch.counts, dtype=np.int64),
        "compactions": np.array(sketch.compactions, dtype=np.int64),
        "seed": int(sketch.seed),
        "coins_drawn": int(sketch.coins_drawn),
    }


def sketch_from_dict(data: dict[str, Any]) -> RelativeErrorSketch:
    """Rebuild a sketch from :func:`sketch_to_dict`'s output, checking it."""
    if data.get("kind") != _KIND:
        raise ValueError(
            f"Not a {_KIND} (kind {data.get('kind')!r}); the checkpoint is "
            "damaged or was written by another sketch."
        )
    counts = np.asarray(data["counts"], dtype=np.int64)
    compactions = np.asarray(data["compactions"], dtype=np.int64)
    items = np.asarray(data["items"], dtype=np.float64)
    if (
        counts.ndim != 2
        or compactions.shape != counts.shape
        or (counts < 0).any()
        or items.shape != (int(counts.sum()),)
    ):
        raise ValueError(
            "Inconsistent quantile sketch in checkpoint: counts "
            f"{counts.shape}, compactions {compactions.shape}, {items.size} "
            "items; the checkpoint is damaged."
        )
    levels = []
    start = 0
    for level_counts in counts:
        width = int(level_counts.max(initial=0))
        level = np.full((counts.shape[1], width), np.nan)
        mask = np.arange(width) < level_counts[:, None]
        level[mask] = items[start : start + int(level_counts.sum())]
        start += int(level_counts.sum())
        levels.append((level,) if width else ())
    return RelativeErrorSketch(
        int(data["k"]),
        tuple(levels),
        counts,
        compactions,
        int(data["seed"]) & _MASK64,
        int(data["coins_drawn"]),
    )


# -- helpers -------------------------------------------------------------------


def _retained_rows(level: Array) -> Array:
    """The non-NaN items of a level, row after row, each row's in order."""
    order = np.argsort(np.isnan(level), axis=1, kind="stable")
    packed = np.take_along_axis(level, order, axis=1)
    return packed[~np.isnan(packed)]


def _joined(chunks: tuple[Array, ...], n_features: int) -> Array:
    """The chunks of a level as one (n_features, width) array (a new one)."""
    if not chunks:
        return np.empty((n_features, 0))
    return np.concatenate(chunks, axis=1)


def sketch_ranks(sketch: RelativeErrorSketch, x: ArrayLike) -> NDArray[np.int64]:
    r"""Estimated number of values <= ``x[f]`` seen by each feature ``f``.

    :math:`\hat R(x) = \sum_h 2^h \#\{\text{items at level } h \le x\}`,
    an int64 array of shape (n_features,).
    """
    x = np.asarray(x, dtype=np.float64)[:, None]
    ranks = np.zeros(sketch.counts.shape[1], dtype=np.int64)
    for h, level in enumerate(sketch.levels):
        for chunk in level:
            ranks += (chunk <= x).sum(axis=1) << h
    return ranks


def _weighted_sorted(
    levels: tuple[tuple[Array, ...], ...],
) -> tuple[Array, NDArray[np.int64]]:
    """Items of all levels sorted per row, and the weight of each (padding: 1).

    A weighted sort without argsort (several times slower than sort): sort
    the values, and separately sort integer keys that order like the values
    and carry each item's level in their 6 lowest bits. The two sorted rows
    agree item by item, except that items whose values are within 64 units
    in the last place of each other may trade weights; with all weights 1
    (nothing compacted) the result is exact.
    """
    chunks = [(h, chunk) for h, level in enumerate(levels) for chunk in level]
    if not chunks:
        return np.empty((0, 0)), np.empty((0, 0), dtype=np.int64)
    values = np.concatenate([chunk for _, chunk in chunks], axis=1)
    level = np.concatenate(
        [np.full(chunk.shape[1], h, dtype=np.int64) for h, chunk in chunks]
    )
    keys = _order_keys(values)
    keys &= ~np.int64(_LEVEL_MASK)
    keys |= level
    keys[np.isnan(values)] = _PADDING_KEY
    keys.sort(axis=1)
    values.sort(axis=1)
    weights = np.bitwise_and(keys, _LEVEL_MASK, out=keys)
    np.left_shift(1, weights, out=weights)
    return values, weights


def _trailing_ones(count: NDArray[np.int64]) -> NDArray[np.int64]:
    """Number of trailing one bits of each count (the ruler sequence)."""
    lowest_zero = ~count & (count + 1)
    return np.log2(lowest_zero).astype(np.int64)


def _split(
    items: Array, count: NDArray[np.int64], keep: NDArray[np.int64], coin: int
) -> tuple[Array, NDArray[np.int64], Array, NDArray[np.int64]]:
    """Compact the middle of sorted rows.

    Row ``r`` keeps its ``keep[r]`` smallest items and its ``keep[r]``
    largest (one more if the middle would be odd); of the middle, sorted and
    paired, the first (``coin == 0``) or second item of every pair is
    promoted. Returns the kept items (NaN-padded) and their counts, and the
    promoted items (sorted, NaN-padded; possibly a view of ``items``) and
    theirs.
    """
    pairs = np.maximum(count - 2 * keep, 0) // 2
    keep_high = count - keep - 2 * pairs
    n_kept = keep + keep_high
    if count.min() == count.max() and keep.min() == keep.max():
        c, low = int(count[0]), int(keep[0])
        high = c - low - 2 * int(pairs[0])
        kept = np.concatenate([items[:, :low], items[:, c - high : c]], axis=1)
        return kept, n_kept, items[:, low + coin : c - high : 2], pairs
    width = items.shape[1]
    column = np.arange(int(n_kept.max()))
    source = np.where(
        column < keep[:, None],
        column,
        (count - keep_high - keep)[:, None] + column,
    )
    kept = np.take_along_axis(items, np.minimum(source, width - 1), axis=1)
    kept[column >= n_kept[:, None]] = np.nan
    pair = np.arange(int(pairs.max()))
    source = keep[:, None] + coin + 2 * pair
    promoted = np.take_along_axis(items, np.minimum(source, width - 1), axis=1)
    promoted[pair >= pairs[:, None]] = np.nan
    return kept, n_kept, promoted, pairs


def _add_level_items(
    levels: list[tuple[Array, ...]],
    counts: list[NDArray[np.int64]],
    compactions: list[NDArray[np.int64]],
    h: int,
    items: Array | None,
    count: NDArray[np.int64],
) -> None:
    """Append NaN-padded items (copied) to level ``h``, creating levels."""
    n_features = count.shape[0]
    while len(levels) <= h:
        levels.append(())
        counts.append(np.zeros(n_features, dtype=np.int64))
        compactions.append(np.zeros(n_features, dtype=np.int64))
    if items is None or items.shape[1] == 0 or not count.any():
        return
    # A copy: items may be a view of a much larger array (a sorted batch).
    levels[h] = (*levels[h], np.array(items, order="C"))
    counts[h] = counts[h] + count


def _settle(
    levels: list[tuple[Array, ...]],
    counts: list[NDArray[np.int64]],
    compactions: list[NDArray[np.int64]],
    k: int,
    layout: _Layout,
    coins: _Coins,
) -> None:
    """Compact every over-full level, bottom up, until all hold <= k items."""
    h = 0
    while h < len(levels):
        n_features = counts[h].shape[0]
        width = sum(chunk.shape[1] for chunk in levels[h])
        # A level no wider than k cannot hold more than k items.
        if width > k and int(counts[h].max()) > k:
            over = counts[h] > k
            level = _joined(levels[h], n_features)  # new: sorted in place
            rows = slice(None) if over.all() else np.flatnonzero(over)
            items = level if over.all() else level[rows]
            items.sort(axis=1)
            done = compactions[h][rows]
            sections = np.minimum(_trailing_ones(done) + 1, _N_SECTIONS)
            keep = layout.protected + (_N_SECTIONS - sections) * layout.section
            kept, kept_count, promoted, pairs = _split(
                items, counts[h][rows], keep, coins.flip()
            )
            compactions[h] = compactions[h].copy()
            compactions[h][rows] = done + 1
            counts[h] = counts[h].copy()
            counts[h][rows] = kept_count
            if over.all():
                levels[h] = (np.array(kept, order="C"),)
            else:
                level[rows] = np.nan
                level[rows, : kept.shape[1]] = kept
                levels[h] = (level,)
                spread = np.full((n_features, promoted.shape[1]), np.nan)
                spread[rows] = promoted
                promoted = spread
                spread_count = np.zeros(n_features, dtype=np.int64)
                spread_count[rows] = pairs
                pairs = spread_count
            _add_level_items(levels, counts, compactions, h + 1, promoted, pairs)
        elif width > 2 * k:
            # Missing values leave NaN gaps; squeeze them out now and then.
            level = np.sort(_joined(levels[h], n_features), axis=1)
            levels[h] = (np.array(level[:, : int(counts[h].max())]),)
        h += 1
