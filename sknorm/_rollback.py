"""Rollback for the streaming composites: a failing update changes no step.

sknorm's own estimators are all-or-nothing; the steps of other libraries are
recorded by a journal whose buffers are reused from batch to batch, so the
cost of a rollback does not grow with the stream (see ``RollbackJournal``).
"""

from __future__ import annotations

import types
import weakref
from functools import partial
from typing import Any

import numpy as np
import sklearn.linear_model
from sklearn.neural_network import MLPClassifier, MLPRegressor

# -- rollback ------------------------------------------------------------------

# Classes whose partial_fit can raise after it started updating its arrays in
# place (floating-point overflow in the SGD loop), and whose arrays (the
# coefficients, n_classes x n_features) cost little to copy next to an update.
UPDATED_BEFORE_RAISING = tuple(
    cls
    for cls in (
        getattr(sklearn.linear_model, name, None)
        for name in (
            "SGDClassifier",
            "SGDRegressor",
            "SGDOneClassSVM",
            "Perceptron",
            "PassiveAggressiveClassifier",
            "PassiveAggressiveRegressor",
        )
    )
    if cls is not None
)

# Classes whose updates write into their arrays with NumPy operations only,
# which refuse to write into a read-only array: the journal can guard their
# arrays instead of copying them. Compiled code can write into a read-only
# array (the SGD loop does), so no other class is trusted.
_NUMPY_WRITERS = (MLPClassifier, MLPRegressor)

# Values a journal does not look into: immutable, or code.
_LEAVES = (
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    np.generic,
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    partial,
)


class _JournalMemory:
    """What the journal of one composite keeps from batch to batch.

    ``buffers``: the copies of arrays, reused while their shapes hold;
    ``written``: the paths of the arrays that a step writes into in place
    (learned when a guarded write was refused), copied from then on.
    """

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []
        self.written: set[tuple] = set()


# Kept outside the composites, so that pickles and clones do not carry them.
_JOURNAL_MEMORY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_atomic(step) -> bool:
    """Whether ``step`` changes its state only by replacing attributes.

    sknorm's estimators are all-or-nothing and replace their fitted arrays
    instead of writing into them, so a shallow copy of their ``__dict__``
    restores them. They say so with ``_sknorm_atomic = True``; classes of the
    package that predate the attribute are recognized by their module.
    Streaming composites set it to False: they update the steps they hold.
    """
    flag = getattr(type(step), "_sknorm_atomic", None)
    if flag is not None:
        return bool(flag)
    return type(step).__module__.split(".")[0] == "sknorm"


