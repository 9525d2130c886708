"""StreamingPipeline: a scikit-learn Pipeline that also learns with partial_fit."""

from __future__ import annotations

import copy
import pickle
import time
from collections import Counter

from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._compat import _fit_context

# How partial_fit treats a step.
_LEARNS = "learns"  # has partial_fit: updated with every batch
_AS_IS = "as is"  # stateless or already fitted without partial_fit: applied
_NONE = "passthrough"  # None or "passthrough": nothing to do


def _is_passthrough(step) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def _is_frozen(step) -> bool:
    # FrozenEstimator forwards partial_fit to the estimator it wraps, which
    # would update a step the user meant to keep fixed.
    return isinstance(step, FrozenEstimator)


def _is_usable_as_is(step) -> bool:
    """True for a step that needs no fit (stateless) or is already fitted.

    ``check_is_fitted`` passes at once for an estimator whose tags say
    ``requires_fit=False`` (e.g. ``FunctionTransformer``).
    """
    try:
        check_is_fitted(step)
    except NotFittedError:
        return False
    return True


def _snapshot(step):
    """The state of a step, from which ``_restore`` puts it back exactly.

    Pickling the whole ``__dict__`` at once keeps objects shared inside the
    step shared (e.g. an optimizer holding the model's weight arrays), and is
    an order of magnitude faster than ``copy.deepcopy`` on long histories
    such as ``MLPClassifier.loss_curve_``.
    """
    try:
        return pickle.dumps(step.__dict__, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an attribute that cannot be pickled, e.g. a lambda
        return copy.deepcopy(step.__dict__)


def _restore(step, snapshot) -> None:
    state = pickle.loads(snapshot) if isinstance(snapshot, bytes) else snapshot
    step.__dict__.clear()
    step.__dict__.update(state)


def _step_role(step) -> str:
    if _is_passthrough(step):
        return _NONE
    if hasattr(step, "partial_fit") and not _is_frozen(step):
        return _LEARNS
    return _AS_IS


def _final_step_can_stream(pipeline) -> bool:
    """Whether partial_fit is offered: the final step can follow a stream."""
    try:
        final = pipeline.steps[-1][1]
    except (IndexError, TypeError, ValueError, AttributeError):
        return True  # partial_fit will raise a clear error about the steps
    role = _step_role(final)
    return role != _AS_IS or _is_usable_as_is(final)


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

    - a step with ``partial_fit`` learns from every batch;
    - a step without ``partial_fit`` that needs no fitting (e.g.
      ``FunctionTransformer``, whose tags say ``requires_fit=False``) or that
      is already fitted is applied as it is, and so is a step wrapped in
      ``sklearn.frozen.FrozenEstimator`` (to keep a fitted step fixed);
    - ``None`` and ``"passthrough"`` are skipped;
    - any other step (it can neither learn incrementally nor is fitted) makes
      ``partial_fit`` raise a ValueError that names it.

    ``partial_fit`` is available when the final step can follow a stream: it
    has ``partial_fit``, is passthrough, needs no fitting or is fitted.

    If ``partial_fit`` or ``fit`` raises, every step is left exactly as it
    was before the call.

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

    Each ``partial_fit`` keeps a copy (a pickle) of the steps it updates
    until the batch is done, so that a failure can restore them. It costs a
    copy of the model's weights per batch, plus a copy of any history the
    final step keeps: ``MLPClassifier.loss_curve_`` grows by one value per
    batch, which adds about 1 ms per batch after 100,000 batches.

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
        key: value
        for key, value in Pipeline._parameter_constraints.items()
        if key != "transform_input"
    }

    # Pipeline's methods read this attribute; without metadata routing it
    # must stay None, so it is not a parameter here.
    transform_input = None

    def __init__(self, steps, *, memory=None, verbose=False):
        self.steps = steps
        self.memory = memory
        self.verbose = verbose

    @available_if(_final_step_can_stream)
    @_fit_context(
        # the steps validate their own parameters
        prefer_skip_nested_validation=False
    )
    def partial_fit(self, X, y=None, **params):
        """Update every step with one batch.

        Intermediate steps learn from the batch (``partial_fit``) and then
        transform it; the final step gets ``partial_fit(Xt, y, **params)``.
        If it raises, every step is left exactly as it was.

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
        routed = self._route_params(steps, params)
        roles = [_step_role(est) for _, est in steps]
        self._check_roles(steps, roles, routed)

        learners = [
            est for (_, est), role in zip(steps, roles, strict=True) if role == _LEARNS
        ]
        snapshots = [(est, _snapshot(est)) for est in learners]
        try:
            self._learn_batch(steps, roles, routed, X, y)
        except BaseException:
            for est, snapshot in snapshots:
                _restore(est, snapshot)
            raise
        return self

    def _learn_batch(self, steps, roles, routed, X, y):
        Xt = X
        last = len(steps) - 1
        for idx, ((name, est), role) in enumerate(zip(steps, roles, strict=True)):
            start = time.perf_counter()
            if role == _LEARNS:
                est.partial_fit(Xt, y, **routed[name])
            if idx < last and role != _NONE:
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
            if idx == len(steps) - 1 or _is_passthrough(est):
                continue
            if not hasattr(est, "transform"):
                raise TypeError(
                    f"Intermediate step {name!r} ({type(est).__name__}) has no "
                    "transform method; every step but the last must be a "
                    "transformer (or 'passthrough')."
                )
        return [tuple(step) for step in steps]

    @staticmethod
    def _route_params(steps, params) -> dict[str, dict]:
        names = [name for name, _ in steps]
        routed: dict[str, dict] = {name: {} for name in names}
        for key, value in params.items():
            step, sep, param = key.partition("__")
            if not sep:
                routed[names[-1]][key] = value
            elif step in routed:
                routed[step][param] = value
            else:
                raise ValueError(
                    f"partial_fit got the parameter {key!r}, but there is no step "
                    f"named {step!r} (steps: {names}). Pass 'name__param' for the "
                    "step called name, or a plain name for the final step."
                )
        return routed

    @staticmethod
    def _check_roles(steps, roles, routed) -> None:
        for (name, est), role in zip(steps, roles, strict=True):
            if role == _AS_IS and not _is_usable_as_is(est):
                raise ValueError(
                    f"Step {name!r} ({type(est).__name__}) cannot learn from a "
                    "stream: it has no partial_fit and is not fitted. Fit it "
                    "beforehand (e.g. on a first batch), or use an estimator with "
                    "partial_fit (e.g. IncrementalPCA instead of PCA)."
                )
            if role != _LEARNS and routed[name]:
                raise ValueError(
                    f"partial_fit got parameter(s) {sorted(routed[name])} for step "
                    f"{name!r}, which does not learn from the stream (it is "
                    f"{'skipped' if role == _NONE else 'applied as it is'}); "
                    "remove them."
                )

    def __sklearn_is_fitted__(self):
        """Whether every step is fitted (or needs no fitting).

        ``Pipeline`` looks at the last step only; after ``partial_fit`` the
        steps are fitted together, but a stateless last step (e.g.
        ``FunctionTransformer``) says nothing about the steps before it.
        """
        try:
            return all(
                _is_usable_as_is(est)
                for _, est in self.steps
                if not _is_passthrough(est)
            )
        except (TypeError, ValueError):
            return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            estimators = [est for _, est in self.steps if not _is_passthrough(est)]
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
        steps_before = self.steps
        try:
            estimators = [est for _, est in steps_before if hasattr(est, "__dict__")]
        except (TypeError, ValueError):
            estimators = []  # Pipeline.fit reports malformed steps
        snapshots = [(est, _snapshot(est)) for est in estimators]
        try:
            return super().fit(X, y, **params)
        except BaseException:
            for est, snapshot in snapshots:
                _restore(est, snapshot)
            self.steps = steps_before
            raise


def make_streaming_pipeline(*steps, memory=None, verbose=False):
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
    return StreamingPipeline(_name_steps(steps), memory=memory, verbose=verbose)
