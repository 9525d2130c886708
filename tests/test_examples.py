"""Smoke test: every script in examples/ runs in its quick mode and prints its table.

Each example runs in a subprocess with ``SKNORM_QUICK=1`` (a tiny run) in a
temporary working directory, where it writes its PNG when matplotlib is
installed.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# The header line of the table each example prints. An example that is not
# listed must still print a table: a line of at least two columns separated by
# two or more spaces.
HEADERS = {
    "plot_precision.py": r"method\s+max rel\. error of var_\s+time \(s\)",
    "plot_feature_dominance.py": r"data set\s+model\s+test accuracy\s+epochs to 90%",
    "plot_streaming_mlp.py": r"model\s+before drift\s+right after\s+end",
    "plot_modes.py": r"mode\s+mean_ error\s+scale_ error",
    "plot_group_norm.py": r"data set\s+normalizer\s+test accuracy\s+time \(s\)",
    "plot_robust_stream.py": r"normalizer\s+center\s+scale\s+test accuracy",
    "plot_dask_cluster.py": r"workers\s+fit \(s\)\s+transform \(s\)",
    "plot_quantile_stream.py": r"normalizer\s+test R\^2\s+time \(s\)",
    "plot_tabular_stream.py": r"rows streamed\s+prequential accuracy\s+test accuracy",
}
ANY_TABLE_HEADER = r"\S+ {2,}\S+"

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

# An example may need an optional extra (e.g. dask). Without it, it exits with
# a ModuleNotFoundError or with a hint to `pip install "sknorm[extra]"`, and
# the test is skipped.
REQUIRED_PACKAGES = {"sknorm", "sklearn", "numpy", "scipy"}


def missing_optional_package(stderr):
    """The optional package or extra an example said it lacks, or None."""
    extra = re.search(r"pip install \S*sknorm\[(\w+)\]", stderr)
    if extra:
        return f"sknorm[{extra[1]}]"
    module = re.search(r"ModuleNotFoundError: No module named '(\w+)", stderr)
    if module and module[1] not in REQUIRED_PACKAGES:
        return module[1]
    return None


def test_examples_are_found():
    names = {path.name for path in EXAMPLES}
    assert {"plot_precision.py", "plot_feature_dominance.py"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_and_prints_its_table(script, tmp_path):
    env = dict(os.environ, SKNORM_QUICK="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    missing = missing_optional_package(result.stderr)
    if result.returncode != 0 and missing:
        pytest.skip(f"{script.name} needs the optional {missing}, not installed")
    assert result.returncode == 0, result.stderr[-3000:]
    header = HEADERS.get(script.name, ANY_TABLE_HEADER)
    assert re.search(header, result.stdout, flags=re.MULTILINE), result.stdout
    if HAS_MATPLOTLIB:
        assert list(tmp_path.glob("*.png")), "the example saved no PNG figure"
