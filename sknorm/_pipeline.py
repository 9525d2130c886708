"""StreamingPipeline: a scikit-learn Pipeline that also learns with partial_fit.

This module also holds what every streaming composite shares (the pipeline
here, the column transformer and feature union in ``_compose``): how a step is
treated by ``partial_fit`` (its role), the errors for steps that cannot follow
a stream, and the rollback journal that makes a failing ``partial_fit`` change
nothing.
"""

from __future__ import annotations

import time
import types
import weakref
from collections import Counter
from functools import partial, update_wrapper

import numpy as np
import sklearn.linear_model
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, PolynomialFeatures
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from ._compat import _fit_context

# isort: split
# Private scikit-learn API, kept in one block (to move into _compat):
# StrOptions declares the values of ``rollback`` in ``_parameter_constraints``.
from sklearn.utils._param_validation import StrOptions

# -- how partial_fit treats a step ---------------------------------------------

LEARNS = "learns"  # has partial_fit: updated with every batch
FITS_ONCE = "fits once"  # its fit ignores the values: fitted on the first batch
AS_IS = "as is"  # stateless, already fitted or frozen: applied
SKIPPED = "passthrough"  # None or "passthrough": nothing to do

# Where to go when a step cannot follow a stream.
_STREAMING_ALTERNATIVES = {
    "Pipeline": "StreamingPipeline (make_streaming_pipeline)",
    "ColumnTransformer": (
        "StreamingColumnTransformer (make_streaming_column_transformer)"
    ),
    "FeatureUnion": "StreamingFeatureUnion (make_streaming_union)",
    "PCA": "IncrementalPCA",
    "KMeans": "MiniBatchKMeans",
    "LogisticRegression": "SGDClassifier(loss='log_loss')",
    "LinearRegression": "SGDRegressor",
    "Ridge": "SGDRegressor",
    "RidgeClassifier": "SGDClassifier",
    "LinearSVC": "SGDClassifier",
    "RobustScaler": "sknorm.RobustNormalizer",
    "SimpleImputer": "sknorm.StreamingImputer",
}
_ANY_LEARNER = (
    "an estimator with partial_fit (e.g. BatchNormalizer, IncrementalPCA, "
    "SGDClassifier, SGDRegressor, MLPClassifier, MLPRegressor)"
)
_CATEGORY_ENCODERS = (OneHotEncoder, OrdinalEncoder)


def is_passthrough(step) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def is_usable_as_is(step) -> bool:
    """True for a step that needs no fit (stateless) or is already fitted.

    ``check_is_fitted`` passes at once for an estimator whose tags say
    ``requires_fit=False`` (e.g. ``FunctionTransformer``).
    """
    try:
        check_is_fitted(step)
    except NotFittedError:
        return False
    return True


def _learns_categories(step) -> bool:
    """Whether a category encoder's fit depends on the values it sees."""
    return (
        step.categories == "auto"
        or getattr(step, "min_frequency", None) is not None
        or getattr(step, "max_categories", None) is not None
    )


def _fit_ignores_values(step) -> bool:
    """Whether fitting ``step`` on any batch gives the same transformer.

    A category encoder given its categories (and no frequency threshold)
    learns nothing from the data; ``PolynomialFeatures`` learns only the
    number of features.
    """
    if isinstance(step, _CATEGORY_ENCODERS):
        return not _learns_categories(step)
    return isinstance(step, PolynomialFeatures)


def step_role(step) -> str:
    """How ``partial_fit`` of a streaming composite treats ``step``.

    ``LEARNS``: it has ``partial_fit`` (a ``FrozenEstimator`` does not count:
    it would forward the call to the estimator it keeps fixed);
    ``FITS_ONCE``: not fitted, and its fit ignores the values (e.g.
    ``OneHotEncoder(categories=...)``), so it is fitted on the first batch;
    ``AS_IS``: anything else, applied as it is (``check_step`` tells whether
    it can be); ``SKIPPED``: None or "passthrough".
    """
    if is_passthrough(step):
        return SKIPPED
    if isinstance(step, FrozenEstimator):
        return AS_IS
    if hasattr(step, "partial_fit"):
        return LEARNS
    if _fit_ignores_values(step) and not is_usable_as_is(step):
        return FITS_ONCE
    return AS_IS


