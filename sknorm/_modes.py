"""Statistics modes: how BatchNormalizer's running mean and variance move.

A mode is a small immutable object built from the estimator's parameters.
Every mode offers the same operations on its own state type, so the
estimator, the Dask reduction and the checkpoints never ask which mode they
hold:

- ``empty(n_features)``: the state of a stream that has seen nothing;
- ``update(old, X, sample_weight, on_nonfinite, eps)``: the state after one
  batch;
- ``merge(old, new)``: the state of two disjoint parts of a stream (``new``
  later), or a ValueError where the mode has no merge;
- ``sums_see_infinity(X, sample_weight)``: whether ``update`` finds an
  infinity in X by itself (see ``on_nonfinite``);
- ``mean_var(state)``, ``weight(state)``, ``count(state)``: what is published,
  and ``publish(state, eps)``: all of it (with the scale) in one step;
- ``to_dict(state)`` / ``from_dict(data)``: the plain-data checkpoint form.

The arithmetic lives in :mod:`sknorm._stats`; a mode only chooses it, and
the backend (:mod:`sknorm._config`): under the numba backend, ``update`` and
``mean_var`` of a dense batch run the compiled kernels of
:mod:`sknorm._numba_kernels`, which compute the same formulas in one call.

A mode's parameters never change. Besides them it remembers one thing: the
compiled kernels compute what is published in the same call as the update,
and the mode keeps it until ``publish`` asks for that state (with the ``eps``
that ``update`` was given), so a ``partial_fit`` makes one compiled call. It
is a cache, compared by the state's identity, and is neither part of the
mode's equality nor of any checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from . import _stats
from ._base import samples_seen
from ._config import compiled_kernels, kernels_for
from ._floats import scale_from_var
from ._stats import EmaState, Moments, StreamState
from ._typing import SparseMatrix

# A named tuple made from its fields without its Python-level constructor.
_new_tuple = tuple.__new__

#: The state type of a mode.
State = TypeVar("State", StreamState, EmaState)

__all__ = [
    "Published",
    "StatisticsMode",
    "ExactMode",
    "HalfLifeMode",
    "MomentumMode",
    "statistics_mode",
    "state_from_dict",
]


class Published(NamedTuple):
    """The statistics that BatchNormalizer publishes, as fresh arrays.

    ``mean`` and ``var`` as :meth:`StatisticsMode.mean_var`, ``scale`` is
    ``sqrt(var + eps)`` with 1.0 where that is 0 (``scale_from_var``),
    ``weight`` a copy of the weights, ``samples_seen`` the count of every
    feature as an int when they are all equal, else an int64 array (as
    ``StandardScaler.n_samples_seen_``), and ``finite`` whether the sum of
    the variances is finite: when it is not, a feature has no data yet (NaN)
    or its statistics overflowed (see :meth:`StatisticsMode.overflowed`).
    """

    mean: NDArray
    var: NDArray
    scale: NDArray
    weight: NDArray
    samples_seen: int | NDArray
    finite: bool


class StatisticsMode(Generic[State]):
    """What every mode shares; a subclass supplies ``empty``, ``update``,
    ``merge``, ``owns``, ``weight`` and ``to_dict`` for its ``State``."""

    name: ClassVar[str]
    #: Whether ``update`` gives rows weights of its own, which may hide an
    #: infinity from the batch's sums (the caller then checks X first).
    reweights_rows: ClassVar[bool] = False
    #: Fewest rows a batch may have.
    min_batch_rows: ClassVar[int] = 1
    mergeable: ClassVar[bool] = True

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars_of(other) == vars_of(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars_of(self).items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars_of(self).items())
        return f"{type(self).__name__}({args})"

    def empty(self, n_features: int) -> State:
        """The state of a stream that has seen nothing."""
        raise NotImplementedError

    def update(
        self,
        old: State,
        X: NDArray | SparseMatrix,
        sample_weight: NDArray | None = None,
        on_nonfinite: Callable[[], None] | None = None,
        eps: float | None = None,
    ) -> State:
        """The state after one batch (see :mod:`sknorm._stats`).

        ``eps``: the ``publish`` that will follow, if it is known (see the
        module docstring).
        """
        raise NotImplementedError

    def merge(self, old: State, new: State) -> State:
        """The state of two disjoint parts of a stream, ``new`` the later."""
        raise NotImplementedError

    def sums_see_infinity(
        self, X: NDArray | SparseMatrix, sample_weight: NDArray | None
    ) -> bool:
        """Whether an infinity in X always makes the column sums that
        ``update`` computes non-finite (``update`` then calls
        ``on_nonfinite``, and X need not be checked before).

        The compiled kernels multiply every value by its row's weight
        themselves, and ``0 * inf`` is NaN; BLAS, on the NumPy path, may skip
        the rows of weight 0, so there only an unweighted dense batch counts.
        """
        if kernels_for(X) is not None:
            return True
        return (
            sample_weight is None and not self.reweights_rows and type(X) is np.ndarray
        )

    def owns(self, state: object) -> bool:
        """Whether ``state`` can continue in this mode."""
        raise NotImplementedError

    def weight(self, state: State) -> NDArray[np.float64]:
        """Total weight behind each feature's statistics."""
        raise NotImplementedError

    @staticmethod
    def to_dict(state: Any) -> dict[str, Any]:
        """The plain-data checkpoint form of a state of this mode."""
        raise NotImplementedError

    def mean_var(self, state: State) -> tuple[NDArray, NDArray]:
        """Published mean and variance; NaN for a feature without data."""
        return _stats.state_mean_var(state)

    def publish(self, state: State, eps: float) -> Published:
        """Everything that is published after an update, in one step."""
        kept = self.__dict__.pop("_publication", None)
        if kept is not None and kept[0] is state and kept[1] == eps:
            return kept[2]
        kernels = compiled_kernels()
        if kernels is not None:
            return _new_tuple(Published, kernels.publish(state, eps))
        mean, var = self.mean_var(state)
        return Published(
            mean,
            var,
            scale_from_var(var, eps),
            self.weight(state).copy(),
            samples_seen(self.count(state)),
            math.isfinite(np.add.reduce(var)),
        )

    def _kept(self, update: tuple[State, tuple[Any, ...]], eps: float | None) -> State:
        """The state of a compiled update ``(state, publication fields)``;
        the publication is remembered for it when ``eps`` is known."""
        state, fields = update
        if eps is not None:
            self.__dict__["_publication"] = (
                state,
                eps,
                _new_tuple(Published, fields),
            )
        return state

    def count(self, state: State) -> NDArray[np.int64]:
        """Number of non-missing values seen, per feature."""
        return state.count

    def n_rows(self, state: State) -> int:
        """Number of rows seen."""
        return state.n_rows

    def overflowed(self, state: State) -> NDArray[np.bool_]:
        """Features whose statistics overflowed float64."""
        return _stats.overflowed(state)


