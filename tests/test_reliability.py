"""Fuzz: streams that mix bad batches into good ones lose nothing.

Every bad batch must raise a ValueError or TypeError, and afterwards the
normalizer must be bit-for-bit the normalizer of a twin stream that never saw
the bad batches. Run many more examples with
``SKNORM_HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_reliability.py``.
"""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from fuzz_counts import FUZZ_COUNTS
from hypothesis import given
from hypothesis import strategies as st

from sknorm import BatchNormalizer

N_FEATURES = 3
MODES = {
    "exact": {},
    "momentum": {"momentum": 0.3},
    "half_life": {"half_life": 7.0},
}


def fitted_state(est):
    """Everything a user can read from a fitted normalizer, as bytes."""
    if not hasattr(est, "n_samples_seen_"):
        return None
    return pickle.dumps(
        (
            est.mean_,
            est.var_,
            est.scale_,
            est.n_samples_seen_,
            est.weight_sum_,
            est.n_features_in_,
            getattr(est, "feature_names_in_", None),
        )
    )


@st.composite
def good_batches(draw):
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)) * [1.0, 1e3, 1e-3] + [0.0, 1e6, -5.0]
    if draw(st.booleans()):
        X[rng.random(X.shape) < 0.3] = np.nan
    kind = draw(st.sampled_from(["float64", "float32", "int", "bool", "list"]))
    if kind == "float32":
        X = X.astype(np.float32)
    elif kind == "int":
        X = np.nan_to_num(X).astype(np.int64)
    elif kind == "bool":
        X = np.nan_to_num(X) > 0
    elif kind == "list":
        X = X.tolist()
    weights = None
    if draw(st.booleans()):
        weights = rng.integers(0, 4, size=n).astype(float)
        weights[-1] = 1.0  # at least one positive weight
    return "good", kind, X, weights


BAD_KINDS = [
    "inf",
    "-inf",
    "too_wide",
    "too_narrow",
    "strings",
    "object",
    "ragged",
    "complex",
    "empty",
    "one_dimensional",
    "three_dimensional",
    "negative_weight",
    "nan_weight",
    "inf_weight",
    "short_weights",
    "string_weights",
    "sparse_with_mean",
    "none",
]


@st.composite
def bad_batches(draw):
    kind = draw(st.sampled_from(BAD_KINDS))
    n = draw(st.integers(1, 4))
    X = np.ones((n, N_FEATURES))
    w = None
    if kind in ("inf", "-inf"):
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, N_FEATURES - 1))] = float(
            kind
        )
    elif kind == "too_wide":
        X = np.ones((n, N_FEATURES + 1))
    elif kind == "too_narrow":
        X = np.ones((n, N_FEATURES - 1))
    elif kind == "strings":
        X = np.full((n, N_FEATURES), "a")
    elif kind == "object":
        X = np.array([[1.0, "x", None]] * n, dtype=object)
    elif kind == "ragged":
        X = [[1.0, 2.0, 3.0], [1.0, 2.0]]
    elif kind == "complex":
        X = np.ones((n, N_FEATURES)) + 1j
    elif kind == "empty":
        X = np.empty((0, N_FEATURES))
    elif kind == "one_dimensional":
        X = np.ones(N_FEATURES)
    elif kind == "three_dimensional":
        X = np.ones((n, N_FEATURES, 2))
    elif kind == "negative_weight":
        w = np.ones(n)
        w[0] = -0.5
    elif kind == "nan_weight":
        w = np.ones(n)
        w[0] = np.nan
    elif kind == "inf_weight":
        w = np.ones(n)
        w[0] = np.inf
    elif kind == "short_weights":
        w = np.ones(n + 1)
    elif kind == "string_weights":
        w = ["a"] * n
    elif kind == "sparse_with_mean":
        X = sp.csr_matrix(X)
    elif kind == "none":
        X = None
    return "bad", kind, X, w


streams = st.lists(st.one_of(good_batches(), bad_batches()), min_size=1, max_size=12)


@pytest.mark.parametrize("mode", list(MODES))
@given(items=streams)
def test_bad_batches_change_nothing(mode, items):
    fuzzed = BatchNormalizer(**MODES[mode])
    clean = BatchNormalizer(**MODES[mode])
    FUZZ_COUNTS["streams run"] += 1
    for status, kind, X, w in items:
        if status == "good" and mode == "momentum" and len(X) == 1:
            status, kind = "bad", "one_row_in_momentum_mode"
        if status == "good":
            fuzzed.partial_fit(X, sample_weight=w)
            clean.partial_fit(X, sample_weight=w)
            FUZZ_COUNTS["good batches"] += 1
        elif kind in ("too_wide", "too_narrow") and not hasattr(fuzzed, "mean_"):
            continue  # a width is wrong only once the stream has one
        else:
            before = fitted_state(fuzzed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. ComplexWarning
                with pytest.raises((ValueError, TypeError)) as info:
                    fuzzed.partial_fit(X, sample_weight=w)
            # The message says something, not just the type.
            assert len(str(info.value)) > 20, (kind, info.value)
            assert fitted_state(fuzzed) == before, kind
            FUZZ_COUNTS[f"bad batches rejected ({kind})"] += 1
            FUZZ_COUNTS["bad batches rejected (all kinds)"] += 1
        assert fitted_state(fuzzed) == fitted_state(clean)
    if hasattr(clean, "mean_"):
        probe = np.array([[0.5, 1e6, -5.0], [np.nan, 2e6, 0.0]])
        np.testing.assert_array_equal(fuzzed.transform(probe), clean.transform(probe))
    FUZZ_COUNTS["state lost"] += int(fitted_state(fuzzed) != fitted_state(clean))


@given(items=streams)
def test_bad_batches_with_feature_names_change_nothing(items):
    pd = pytest.importorskip("pandas")
    columns = ["a", "b", "c"]
    fuzzed, clean = BatchNormalizer(), BatchNormalizer()
    for status, _kind, X, w in items:
        if status != "good":
            continue
        frame = pd.DataFrame(np.asarray(X, dtype=float), columns=columns)
        fuzzed.partial_fit(frame, sample_weight=w)
        clean.partial_fit(frame, sample_weight=w)
        renamed = frame.rename(columns={"b": "B"})
        before = fitted_state(fuzzed)
        with pytest.raises(ValueError, match="feature names"):
            fuzzed.partial_fit(renamed)
        assert fitted_state(fuzzed) == before
        FUZZ_COUNTS["bad batches rejected (renamed columns)"] += 1
        FUZZ_COUNTS["bad batches rejected (all kinds)"] += 1
    assert fitted_state(fuzzed) == fitted_state(clean)


def test_the_fuzz_rejected_every_kind_of_bad_batch_and_lost_nothing():
    """The figures tests/README.md states, asserted on this run's counts.

    Runs after the fuzz tests above (pytest keeps the order of a module); on
    its own it has nothing to check and says so.
    """
    if not FUZZ_COUNTS["streams run"]:
        pytest.skip("run together with the fuzz tests of this module")
    assert FUZZ_COUNTS["state lost"] == 0
    for kind in [*BAD_KINDS, "renamed columns", "one_row_in_momentum_mode"]:
        assert FUZZ_COUNTS[f"bad batches rejected ({kind})"] > 0, kind
    assert FUZZ_COUNTS["good batches"] >= FUZZ_COUNTS["streams run"]
    # The default profile: 100 examples for each of the three modes.
    assert FUZZ_COUNTS["streams run"] >= 300
