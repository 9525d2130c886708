"""How the streaming composites treat the steps they hold.

One set of rules for ``StreamingPipeline``, ``StreamingColumnTransformer`` and
``StreamingFeatureUnion``: the role of a step in ``partial_fit`` (it learns,
is fitted once, is applied as it is, or is skipped), the errors for steps that
cannot follow a stream (naming the step and the streaming alternative), and
the routing of ``name__param`` keywords.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, PolynomialFeatures
from sklearn.utils.validation import check_is_fitted

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
        reason = why_final_step_cannot_stream(step)
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


def why_final_step_cannot_stream(pipeline) -> str | None:
    """Why a pipeline's final step cannot follow a stream, or None."""
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