class ExactMode(StatisticsMode[StreamState]):
    """Every sample seen, equally weighted (by its ``sample_weight``)."""

    name: ClassVar[str] = "exact"

    def empty(self, n_features: int) -> StreamState:
        return _stats.empty_stream_state(n_features)

    def update(
        self,
        old: StreamState,
        X: NDArray | SparseMatrix,
        sample_weight: NDArray | None = None,
        on_nonfinite: Callable[[], None] | None = None,
        eps: float | None = None,
    ) -> StreamState:
        kernels = kernels_for(X)
        if kernels is not None:
            return self._kept(
                kernels.update_stream(
                    old, X, sample_weight, None, on_nonfinite, eps or 0.0
                ),
                eps,
            )
        return _stats.update_exact(old, X, sample_weight, on_nonfinite=on_nonfinite)

    def merge(self, old: StreamState, new: StreamState) -> StreamState:
        return _stats.merge_stream_states(old, new)

    def mean_var(self, state: StreamState) -> tuple[NDArray, NDArray]:
        kernels = compiled_kernels()
        if kernels is not None:
            return kernels.stream_mean_var(state)
        return _stats.state_mean_var(state)

    def owns(self, state: object) -> bool:
        return isinstance(state, StreamState)

    def weight(self, state: StreamState) -> NDArray[np.float64]:
        return _stats.state_weight(state.moments)

    @staticmethod
    def to_dict(state: StreamState) -> dict[str, Any]:
        return _stream_state_to_dict(state)


class HalfLifeMode(ExactMode):
    """A sample ``a`` rows old weighs ``2**(-a / half_life)``.

    It shares the exact mode's state (the two can follow each other in one
    stream); its merge is ordered: ``new`` is the later part of the stream.
    """

    name: ClassVar[str] = "half_life"
    reweights_rows: ClassVar[bool] = True

    def __init__(self, half_life: float) -> None:
        self.half_life = float(half_life)

    def update(
        self,
        old: StreamState,
        X: NDArray | SparseMatrix,
        sample_weight: NDArray | None = None,
        on_nonfinite: Callable[[], None] | None = None,
        eps: float | None = None,
    ) -> StreamState:
        kernels = kernels_for(X)
        if kernels is not None:
            return self._kept(
                kernels.update_stream(
                    old, X, sample_weight, self.half_life, on_nonfinite, eps or 0.0
                ),
                eps,
            )
        return _stats.update_half_life(
            old, X, self.half_life, sample_weight, on_nonfinite=on_nonfinite
        )

    def merge(self, old: StreamState, new: StreamState) -> StreamState:
        return _stats.merge_stream_states(old, new, self.half_life)


