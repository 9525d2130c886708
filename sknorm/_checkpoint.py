"""Checkpoints: a versioned, plain-data form of every estimator's state.

A fitted sknorm estimator pickles (and saves with ``skops.io``) its
statistics as a dict of NumPy arrays, numbers and strings tagged with
``FORMAT_VERSION``, never as sknorm's private classes, so that a checkpoint
needs no trusted type but the estimator's own public class, and a future
sknorm can read it or refuse it clearly. The estimator converts its state
with its ``_state_to_dict`` / ``_state_from_dict`` hooks (see ``_base``).

Format history:

- 0: sknorm 0.1.0 before checkpoints were versioned; BatchNormalizer's state
  was pickled as the ``StreamState`` / ``EmaState`` named tuple itself.
- 1: sknorm 0.1.0; BatchNormalizer's state is a dict whose moments hold the
  sum of squared deviations ``m2``; RobustNormalizer pickled its sketch
  (``_sketch``) and a cache of its statistics.
- 2: every estimator keeps its state under ``_state`` as a plain-data dict;
  moments hold the variance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import StreamingNormalizer

FORMAT_VERSION = 2
FORMAT_KEY = "_sknorm_format"


def dump_estimator_state(
    estimator: StreamingNormalizer, state: dict[str, Any]
) -> dict[str, Any]:
    """Prepare an estimator's ``__dict__`` (``state``) for pickling."""
    state = {
        key: value
        for key, value in state.items()
        if key not in estimator._transient_attributes
    }
    if "_state" in state:
        state["_state"] = estimator._state_to_dict(state["_state"])
    state[FORMAT_KEY] = FORMAT_VERSION
    return state


def load_estimator_state(
    estimator: StreamingNormalizer, state: dict[str, Any]
) -> dict[str, Any]:
    """Check the format of a pickled ``__dict__``, upgrade it, rebuild the state."""
    state = dict(state)
    owner = type(estimator).__name__
    version = state.pop(FORMAT_KEY, 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"This {owner} checkpoint uses sknorm state format {version!r}, newer "
            f"than format {FORMAT_VERSION} that this sknorm reads. Upgrade sknorm "
            "to load it, or refit."
        )
    state = estimator._upgrade_checkpoint(state, version)
    for key in estimator._transient_attributes:
        state.pop(key, None)
    if "_state" in state:
        stored = state["_state"]
        if isinstance(stored, dict):
            state["_state"] = estimator._state_from_dict(stored)
        elif version == 0:
            state["_state"] = estimator._state_from_legacy(stored)
        else:
            raise ValueError(
                f"This {owner} checkpoint (format {version}) holds a statistics "
                f"state of type {type(stored).__name__}; it is damaged or was not "
                "written by sknorm."
            )
    return state
