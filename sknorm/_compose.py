"""Streaming composites of transformers: a ColumnTransformer and a FeatureUnion
that learn from mini-batches with partial_fit.

Each inner transformer is treated by the rules of StreamingPipeline (one home:
``step_role`` and ``check_step`` in ``_pipeline``), and a failing
``partial_fit`` leaves everything as it was (``RollbackJournal``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.metadata_routing import process_routing
from sklearn.utils.validation import check_is_fitted, validate_data

from ._atomic import unchanged_on_error
from ._base import DocumentationLink
from ._compat import (
    ERR_MSG_1DCOLUMN,
    _fit_context,
    check_column_transformer_X,
    get_output_config,
    safe_indexing,
    transform_one,
)
from ._pipeline import _name_steps
from ._rollback import all_or_nothing, run_with_rollback
from ._steps import (
    FITS_ONCE,
    LEARNS,
    check_params_go_to_learners,
    check_step,
    route_params,
    step_role,
)
from ._typing import Estimator, MatrixLike, MatrixOutput, VectorLike

if TYPE_CHECKING:
    from typing_extensions import Self

_LEARNS_OR_FITS_ONCE = (LEARNS, FITS_ONCE)


def _selected_as_2d(learn):
    """Run ``learn()``; a 1-D column selection gets ColumnTransformer's message."""
    try:
        learn()
    except ValueError as error:
        if "Expected 2D array, got 1D array instead" in str(error):
            raise ValueError(ERR_MSG_1DCOLUMN) from error
        raise


