"""Checkpoints: a versioned, plain-data form of the streaming state.

A fitted normalizer pickles (and saves with ``skops.io``) its statistics as a
dict of NumPy arrays and ints tagged with ``FORMAT_VERSION``, never as sknorm
classes, so that a checkpoint needs no trusted sknorm type but the estimator's
own and a future sknorm can read it or refuse it clearly.

Format history:

- 0: sknorm 0.1.0 before checkpoints were versioned; the state was pickled as
  the ``StreamState`` / ``EmaState`` named tuple itself.
- 1: the state is ``state_to_dict``'s dict; the version is stored as
  ``_sknorm_format``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._stats import EmaState, Moments, StreamState

FORMAT_VERSION = 1
FORMAT_KEY = "_sknorm_format"


def state_to_dict(state: StreamState | EmaState) -> dict[str, Any]:
    """The plain-data form of a statistics state."""
    if isinstance(state, EmaState):
        fields = state._asdict()
        fields["n_rows"] = int(state.n_rows)
        return {"kind": "momentum", **fields}
    return {
        "kind": "moments",
        "shift": state.shift,
        "weight": state.moments.weight,
        "mean": state.moments.mean,
        "m2": state.moments.m2,
        "count": state.count,
        "n_rows": int(state.n_rows),
    }


def state_from_dict(data: dict[str, Any]) -> StreamState | EmaState:
    """Rebuild a statistics state from ``state_to_dict``'s output."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "momentum":
        return EmaState(**data)
    if kind == "moments":
        moments = Moments(data["weight"], data["mean"], data["m2"])
        return StreamState(
            np.asarray(data["shift"]), moments, data["count"], int(data["n_rows"])
        )
    raise ValueError(f"Unknown sknorm statistics state kind {kind!r} in checkpoint.")


def dump_estimator_state(state: dict[str, Any]) -> dict[str, Any]:
    """Prepare an estimator's ``__dict__`` for pickling."""
    state = dict(state)
    if "_state" in state:
        state["_state"] = state_to_dict(state["_state"])
    state[FORMAT_KEY] = FORMAT_VERSION
    return state


def load_estimator_state(state: dict[str, Any], owner: str) -> dict[str, Any]:
    """Check the format of a pickled ``__dict__``, upgrade it, rebuild the state."""
    state = dict(state)
    version = state.pop(FORMAT_KEY, 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"This {owner} checkpoint uses sknorm state format {version!r}, newer "
            f"than format {FORMAT_VERSION} that this sknorm reads. Upgrade sknorm "
            "to load it, or refit."
        )
    if "_state" in state:
        stored = state["_state"]
        if version == 0 and isinstance(stored, (StreamState, EmaState)):
            return state  # format 0 stored the named tuple itself
        if not isinstance(stored, dict):
            raise ValueError(
                f"This {owner} checkpoint (format {version}) holds a statistics "
                f"state of type {type(stored).__name__}; it is damaged or was not "
                "written by sknorm."
            )
        state["_state"] = state_from_dict(stored)
    return state
