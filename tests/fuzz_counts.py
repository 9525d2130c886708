"""The counts of the reliability fuzz, shared by its tests and the summary
that ``conftest.py`` prints at the end of the run."""

from collections import Counter

FUZZ_COUNTS: Counter = Counter()