class StreamingColumnTransformer(DocumentationLink, ColumnTransformer):
    """A :class:`~sklearn.compose.ColumnTransformer` that also learns from mini-batches.

    ``partial_fit(X)`` updates every inner transformer with its columns of the
    batch. Everything else (the constructor, ``fit``, ``transform``,
    ``get_feature_names_out``, ``remainder``, ``sparse_threshold``,
    ``transformer_weights``, ``set_output`` with pandas or polars, indexing
    by name) is ColumnTransformer's.

    How ``partial_fit`` treats each transformer (the rules of
    :class:`StreamingPipeline`):

    - one with ``partial_fit`` (a normalizer, ``IncrementalPCA``, a nested
      :class:`StreamingPipeline`) is cloned at the first call, as
      ``ColumnTransformer.fit`` does, and learns from every batch;
    - a category encoder given its categories
      (``OneHotEncoder(categories=[...], handle_unknown="ignore")``,
      ``OrdinalEncoder(categories=[...])``) and ``PolynomialFeatures``, whose
      fit does not depend on the values, are cloned and fitted on the first
      batch; ``"passthrough"`` is as in ColumnTransformer;
    - one that needs no fitting (``FunctionTransformer``), is already fitted
      or is wrapped in ``sklearn.frozen.FrozenEstimator`` is applied as it is
      (not cloned);
    - anything else is a ValueError naming the transformer and what to use:
      an encoder without its categories, a ``Pipeline`` holding a step with
      ``partial_fit`` (use :func:`make_streaming_pipeline`), a transformer
      that is not fitted and has no ``partial_fit``.

    ``sparse_output_`` is decided on the first batch, as ColumnTransformer
    decides it on the data it is fitted on, and kept, so that the output type
    does not change along the stream. If ``partial_fit`` raises, the
    transformer and every inner transformer are left as they were.

    Parameters
    ----------
    transformers : list of tuples
        ``(name, transformer, columns)`` tuples, as in
        :class:`~sklearn.compose.ColumnTransformer`.
    remainder : {"drop", "passthrough"} or estimator, default="drop"
        What to do with the columns no transformer selects; an estimator
        follows the rules above.
    sparse_threshold : float, default=0.3
        The output is sparse if the density of the first batch's output is
        below this threshold and some transformer outputs a sparse matrix.
    n_jobs : int, default=None
        Jobs for ``fit`` and ``transform``; ``partial_fit`` updates the
        transformers one after the other.
    transformer_weights : dict, default=None
        Multiplies the output of each transformer, keyed by name.
    verbose : bool, default=False
        Print the time of each transformer in ``fit``.
    verbose_feature_names_out : bool, str or callable, default=True
        How ``get_feature_names_out`` prefixes the names (see
        ColumnTransformer).

    Attributes
    ----------
    transformers_ : list
        The fitted transformers, as ``(name, fitted_transformer, column)``.
    named_transformers_ : :class:`~sklearn.utils.Bunch`
        The fitted transformers by name.
    sparse_output_ : bool
        Whether ``transform`` returns a sparse matrix.
    output_indices_ : dict
        The slice of the output columns of each transformer.
    n_features_in_ : int
        Number of features seen in the first batch.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when X has string column names.

    See Also
    --------
    make_streaming_column_transformer : Build one, naming the transformers.
    StreamingPipeline : A Pipeline with partial_fit, which streams into this.
    sklearn.compose.ColumnTransformer : The same, without ``partial_fit``.

    Notes
    -----
    Keywords ``name__param`` of ``partial_fit`` go to the ``partial_fit`` of
    the transformer called ``name`` (``"remainder"`` for the remainder), e.g.
    ``num__sample_weight=w``. Later batches must have the same columns as the
    first (checked as every ``partial_fit`` in scikit-learn checks them);
    ``transform`` accepts, as ColumnTransformer's, extra or reordered columns
    of a DataFrame.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import OneHotEncoder
    >>> from sknorm import BatchNormalizer, make_streaming_column_transformer
    >>> ct = make_streaming_column_transformer(
    ...     (BatchNormalizer(), [0]),
    ...     (OneHotEncoder(categories=[[0, 1, 2]], handle_unknown="ignore"), [1]),
    ...     sparse_threshold=0,
    ... )
    >>> ct = ct.partial_fit(np.array([[1.0, 0], [3.0, 1]]))
    >>> ct = ct.partial_fit(np.array([[5.0, 2], [7.0, 2]]))
    >>> ct.named_transformers_["batchnormalizer"].mean_.tolist()
    [4.0]
    >>> ct.transform(np.array([[4.0, 2], [4.0, 9]])).tolist()
    [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    """

    # Updates the transformers it holds in place (see RollbackJournal).
    _sknorm_atomic = False

    @_fit_context(
        # the transformers validate their own parameters
        prefer_skip_nested_validation=False
    )
    def partial_fit(
        self, X: MatrixLike, y: VectorLike | None = None, **params: Any
    ) -> Self:
        """Update every inner transformer with its columns of one batch.

        The first call also sets up what ``fit`` sets up: the columns of each
        transformer, the remainder, ``sparse_output_`` and the output indices.
        If it raises, everything is left as it was.

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            The batch.
        y : array-like of shape (n_samples,), default=None
            Targets, passed on to the transformers' ``partial_fit``.
        **params : dict of str -> object
            ``name__param`` for the ``partial_fit`` of the transformer
            ``name``.

        Returns
        -------
        self : StreamingColumnTransformer
            The updated transformer.
        """
        learn = (
            self._learn_batch
            if hasattr(self, "transformers_")
            else self._learn_first_batch
        )
        run_with_rollback(
            lambda: learn(X, y, params),
            lambda journal: journal.record(self, deep=True),
            owner=self,
        )
        return self

    def _routed(self, params) -> dict:
        names = [name for name, _, _ in self.transformers] + ["remainder"]
        return route_params(names, params, default=None)

    def _learn_first_batch(self, X, y, params):
        validate_data(self, X=X, skip_check_array=True)
        X = check_column_transformer_X(X)
        self._validate_transformers()
        routed = self._routed(params)
        self._validate_column_callables(X)
        self._validate_remainder(X)
        selected = list(
            self._iter(
                fitted=False,
                column_as_labels=False,
                skip_drop=True,
                skip_empty_columns=True,
            )
        )
        roles = []
        for name, trans, _, _ in selected:
            role = "passthrough step" if trans == "passthrough" else step_role(trans)
            if role != "passthrough step":
                check_step(name, trans, role)
                check_params_go_to_learners(name, role, routed[name])
            roles.append(role)

        fitted = []

        def learn():
            for (name, trans, columns, _), role in zip(selected, roles, strict=True):
                fitted.append(
                    self._first_fit(name, trans, role, X, columns, y, routed[name])
                )

        _selected_as_2d(learn)
        self._update_fitted_transformers(fitted)
        if not fitted:
            return
        outputs = self._call_func_on_transformers(
            X,
            None,
            transform_one,
            column_as_labels=False,
            routed_params=process_routing(self, "transform"),
        )
        self.sparse_output_ = self._is_sparse_enough(outputs)
        self._validate_output(outputs)
        self._record_output_indices(outputs)

    def _first_fit(self, name, trans, role, X, columns, y, params):
        X_columns = safe_indexing(X, columns, axis=1)
        if role == "passthrough step":
            # as ColumnTransformer.fit: a FunctionTransformer that names its
            # output after its input
            output = get_output_config("transform", self)["dense"]
            identity = FunctionTransformer(
                accept_sparse=True, check_inverse=False, feature_names_out="one-to-one"
            ).set_output(transform=output)
            return identity.fit(X_columns)
        if role == LEARNS:
            return clone(trans).partial_fit(X_columns, y, **params)
        if role == FITS_ONCE:
            return clone(trans).fit(X_columns, y, **params)
        return trans

    def _is_sparse_enough(self, outputs) -> bool:
        """ColumnTransformer's rule: sparse if any output is and density is low."""
        if not any(sparse.issparse(out) for out in outputs):
            return False
        nnz = sum(
            out.nnz if sparse.issparse(out) else out.shape[0] * out.shape[1]
            for out in outputs
        )
        total = sum(out.shape[0] * out.shape[1] for out in outputs)
        return nnz / total < self.sparse_threshold

    def _learn_batch(self, X, y, params):
        check_is_fitted(self)
        validate_data(self, X=X, reset=False, skip_check_array=True)
        X = check_column_transformer_X(X)
        routed = self._routed(params)
        learners = []
        for name, trans, columns, _ in self._iter(
            fitted=True,
            column_as_labels=False,
            skip_drop=True,
            skip_empty_columns=True,
        ):
            role = step_role(trans)
            check_params_go_to_learners(name, role, routed[name])
            if role == LEARNS:
                learners.append((name, trans, columns))

        def learn():
            for name, trans, columns in learners:
                trans.partial_fit(safe_indexing(X, columns, axis=1), y, **routed[name])

        _selected_as_2d(learn)

    def _streaming_children(self) -> list:
        """The fitted transformers partial_fit updates (for a rollback)."""
        return [
            trans
            for _, trans, _ in getattr(self, "transformers_", [])
            if step_role(trans) == LEARNS
        ]

    def fit_transform(
        self, X: MatrixLike, y: VectorLike | None = None, **params: Any
    ) -> MatrixOutput:
        """Fit all transformers on X, as ``ColumnTransformer.fit_transform``.

        If it raises, the transformer is left as it was.

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            The data.
        y : array-like of shape (n_samples,), default=None
            Targets.
        **params : dict
            Routed to the transformers with metadata routing enabled.

        Returns
        -------
        X_t : {ndarray, sparse matrix, dataframe} of shape (n_samples, n_out)
            The outputs of the transformers, side by side.
        """
        with unchanged_on_error(self):
            return super().fit_transform(X, y, **params)