def _inner_steps(composite) -> list[tuple[str, object]]:
    """The (name, estimator) pairs a scikit-learn composite holds."""
    if isinstance(composite, Pipeline):
        return list(composite.steps)
    if isinstance(composite, FeatureUnion):
        return list(composite.transformer_list)
    if isinstance(composite, ColumnTransformer):
        triples = getattr(composite, "transformers_", composite.transformers)
        inner = [(name, trans) for name, trans, _ in triples]
        if not isinstance(composite.remainder, str) and "remainder" not in dict(inner):
            inner.append(("remainder", composite.remainder))
        return inner
    return []


def _held_learner(composite, prefix: str = "") -> tuple[str, object] | None:
    """The first step with partial_fit inside a composite that cannot stream.

    Returns its path (``"num__standardscaler"``) and the estimator, or None.
    Steps wrapped in ``FrozenEstimator`` are fixed on purpose and not counted.
    """
    try:
        inner = _inner_steps(composite)
    except (TypeError, ValueError):
        return None  # malformed: the composite's own checks report it
    for name, est in inner:
        if isinstance(est, str) or est is None or isinstance(est, FrozenEstimator):
            continue
        path = f"{prefix}{name}"
        if hasattr(est, "partial_fit"):
            return path, est
        found = _held_learner(est, f"{path}__")
        if found:
            return found
    return None


def step_problem(name: str, step, role: str) -> str | None:
    """Why ``step`` cannot follow a stream in the given role, or None if it can."""
    if role != AS_IS:
        return None
    kind = type(step).__name__
    if hasattr(step, "_streaming_children"):
        # a streaming composite without partial_fit: its final step is the cause
        reason = _why_final_step_cannot_stream(step)
        if reason:
            return f"Step {name!r}: {reason}"
    if not isinstance(step, FrozenEstimator):
        held = _held_learner(step)
        if held:
            path, inner = held
            alternative = _STREAMING_ALTERNATIVES.get(
                next(
                    (
                        base.__name__
                        for base in type(step).__mro__
                        if base.__name__ in _STREAMING_ALTERNATIVES
                    ),
                    kind,
                ),
                "a streaming composite",
            )
            return (
                f"Step {name!r} ({kind}) holds {path!r} "
                f"({type(inner).__name__}), which learns with partial_fit, but a "
                f"{kind} cannot learn from a stream: {path!r} would stay frozen "
                f"at the data it was fitted on. Use {alternative} instead, or wrap "
                "the step in sklearn.frozen.FrozenEstimator to keep it fixed on "
                "purpose."
            )
    if is_usable_as_is(step):
        return None
    if isinstance(step, _CATEGORY_ENCODERS):
        unknown = (
            "handle_unknown='ignore'"
            if isinstance(step, OneHotEncoder)
            else "handle_unknown='use_encoded_value', unknown_value=-1"
        )
        if step.categories == "auto":
            return (
                f"Step {name!r} ({kind}) would learn its categories from the "
                "first batch only and miss those that come later. Pass them: "
                f"{kind}(categories=[...], {unknown}), one list per column; it "
                "is then fitted on the first batch by itself."
            )
        return (
            f"Step {name!r} ({kind}) would count the category frequencies "
            "(min_frequency, max_categories) on the first batch only. Set them "
            "to None, or fit it on all the data beforehand and wrap it in "
            "sklearn.frozen.FrozenEstimator."
        )
    alternative = _STREAMING_ALTERNATIVES.get(kind, _ANY_LEARNER)
    return (
        f"Step {name!r} ({kind}) cannot learn from a stream: it has no "
        f"partial_fit and is not fitted. Use {alternative} instead, or fit it "
        "beforehand (e.g. on a first batch) and wrap it in "
        "sklearn.frozen.FrozenEstimator."
    )


def check_step(name: str, step, role: str) -> None:
    """Raise a ValueError that says what to do if ``step`` cannot follow a stream."""
    problem = step_problem(name, step, role)
    if problem:
        raise ValueError(problem)


def route_params(names: list[str], params: dict, *, default: str | None) -> dict:
    """Split ``name__param`` keywords by step name.

    A keyword without ``__`` goes to the step ``default`` (the final step of a
    pipeline); with ``default=None`` it is an error.
    """
    routed: dict[str, dict] = {name: {} for name in names}
    for key, value in params.items():
        step, sep, param = key.partition("__")
        if not sep and default is not None:
            routed[default][key] = value
        elif sep and step in routed:
            routed[step][param] = value
        else:
            target = f"no step named {step!r}" if sep else "no default step"
            raise ValueError(
                f"partial_fit got the parameter {key!r}, but there is {target} "
                f"(steps: {names}). Pass 'name__param' for the step called name"
                + (", or a plain name for the final step." if default else ".")
            )
    return routed