class RollbackJournal:
    """What a streaming composite needs to undo an update of its steps.

    ``record(step, deep=...)`` keeps the state of a step before the update;
    ``restore()`` puts every recorded step back exactly; ``close()`` ends a
    successful update. :func:`run_with_rollback` drives the three.

    A shallow record is a copy of the step's ``__dict__``: it restores an
    attribute that was replaced (``self.coef_ = new``), added or deleted,
    and is all a step needs that changes nothing before it raises, or that
    replaces its arrays (every sknorm estimator). A streaming composite is
    recorded with its own ``__dict__`` and, when deep, the steps it holds.

    A deep record also undoes changes made in place, following the step's
    attributes through lists, tuples, dicts and objects:

    - NumPy arrays are copied into buffers reused from batch to batch, and
      copied back. For the classes of ``_NUMPY_WRITERS`` (scikit-learn's
      MLPs, whose updates write with NumPy only), only the arrays the step
      writes into (``coefs_``) are copied: the others (Adam's moments, which
      it replaces) are guarded, made read-only for the update so that NumPy
      refuses a write into them before it happens. A refused write undoes
      the update, which runs again with every array copied, and the array
      written into is copied from then on;
    - a list of numbers is a history that only grows (``loss_curve_``): its
      length is recorded and the list is cut back to it; any other list
      (``coefs_``) has its items recorded;
    - dicts and the ``__dict__`` of other objects (an optimizer) are copied;
    - random generators (``numpy.random.RandomState``, ``Generator``) have
      their state recorded.

    Its cost is a copy of the step's arrays (of those it writes into, for an
    MLP), independent of the length of its histories. It cannot see state
    held by compiled objects.
    """

    def __init__(self, owner=None, *, guard: bool = True):
        # owner: the composite whose memory is reused; None for a fresh one
        if owner is None:
            self._memory = _JournalMemory()
        else:
            self._memory = _JOURNAL_MEMORY.setdefault(owner, _JournalMemory())
        self._guard = guard
        self._next_buffer = 0
        self._seen: set[int] = set()
        self._dicts: list[tuple[dict, dict]] = []
        self._lists: list[tuple[list, int, list | None]] = []
        self._arrays: list[tuple[np.ndarray, np.ndarray]] = []
        self._guarded: list[np.ndarray] = []
        self._guardable: list[tuple[np.ndarray, np.ndarray, tuple]] = []
        self._generators: list[
            tuple[np.random.RandomState | np.random.BitGenerator, Any]
        ] = []

    @property
    def guarded(self) -> bool:
        """Whether some arrays were guarded rather than copied."""
        return bool(self._guarded)

    def record(self, step, *, deep: bool) -> None:
        if id(step) in self._seen or not hasattr(step, "__dict__"):
            return
        children = getattr(step, "_streaming_children", None)
        if children is not None:
            self._seen.add(id(step))
            self._dicts.append((step.__dict__, dict(step.__dict__)))
            if deep:
                for child in children():
                    self.record(child, deep=True)
        elif deep and not is_atomic(step):
            guard = self._guard and isinstance(step, _NUMPY_WRITERS)
            self._record_deep(step, (type(step).__name__,), guard)
        else:
            self._seen.add(id(step))
            self._dicts.append((step.__dict__, dict(step.__dict__)))

    def record_everything(self, root) -> None:
        """Deep record of ``root`` and of all it holds, whatever its kind."""
        self._record_deep(root, (), guard=False)

    def _record_deep(self, root, root_path: tuple, guard: bool) -> None:
        pending = [(root, root_path)]
        while pending:
            obj, path = pending.pop()
            if isinstance(obj, _LEAVES) or id(obj) in self._seen:
                continue
            self._seen.add(id(obj))
            if isinstance(obj, np.ndarray):
                self._record_array(obj, path, guard)
            elif isinstance(obj, list):
                if obj and isinstance(obj[0], _LEAVES):
                    self._lists.append((obj, len(obj), None))
                else:
                    self._lists.append((obj, len(obj), obj[:]))
                    pending.extend((item, (*path, i)) for i, item in enumerate(obj))
            elif isinstance(obj, tuple):
                pending.extend((item, (*path, i)) for i, item in enumerate(obj))
            elif isinstance(obj, dict):
                self._dicts.append((obj, dict(obj)))
                pending.extend((value, (*path, key)) for key, value in obj.items())
            elif isinstance(obj, np.random.RandomState):
                self._generators.append((obj, obj.get_state()))
            elif isinstance(obj, np.random.Generator):
                bits = obj.bit_generator
                self._generators.append((bits, bits.state))
            elif hasattr(obj, "__dict__"):
                self._dicts.append((obj.__dict__, dict(obj.__dict__)))
                pending.extend(
                    (value, (*path, key)) for key, value in obj.__dict__.items()
                )

    def _record_array(self, array: np.ndarray, path: tuple, guard: bool) -> None:
        if not array.flags.writeable or not array.size:
            return  # cannot change in place (or is guarded by an outer journal)
        whole = array.base is None and array.flags.owndata
        if whole and path not in self._memory.written:
            if guard:
                array.flags.writeable = False
                self._guarded.append(array)
                return
            buffer = self._copy(array)
            self._guardable.append((array, buffer, path))
            return
        self._copy(array)

    def _copy(self, array: np.ndarray) -> np.ndarray:
        buffers = self._memory.buffers
        slot = self._next_buffer
        self._next_buffer += 1
        if slot < len(buffers) and (
            buffers[slot].shape == array.shape and buffers[slot].dtype == array.dtype
        ):
            buffer = buffers[slot]
        else:
            buffer = np.empty(array.shape, array.dtype)
            if slot < len(buffers):
                buffers[slot] = buffer
            else:
                buffers.append(buffer)
        np.copyto(buffer, array)
        self._arrays.append((array, buffer))
        return buffer

    def _release_guards(self) -> None:
        for array in self._guarded:
            array.flags.writeable = True
        self._guarded = []

    def close(self) -> None:
        """End a successful update: lift the guards, free unused buffers, and
        remember the arrays that were written into (when nothing was guarded,
        after a refused write)."""
        self._release_guards()
        del self._memory.buffers[self._next_buffer :]
        changed = [
            path
            for array, buffer, path in self._guardable
            if not np.array_equal(array, buffer)
        ]
        # If no content changed (a write of the same values), copy them all
        # rather than guard and run the update twice at every batch.
        self._memory.written.update(changed or [path for _, _, path in self._guardable])

    def restore(self) -> None:
        self._release_guards()
        for array, buffer in self._arrays:
            np.copyto(array, buffer)
        for items, length, kept in self._lists:
            if kept is None:
                del items[length:]
            else:
                items[:] = kept
        for target, contents in self._dicts:
            target.clear()
            target.update(contents)
        for generator, state in self._generators:
            if isinstance(generator, np.random.RandomState):
                generator.set_state(state)
            else:
                generator.state = state


def run_with_rollback(update, record, owner):
    """Run ``update()``; if it raises, undo what it changed and raise.

    ``record(journal)`` records the steps ``update`` may change. A failure
    that comes while arrays are guarded may be a refused write: the update
    runs again, undone first, with every array copied.
    """
    journal = RollbackJournal(owner)
    record(journal)
    try:
        result = update()
    except Exception:
        refused_write_possible = journal.guarded
        journal.restore()
        if not refused_write_possible:
            raise
    except BaseException:
        journal.restore()
        raise
    else:
        journal.close()
        return result
    journal = RollbackJournal(owner, guard=False)
    record(journal)
    try:
        result = update()
    except BaseException:
        journal.restore()
        raise
    journal.close()
    return result


# -- StreamingPipeline ---------------------------------------------------------


def all_or_nothing(owner, method, *args, **kwargs):
    """``method(*args, **kwargs)``, with ``owner`` and everything it holds put
    back as they were if it raises (a journal of everything, no guard)."""
    journal = RollbackJournal(guard=False)
    journal.record_everything(owner)
    try:
        return method(*args, **kwargs)
    except BaseException:
        journal.restore()
        raise