def make_streaming_column_transformer(
    *transformers: tuple[Estimator | Literal["drop", "passthrough"], Any],
    remainder: Estimator | Literal["drop", "passthrough"] = "drop",
    sparse_threshold: float = 0.3,
    n_jobs: int | None = None,
    verbose: bool = False,
    verbose_feature_names_out: bool | str | Callable[[str, str], str] = True,
) -> StreamingColumnTransformer:
    """Build a :class:`StreamingColumnTransformer`, naming the transformers.

    As :func:`sklearn.compose.make_column_transformer`: each transformer is
    named after its class, lowercased, numbered when a class repeats.

    Parameters
    ----------
    *transformers : tuples
        ``(transformer, columns)`` tuples.
    remainder : {"drop", "passthrough"} or estimator, default="drop"
        See :class:`StreamingColumnTransformer`.
    sparse_threshold : float, default=0.3
        See :class:`StreamingColumnTransformer`.
    n_jobs : int, default=None
        See :class:`StreamingColumnTransformer`.
    verbose : bool, default=False
        See :class:`StreamingColumnTransformer`.
    verbose_feature_names_out : bool, str or callable, default=True
        See :class:`StreamingColumnTransformer`.

    Returns
    -------
    column_transformer : StreamingColumnTransformer
        Not fitted.

    Examples
    --------
    >>> from sknorm import BatchNormalizer, RobustNormalizer
    >>> from sknorm import make_streaming_column_transformer
    >>> ct = make_streaming_column_transformer(
    ...     (BatchNormalizer(), ["price"]), (RobustNormalizer(), ["volume"])
    ... )
    >>> [name for name, _, _ in ct.transformers]
    ['batchnormalizer', 'robustnormalizer']
    """
    named = _name_steps([trans for trans, _ in transformers])
    return StreamingColumnTransformer(
        [
            (name, trans, columns)
            for (name, trans), (_, columns) in zip(named, transformers, strict=True)
        ],
        remainder=remainder,
        sparse_threshold=sparse_threshold,
        n_jobs=n_jobs,
        verbose=verbose,
        verbose_feature_names_out=verbose_feature_names_out,
    )