def check_params_go_to_learners(name: str, role: str, params: dict) -> None:
    if params and role not in (LEARNS, FITS_ONCE):
        raise ValueError(
            f"partial_fit got parameter(s) {sorted(params)} for step {name!r}, "
            "which does not learn from the stream (it is "
            f"{'skipped' if role == SKIPPED else 'applied as it is'}); remove them."
        )


# -- rollback ------------------------------------------------------------------

# Classes whose partial_fit can raise after it started updating its arrays in
# place (floating-point overflow in the SGD loop), and whose arrays (the
# coefficients, n_classes x n_features) cost little to copy next to an update.
_UPDATED_BEFORE_RAISING = tuple(
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

    def __init__(self):
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
        self._generators: list[tuple[object, object]] = []

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
        for target, kept in self._dicts:
            target.clear()
            target.update(kept)
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


def _why_final_step_cannot_stream(pipeline) -> str | None:
    try:
        name, final = pipeline.steps[-1]
    except (IndexError, TypeError, ValueError, AttributeError):
        return None  # partial_fit will raise a clear error about the steps
    problem = step_problem(name, final, step_role(final))
    if problem is None:
        return None
    return (
        f"This {type(pipeline).__name__} has no partial_fit because its final "
        f"step cannot follow a stream. {problem}"
    )


class _available_if_final_step_streams:  # noqa: N801  (used as a decorator)
    """Offer a method only when the pipeline's final step can follow a stream.

    Like ``sklearn.utils.metaestimators.available_if`` (``hasattr`` is False
    otherwise), but the AttributeError names the final step and what to use.
    """

    def __init__(self, method):
        self.method = method
        update_wrapper(self, method)

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.method
        reason = _why_final_step_cannot_stream(obj)
        if reason is not None:
            raise AttributeError(reason)
        return types.MethodType(self.method, obj)


def _name_steps(estimators) -> list[tuple[str, object]]:
    """Name each estimator by its lowercased class name, numbering repeats."""
    names = [
        est if isinstance(est, str) else type(est).__name__.lower()
        for est in estimators
    ]
    total = Counter(names)
    seen: Counter = Counter()
    named = []
    for name, est in zip(names, estimators, strict=True):
        if total[name] > 1:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        named.append((name, est))
    return named


class StreamingPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` that also learns from mini-batches.

    ``partial_fit(X, y)`` sends one batch through the pipeline: every
    intermediate step is updated with the batch (its ``partial_fit``) and then
    transforms it for the next step; the final step gets
    ``partial_fit(Xt, y, **params)``. Everything else (``fit``, ``predict``,
    ``predict_proba``, ``score``, ``transform``, ``set_output``, slicing,
    ``get_params``) behaves as in a ``Pipeline``.

    How ``partial_fit`` treats each step:

    - a step with ``partial_fit`` learns from every batch, and so does a
      streaming composite (:class:`StreamingColumnTransformer`,
      :class:`StreamingFeatureUnion`, a nested ``StreamingPipeline``);
    - a category encoder given its categories
      (``OneHotEncoder(categories=[...], handle_unknown="ignore")``,
      ``OrdinalEncoder(categories=[...])``) and ``PolynomialFeatures``, whose
      fit does not depend on the values, are fitted on the first batch;
    - a step without ``partial_fit`` that needs no fitting (e.g.
      ``FunctionTransformer``) or that is already fitted is applied as it is,
      and so is a step wrapped in ``sklearn.frozen.FrozenEstimator`` (the way
      to keep a step that has ``partial_fit`` fixed);
    - ``None`` and ``"passthrough"`` are skipped;
    - any other step makes ``partial_fit`` raise a ValueError that names it
      and says what to use instead: a step that can neither learn
      incrementally nor is fitted; a ``ColumnTransformer``, ``FeatureUnion``
      or ``Pipeline`` that holds a step with ``partial_fit`` (fitted
      beforehand, it would silently stay at the data it was fitted on); a
      category encoder without its categories (it would know only those of
      the first batch).

    ``partial_fit`` is available when the final step can follow a stream;
    otherwise the AttributeError names the final step and what to use.

    Parameters
    ----------
    steps : list of tuples
        ``(name, estimator)`` tuples, chained in order; the intermediate
        steps are transformers, the last one any estimator. A step can be
        ``None`` or ``"passthrough"``.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers in ``fit`` (see
        :class:`~sklearn.pipeline.Pipeline`); ``partial_fit`` never caches,
        since each batch changes the steps.
    verbose : bool, default=False
        If True, print the time taken by each step in ``fit`` and
        ``partial_fit``.
    rollback : {"validated", "full"}, default="validated"
        What a ``partial_fit`` that raises undoes (see Notes):

        - ``"validated"``: every step is left as it was, provided the step
          that raised rejected the batch before it changed its arrays, as
          scikit-learn's estimators do for invalid input. The cost does not
          grow with the model: a copy of the attribute dict of each step,
          plus the arrays of the steps of other libraries that come before
          the final one.
        - ``"full"``: every step is left as it was, whatever the failure,
          also in the middle of an update of the final step (e.g. an MLP
          whose weights overflow). Costs a copy of the arrays that the steps
          of other libraries write into, per batch, in buffers kept between
          batches.

    Attributes
    ----------
    named_steps : :class:`~sklearn.utils.Bunch`
        The steps by name.
    classes_ : ndarray of shape (n_classes,)
        The class labels, when the final step is a classifier.
    n_features_in_ : int
        Number of features seen by the first step.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen by the first step, when X has string
        column names.

    See Also
    --------
    make_streaming_pipeline : Build a StreamingPipeline, naming its steps.
    StreamingColumnTransformer : A ColumnTransformer with partial_fit.
    sklearn.pipeline.Pipeline : The same, without ``partial_fit``.

    Notes
    -----
    **Parameters of partial_fit.** A keyword ``name__param`` goes to the
    ``partial_fit`` of the step called ``name``, as ``Pipeline.fit`` does
    without metadata routing; a keyword without ``__`` goes to the final
    step (e.g. ``classes=`` of a classifier). So
    ``partial_fit(X, y, classes=[0, 1], batchnormalizer__sample_weight=w,
    sample_weight=w)`` weighs the samples in both the normalizer and the
    classifier. A parameter for a step that does not learn is an error.
    ``partial_fit`` routes its parameters this way whether or not
    scikit-learn's metadata routing is enabled. Pipeline's
    ``transform_input`` (which needs metadata routing) is not offered.

    **Rollback.** Before a batch, ``partial_fit`` records the state of the
    steps it will update, and puts it back if anything raises:

    - sknorm's steps replace their arrays instead of writing into them: a
      copy of their attribute dict restores them exactly, in either setting;
    - steps of other libraries before the final step succeed in their update
      before a later step fails: their arrays are copied (in either setting);
    - the final step is the last to run, so only its own failure matters.
      With ``"validated"`` its attribute dict is copied: that undoes a
      rejected batch (wrong number of features, NaN or infinity, a class
      not in ``classes``, inconsistent lengths, bad ``sample_weight``), which
      scikit-learn's ``MLPClassifier``, ``MLPRegressor``, ``SGDClassifier``,
      ``SGDRegressor`` and ``Perceptron`` refuse before any change. The SGD
      family (``SGDClassifier``, ``SGDRegressor``, ``Perceptron``, ...) can
      also raise on a floating-point overflow after it started updating its
      coefficients; they are small, so they are always copied. An MLP whose
      weights become non-finite raises after the update of its weights: only
      ``"full"`` restores them.

    The cost of either setting does not grow with the length of the stream:
    the histories steps keep (``MLPClassifier.loss_curve_``) are recorded by
    their length, not copied. ``"full"`` copies the arrays of the final step
    too; for scikit-learn's MLPs only those it writes into (its weights: the
    others, such as Adam's moment estimates, are made read-only during the
    update instead, see ``RollbackJournal``). For an
    ``MLPClassifier(hidden_layer_sizes=(1024, 1024))`` on 784 features and
    batches of 64 that is 15 MB per batch: ``partial_fit`` takes about 1.2 to
    1.4 times a hand-written loop, against 1.01 for ``"validated"``, which
    copies none of it (``benchmarks/bench_pipeline.py``). The buffers of
    ``"full"`` hold a second copy of those arrays between batches.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import SGDClassifier
    >>> from sknorm import BatchNormalizer, make_streaming_pipeline
    >>> pipe = make_streaming_pipeline(BatchNormalizer(), SGDClassifier(random_state=0))
    >>> X1, y1 = np.array([[1.0, 100.0], [3.0, 300.0]]), np.array([0, 1])
    >>> X2, y2 = np.array([[2.0, 150.0], [4.0, 350.0]]), np.array([0, 1])
    >>> pipe = pipe.partial_fit(X1, y1, classes=[0, 1])
    >>> pipe = pipe.partial_fit(X2, y2)
    >>> pipe.named_steps["batchnormalizer"].mean_.tolist()
    [2.5, 225.0]
    >>> pipe.predict(np.array([[1.0, 100.0], [4.0, 400.0]])).tolist()
    [0, 1]
    """

    _parameter_constraints: dict = {
        **{
            key: value
            for key, value in Pipeline._parameter_constraints.items()
            if key != "transform_input"
        },
        "rollback": [StrOptions({"validated", "full"})],
    }

    # sknorm's composites update the steps they hold in place: a copy of their
    # own __dict__ does not restore them (see RollbackJournal).
    _sknorm_atomic = False

    # Pipeline's methods read this attribute; without metadata routing it
    # must stay None, so it is not a parameter here.
    transform_input = None

    def __init__(self, steps, *, memory=None, verbose=False, rollback="validated"):
        self.steps = steps
        self.memory = memory
        self.verbose = verbose
        self.rollback = rollback

    @_available_if_final_step_streams
    @_fit_context(
        # the steps validate their own parameters
        prefer_skip_nested_validation=False
    )
    def partial_fit(self, X, y=None, **params):
        """Update every step with one batch.

        Intermediate steps learn from the batch (``partial_fit``) and then
        transform it; the final step gets ``partial_fit(Xt, y, **params)``.
        If it raises, the steps are left as they were (see ``rollback``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch, as the first step takes it.
        y : array-like of shape (n_samples,), default=None
            Targets of the batch, for a final step that learns from them.
        **params : dict of str -> object
            ``name__param`` for the ``partial_fit`` of step ``name``; a name
            without ``__`` for the final step (e.g. ``classes=``).

        Returns
        -------
        self : StreamingPipeline
            The updated pipeline.
        """
        steps = self._checked_steps()
        names = [name for name, _ in steps]
        routed = route_params(names, params, default=names[-1])
        roles = [step_role(est) for _, est in steps]
        for (name, est), role in zip(steps, roles, strict=True):
            check_step(name, est, role)
            check_params_go_to_learners(name, role, routed[name])

        last = len(steps) - 1

        def record(journal):
            for idx, ((_, est), role) in enumerate(zip(steps, roles, strict=True)):
                if role in (LEARNS, FITS_ONCE):
                    journal.record(est, deep=self._records_deeply(est, idx == last))

        run_with_rollback(
            lambda: self._learn_batch(steps, roles, routed, X, y), record, owner=self
        )
        return self

    def _records_deeply(self, est, is_final: bool) -> bool:
        """Whether the rollback of ``est`` must undo changes made in place."""
        return (
            self.rollback == "full"
            or not is_final  # it succeeds, then a later step may fail
            or isinstance(est, _UPDATED_BEFORE_RAISING)
        )

    def _streaming_children(self) -> list:
        """The steps that partial_fit updates (for an enclosing rollback)."""
        try:
            return [
                est for _, est in self.steps if step_role(est) in (LEARNS, FITS_ONCE)
            ]
        except (TypeError, ValueError):
            return []

    def _learn_batch(self, steps, roles, routed, X, y):
        Xt = X
        last = len(steps) - 1
        for idx, ((name, est), role) in enumerate(zip(steps, roles, strict=True)):
            start = time.perf_counter()
            if role == LEARNS:
                est.partial_fit(Xt, y, **routed[name])
            elif role == FITS_ONCE:
                est.fit(Xt, y, **routed[name])
            if idx < last and role != SKIPPED:
                Xt = est.transform(Xt)
            if self.verbose:
                seconds = time.perf_counter() - start
                print(
                    f"[StreamingPipeline] (step {idx + 1} of {len(steps)}) "
                    f"partial_fit {name} ({role}), total={seconds:.1f}s",
                    flush=True,
                )

    def _checked_steps(self) -> list[tuple[str, object]]:
        """The steps as a list of (name, estimator), or a clear error."""
        steps = self.steps
        if not steps:
            raise ValueError("The pipeline is empty: give it at least one step.")
        if not all(isinstance(step, tuple | list) and len(step) == 2 for step in steps):
            raise TypeError(
                "steps must be a list of (name, estimator) tuples; use "
                "make_streaming_pipeline(*estimators) to name them automatically."
            )
        names = [name for name, _ in steps]
        bad = [name for name in names if not isinstance(name, str) or "__" in name]
        if bad:
            raise ValueError(
                f"Step names must be strings without '__' (it separates a step "
                f"from its parameter); got {bad}."
            )
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"Step names must be unique; repeated: {repeated}.")
        for idx, (name, est) in enumerate(steps):
            if idx == len(steps) - 1 or is_passthrough(est):
                continue
            if not hasattr(est, "transform"):
                raise TypeError(
                    f"Intermediate step {name!r} ({type(est).__name__}) has no "
                    "transform method; every step but the last must be a "
                    "transformer (or 'passthrough')."
                )
        return [tuple(step) for step in steps]

    def __getitem__(self, ind):
        """A step by index or name, or a sub-pipeline (sharing the steps) by slice."""
        sub = super().__getitem__(ind)
        if isinstance(ind, slice):
            sub.rollback = self.rollback
        return sub

    def __sklearn_is_fitted__(self):
        """Whether every step is fitted (or needs no fitting).

        ``Pipeline`` looks at the last step only; after ``partial_fit`` the
        steps are fitted together, but a stateless last step (e.g.
        ``FunctionTransformer``) says nothing about the steps before it.
        """
        try:
            return all(
                is_usable_as_is(est) for _, est in self.steps if not is_passthrough(est)
            )
        except (TypeError, ValueError):
            return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            estimators = [est for _, est in self.steps if not is_passthrough(est)]
            # NaN reaches every step unless one removes it, which tags cannot
            # tell: claim NaN support only when every step has it.
            tags.input_tags.allow_nan = bool(estimators) and all(
                get_tags(est).input_tags.allow_nan for est in estimators
            )
        except (TypeError, ValueError, AttributeError):
            pass  # malformed steps: fit and partial_fit report them
        return tags

    def fit(self, X, y=None, **params):
        """Fit every step on all of X, as ``Pipeline.fit`` does.

        If it raises, every step is left exactly as it was.

        Parameters
        ----------
        X : iterable
            Training data, as the first step takes it.
        y : iterable, default=None
            Training targets.
        **params : dict of str -> object
            ``name__param`` for the ``fit`` of step ``name`` (or, with
            metadata routing enabled, the parameters the steps request).

        Returns
        -------
        self : StreamingPipeline
            The fitted pipeline.
        """
        # Pipeline.fit writes the fitted steps into the list ``steps``.
        journal = RollbackJournal(guard=False)
        journal.record_everything(self)
        try:
            return super().fit(X, y, **params)
        except BaseException:
            journal.restore()
            raise


def make_streaming_pipeline(*steps, memory=None, verbose=False, rollback="validated"):
    """Build a :class:`StreamingPipeline`, naming each step after its class.

    Names are the lowercased class names, numbered when a class repeats
    (``"batchnormalizer-1"``, ``"batchnormalizer-2"``), as in
    :func:`sklearn.pipeline.make_pipeline`.

    Parameters
    ----------
    *steps : estimators
        The steps, in order.
    memory : str or object with the joblib.Memory interface, default=None
        Passed to :class:`StreamingPipeline`.
    verbose : bool, default=False
        Passed to :class:`StreamingPipeline`.
    rollback : {"validated", "full"}, default="validated"
        Passed to :class:`StreamingPipeline`.

    Returns
    -------
    pipeline : StreamingPipeline
        The pipeline, not fitted.

    Examples
    --------
    >>> from sklearn.neural_network import MLPClassifier
    >>> from sknorm import BatchNormalizer, make_streaming_pipeline
    >>> pipe = make_streaming_pipeline(BatchNormalizer(), MLPClassifier())
    >>> [name for name, _ in pipe.steps]
    ['batchnormalizer', 'mlpclassifier']
    """
    return StreamingPipeline(
        _name_steps(steps), memory=memory, verbose=verbose, rollback=rollback
    )
