"""StreamingPipeline: a scikit-learn Pipeline that also learns with partial_fit."""

from __future__ import annotations

import time
import types
from collections import Counter
from collections.abc import Callable
from functools import update_wrapper
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypeVar,
    overload,
)

from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags

from ._base import DocumentationLink
from ._compat import StrOptions, _fit_context
from ._rollback import (
    UPDATED_BEFORE_RAISING,
    all_or_nothing,
    run_with_rollback,
)
from ._steps import (
    FITS_ONCE,
    LEARNS,
    SKIPPED,
    check_params_go_to_learners,
    check_step,
    is_passthrough,
    is_usable_as_is,
    route_params,
    step_role,
    why_final_step_cannot_stream,
)
from ._typing import Estimator, MatrixLike, VectorLike

if TYPE_CHECKING:
    from sklearn.utils import Tags
    from typing_extensions import Self

_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class _available_if_final_step_streams(Generic[_T, _P, _R]):  # noqa: N801  (a decorator)
    """Offer a method only when the pipeline's final step can follow a stream.

    Like ``sklearn.utils.metaestimators.available_if`` (``hasattr`` is False
    otherwise), but the AttributeError names the final step and what to use.
    """

    def __init__(self, method: Callable[Concatenate[_T, _P], _R]) -> None:
        self.method = method
        # update_wrapper copies the name and docstring onto any object;
        # typeshed asks for a callable wrapper.
        update_wrapper(self, method)  # type: ignore[arg-type]

    @overload
    def __get__(
        self, obj: None, owner: type | None = None
    ) -> Callable[Concatenate[_T, _P], _R]: ...

    @overload
    def __get__(self, obj: _T, owner: type | None = None) -> Callable[_P, _R]: ...

    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., _R]:
        if obj is None:
            return self.method
        reason = why_final_step_cannot_stream(obj)
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


class StreamingPipeline(DocumentationLink, Pipeline):
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

    def __init__(
        self,
        steps: list[tuple[str, Estimator]],
        *,
        memory: object = None,
        verbose: bool = False,
        rollback: Literal["validated", "full"] = "validated",
    ) -> None:
        self.steps = steps
        self.memory = memory
        self.verbose = verbose
        self.rollback = rollback

    @_available_if_final_step_streams
    @_fit_context(
        # the steps validate their own parameters
        prefer_skip_nested_validation=False
    )
    def partial_fit(
        self, X: MatrixLike, y: VectorLike | None = None, **params: Any
    ) -> StreamingPipeline:
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
            or isinstance(est, UPDATED_BEFORE_RAISING)
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

    def __getitem__(self, ind: int | str | slice) -> Any:
        """A step by index or name, or a sub-pipeline (sharing the steps) by slice."""
        sub = super().__getitem__(ind)
        if isinstance(ind, slice):
            sub.rollback = self.rollback
        return sub

    def __sklearn_is_fitted__(self) -> bool:
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

    def __sklearn_tags__(self) -> Tags:
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

    def fit(self, X: MatrixLike, y: VectorLike | None = None, **params: Any) -> Self:
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
        return all_or_nothing(self, super().fit, X, y, **params)


def make_streaming_pipeline(
    *steps: Estimator,
    memory: object = None,
    verbose: bool = False,
    rollback: Literal["validated", "full"] = "validated",
) -> StreamingPipeline:
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
