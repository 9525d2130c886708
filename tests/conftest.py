"""Test configuration: hypothesis profiles and the reliability summary.

Profiles (``--hypothesis-profile NAME`` or ``SKNORM_HYPOTHESIS_PROFILE``):

- ``ci`` (default): quick, deterministic (derandomized) runs;
- ``thorough``: thousands of examples for the reliability fuzz tests.
"""

import os
from collections import Counter

from hypothesis import HealthCheck, settings

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

# Filled by the fuzz tests, printed at the end of the run.
FUZZ_COUNTS: Counter = Counter()


def pytest_terminal_summary(terminalreporter):
    if FUZZ_COUNTS:
        terminalreporter.section("sknorm reliability fuzz")
        for key in sorted(FUZZ_COUNTS):
            terminalreporter.write_line(f"{key}: {FUZZ_COUNTS[key]}")
