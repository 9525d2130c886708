"""Test configuration: hypothesis profiles and the reliability summary.

Profiles (``--hypothesis-profile NAME`` or ``SKNORM_HYPOTHESIS_PROFILE``):

- ``ci`` (default): quick, deterministic (derandomized) runs;
- ``thorough``: thousands of examples for the reliability fuzz tests.
"""

import os

# scikit-learn's estimator checks include one that enables array API dispatch
# with NumPy input and compares the results; SciPy needs this variable, read
# when it is first imported, for that check to run instead of being skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")


from fuzz_counts import FUZZ_COUNTS  # noqa: E402  (filled by the fuzz tests)
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("SKNORM_HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    if FUZZ_COUNTS:
        terminalreporter.section("sknorm reliability fuzz")
        for key in sorted(FUZZ_COUNTS):
            terminalreporter.write_line(f"{key}: {FUZZ_COUNTS[key]}")