class MomentumMode(StatisticsMode[EmaState]):
    """``torch.nn.BatchNorm1d``'s exponential average, one update per batch."""

    name: ClassVar[str] = "momentum"
    min_batch_rows: ClassVar[int] = 2
    mergeable: ClassVar[bool] = False

    def __init__(self, momentum: float) -> None:
        self.momentum = float(momentum)

    def empty(self, n_features: int) -> EmaState:
        return _stats.empty_ema_state(n_features)

    def update(
        self,
        old: EmaState,
        X: NDArray | SparseMatrix,
        sample_weight: NDArray | None = None,
        on_nonfinite: Callable[[], None] | None = None,
        eps: float | None = None,
    ) -> EmaState:
        kernels = kernels_for(X)
        if kernels is not None:
            return self._kept(
                kernels.update_momentum(
                    old, X, self.momentum, sample_weight, on_nonfinite, eps or 0.0
                ),
                eps,
            )
        return _stats.update_momentum(
            old, X, self.momentum, sample_weight, on_nonfinite=on_nonfinite
        )

    def mean_var(self, state: EmaState) -> tuple[NDArray, NDArray]:
        kernels = compiled_kernels()
        if kernels is not None:
            return kernels.ema_mean_var(state)
        return _stats.state_mean_var(state)

    def merge(self, old: EmaState, new: EmaState) -> EmaState:
        raise ValueError(
            "merge is not defined for the momentum mode: its statistics depend "
            "on the order of batches, not only on the data. Use the exact or "
            "half_life mode."
        )

    def owns(self, state: object) -> bool:
        return isinstance(state, EmaState)

    def weight(self, state: EmaState) -> NDArray[np.float64]:
        return state.weight

    @staticmethod
    def to_dict(state: EmaState) -> dict[str, Any]:
        fields = state._asdict()
        fields["n_rows"] = int(state.n_rows)
        return {"kind": "momentum", **fields}


def vars_of(mode: object) -> dict[str, Any]:
    """A mode's parameters: its attributes, without the cache."""
    return {k: v for k, v in vars(mode).items() if not k.startswith("_")}


def statistics_mode(
    momentum: float | None, half_life: float | None
) -> StatisticsMode[Any]:
    """The mode that BatchNormalizer's ``momentum`` and ``half_life`` select."""
    if momentum is not None and half_life is not None:
        raise ValueError(
            "momentum and half_life are two different statistics modes; set at "
            f"most one of them (got momentum={momentum}, half_life={half_life})."
        )
    if momentum is not None:
        return MomentumMode(momentum)
    if half_life is not None:
        return HalfLifeMode(half_life)
    return ExactMode()


def _stream_state_to_dict(state: StreamState) -> dict[str, Any]:
    return {
        "kind": "moments",
        "shift": state.shift,
        "weight": state.moments.weight,
        "mean": state.moments.mean,
        "var": state.moments.var,
        "count": state.count,
        "n_rows": int(state.n_rows),
    }


def state_from_dict(data: dict[str, Any]) -> StreamState | EmaState:
    """Rebuild a statistics state from a mode's ``to_dict`` output.

    Also reads the first checkpoint format, whose moments held the sum of
    squared deviations ``m2`` instead of the variance.
    """
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "momentum":
        return EmaState(**data)
    if kind == "moments":
        weight = np.asarray(data["weight"], dtype=np.float64)
        if "var" in data:
            var = np.asarray(data["var"], dtype=np.float64)
        else:
            var = m2_to_var(np.asarray(data["m2"], dtype=np.float64), weight)
        moments = Moments(weight, np.asarray(data["mean"], dtype=np.float64), var)
        return StreamState(
            np.asarray(data["shift"]), moments, data["count"], int(data["n_rows"])
        )
    raise ValueError(f"Unknown sknorm statistics state kind {kind!r} in checkpoint.")


def m2_to_var(m2: NDArray, weight: NDArray) -> NDArray:
    """The variance from a sum of squared deviations (0 where no weight)."""
    out = np.zeros_like(m2)
    np.divide(m2, weight, out=out, where=weight > 0)
    return out