class StreamingFeatureUnion(DocumentationLink, FeatureUnion):
    """A :class:`~sklearn.pipeline.FeatureUnion` that also learns from mini-batches.

    ``partial_fit(X)`` updates every transformer of ``transformer_list`` with
    the whole batch, by the rules of :class:`StreamingPipeline`: one with
    ``partial_fit`` learns from every batch; an encoder given its categories
    or ``PolynomialFeatures`` is fitted on the first batch; a stateless,
    fitted or ``FrozenEstimator`` one is applied as it is; anything else is a
    ValueError that names it. As in FeatureUnion, the transformers are updated
    in place (not cloned). Everything else (``fit``, ``transform``,
    ``get_feature_names_out``, ``set_output``) is FeatureUnion's. If
    ``partial_fit`` or ``fit`` raises, every transformer is left as it was.

    Parameters
    ----------
    transformer_list : list of tuples
        ``(name, transformer)`` tuples; a transformer can be ``"drop"`` or
        ``"passthrough"``.
    n_jobs : int, default=None
        Jobs for ``fit`` and ``transform``; ``partial_fit`` updates the
        transformers one after the other.
    transformer_weights : dict, default=None
        Multiplies the output of each transformer, keyed by name.
    verbose : bool, default=False
        Print the time of each transformer in ``fit``.
    verbose_feature_names_out : bool, default=True
        Prefix each output feature name with its transformer's name.

    Attributes
    ----------
    named_transformers : :class:`~sklearn.utils.Bunch`
        The transformers by name.
    n_features_in_ : int
        Number of features seen by the first transformer.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen by the first transformer.

    See Also
    --------
    make_streaming_union : Build one, naming the transformers.
    sklearn.pipeline.FeatureUnion : The same, without ``partial_fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import IncrementalPCA
    >>> from sknorm import BatchNormalizer, make_streaming_union
    >>> union = make_streaming_union(BatchNormalizer(), IncrementalPCA(1))
    >>> union = union.partial_fit(np.array([[0.0, 0.0], [2.0, 2.0]]))
    >>> union = union.partial_fit(np.array([[4.0, 4.0], [6.0, 6.0]]))
    >>> union.transform(np.array([[3.0, 3.0]])).round(6).tolist()
    [[0.0, 0.0, 0.0]]
    """

    # Updates the transformers it holds in place (see RollbackJournal).
    _sknorm_atomic = False

    def partial_fit(
        self, X: MatrixLike, y: VectorLike | None = None, **params: Any
    ) -> Self:
        """Update every transformer with one batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch.
        y : array-like of shape (n_samples,), default=None
            Targets, passed on to the transformers' ``partial_fit``.
        **params : dict of str -> object
            ``name__param`` for the ``partial_fit`` of the transformer
            ``name``.

        Returns
        -------
        self : StreamingFeatureUnion
            The updated union.
        """
        self._validate_transformers()
        self._validate_transformer_weights()
        names = [name for name, _ in self.transformer_list]
        routed = route_params(names, params, default=None)
        steps = [(name, trans) for name, trans, _ in self._iter()]
        roles = [step_role(trans) for _, trans in steps]
        for (name, trans), role in zip(steps, roles, strict=True):
            check_step(name, trans, role)
            check_params_go_to_learners(name, role, routed[name])

        def learn():
            for (name, trans), role in zip(steps, roles, strict=True):
                if role == LEARNS:
                    trans.partial_fit(X, y, **routed[name])
                elif role == FITS_ONCE:
                    trans.fit(X, y, **routed[name])

        run_with_rollback(
            learn, lambda journal: journal.record(self, deep=True), owner=self
        )
        return self

    def _streaming_children(self) -> list:
        """The transformers partial_fit updates (for a rollback)."""
        try:
            return [
                trans
                for _, trans in self.transformer_list
                if step_role(trans) in _LEARNS_OR_FITS_ONCE
            ]
        except (TypeError, ValueError):
            return []

    def fit(self, X: MatrixLike, y: VectorLike | None = None, **params: Any) -> Self:
        """Fit every transformer on X, as ``FeatureUnion.fit``.

        If it raises, every transformer is left as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data.
        y : array-like, default=None
            Targets.
        **params : dict
            Passed to the transformers' ``fit`` (see FeatureUnion).

        Returns
        -------
        self : StreamingFeatureUnion
            The fitted union.
        """
        return all_or_nothing(self, super().fit, X, y, **params)

    def fit_transform(
        self, X: MatrixLike, y: VectorLike | None = None, **params: Any
    ) -> MatrixOutput:
        """Fit every transformer on X and transform it, as FeatureUnion does.

        If it raises, every transformer is left as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data.
        y : array-like, default=None
            Targets.
        **params : dict
            Passed to the transformers' ``fit_transform`` (see FeatureUnion).

        Returns
        -------
        X_t : ndarray, sparse matrix or dataframe
            The outputs of the transformers, side by side.
        """
        return all_or_nothing(self, super().fit_transform, X, y, **params)


