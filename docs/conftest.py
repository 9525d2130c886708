"""pytest runs the code of these pages: the ``>>>`` examples of every ``.rst``
file (with ``--doctest-glob="*.rst"``). What the build writes, and the build's
own code, are not tests."""

collect_ignore = ["conf.py", "_ext"]
collect_ignore_glob = [
    "_build/*",
    "_gallery_src/*",
    "auto_examples/*",
    "api/generated/*",
]
