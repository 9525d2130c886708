"""Collection rules for the whole repository (tests and the package's doctests)."""

import importlib.util

# The compiled kernels' module imports numba, an optional extra (``fast``):
# without it there is nothing to collect from it (its doctests need it).
collect_ignore = []
if importlib.util.find_spec("numba") is None:
    collect_ignore.append("sknorm/_numba_kernels.py")