def make_streaming_union(
    *transformers: Estimator | Literal["drop", "passthrough"],
    n_jobs: int | None = None,
    verbose: bool = False,
    verbose_feature_names_out: bool = True,
) -> StreamingFeatureUnion:
    """Build a :class:`StreamingFeatureUnion`, naming the transformers.

    As :func:`sklearn.pipeline.make_union`: each transformer is named after
    its class, lowercased, numbered when a class repeats.

    Parameters
    ----------
    *transformers : estimators
        The transformers.
    n_jobs : int, default=None
        See :class:`StreamingFeatureUnion`.
    verbose : bool, default=False
        See :class:`StreamingFeatureUnion`.
    verbose_feature_names_out : bool, default=True
        See :class:`StreamingFeatureUnion`.

    Returns
    -------
    union : StreamingFeatureUnion
        Not fitted.

    Examples
    --------
    >>> from sklearn.decomposition import IncrementalPCA
    >>> from sknorm import BatchNormalizer, make_streaming_union
    >>> union = make_streaming_union(BatchNormalizer(), IncrementalPCA(2))
    >>> [name for name, _ in union.transformer_list]
    ['batchnormalizer', 'incrementalpca']
    """
    return StreamingFeatureUnion(
        _name_steps(transformers),
        n_jobs=n_jobs,
        verbose=verbose,
        verbose_feature_names_out=verbose_feature_names_out,
    )
