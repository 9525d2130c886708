"""Sphinx configuration of the sknorm documentation.

Build it (warnings are errors, cross-references are checked)::

    python -m sphinx -W -b html docs docs/_build/html

Environment variables:

- ``SKNORM_QUICK=1``: the gallery runs every example in its quick mode (the
  examples read this variable themselves), as CI does.
- ``SKNORM_DOCS_INTERSPHINX=1``: link to the documentation of Python, NumPy,
  SciPy, scikit-learn, pandas and Dask. Needs the network to download their
  inventories; without it, references to those projects stay plain text.

``-D plot_gallery=0`` builds the gallery pages without running the examples.
"""

import builtins
import os
import sys
from pathlib import Path

from numpydoc.xref import DEFAULT_LINKS

import sknorm

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

# -- project -------------------------------------------------------------------

project = "sknorm"
author = "The sknorm developers"
copyright = "The sknorm developers"
version = release = sknorm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sknorm_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_gallery_src",  # the examples as sphinx-gallery reads them (sknorm_docs)
    "gallery_header.rst",  # copied there as the gallery's header
    "Thumbs.db",
    ".DS_Store",
]
default_role = "literal"
pygments_style = "sphinx"

# Every cross-reference must resolve. References to other projects resolve
# through intersphinx, which needs the network; without it they cannot, and
# are left as plain text: only those (never sknorm's own) are ignored below.
nitpicky = True
INTERSPHINX = os.environ.get("SKNORM_DOCS_INTERSPHINX") == "1"
EXTERNAL_PACKAGES = (
    "numpy",
    "scipy",
    "sklearn",
    "pandas",
    "polars",
    "dask",
    "distributed",
    "joblib",
    "torch",
    "skops",
)
EXTERNAL_INVENTORIES = ("python", "numpy", "scipy", "sklearn", "pandas", "dask")
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "dask": ("https://docs.dask.org/en/stable", None),
    }
    intersphinx_timeout = 30
    nitpick_ignore_regex = []
else:
    _packages = "|".join(EXTERNAL_PACKAGES)
    _inventories = "|".join(EXTERNAL_INVENTORIES)
    _builtins = "|".join(name for name in dir(builtins) if not name.startswith("_"))
    nitpick_ignore_regex = [
        # Objects of other packages, by their dotted names (np. is numpy).
        (r"py:.*", rf"({_packages}|np)(\..+)?"),
        # Python's builtins (int, float, tuple, ValueError, ...).
        (r"py:.*", rf"({_builtins})"),
        # Explicit inventory references (numpydoc writes python:list, ...).
        (r".*", rf"({_inventories}):.+"),
        # sknorm has no glossary: a term is another project's (scikit-learn's
        # "fit" in the docstrings of the properties it inherits, ...).
        (r"std:term", r".+"),
    ]
# The methods an estimator inherits from scikit-learn are documented with their
# docstrings, which refer to scikit-learn's labels and glossary: resolved by
# intersphinx when it is on, left as plain text otherwise (sknorm_docs).
sknorm_skip_foreign_references = not INTERSPHINX

# -- autodoc, autosummary, numpydoc ----------------------------------------------

autosummary_generate = False  # sknorm_docs writes the API pages itself
autodoc_typehints = "none"  # the numpydoc sections say the types
autodoc_member_order = "groupwise"
autodoc_inherit_docstrings = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Types in Parameters and Returns link to the objects named below and to
# sknorm's public names; other words stay plain text.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {
    "ndarray": "numpy.ndarray",
    "DataFrame": "pandas.DataFrame",
    "RandomState": "numpy.random.RandomState",
    "Bunch": "sklearn.utils.Bunch",
    "estimator": "sklearn.base.BaseEstimator",
    **{name: f"sknorm.{name}" for name in sknorm.__all__ if not name.startswith("_")},
}
if not INTERSPHINX:
    # numpydoc links these words (float, None, array-like, ...) into Python's
    # and NumPy's inventories, which are not loaded: show them as words.
    numpydoc_xref_aliases.update(
        {
            word: word
            for word, link in DEFAULT_LINKS.items()
            if "python:" in link or "numpy:" in link
        }
    )

# -- sphinx-gallery --------------------------------------------------------------

sknorm_examples_dir = "../examples"
sknorm_gallery_header = "gallery_header.rst"
sphinx_gallery_conf = {
    "examples_dirs": "_gallery_src",  # a copy of ../examples (sknorm_docs)
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "sknorm_docs.ExampleOrder",
    # The examples leave their figures open after saving them: the
    # matplotlib scraper shows every open figure under the cell that drew it.
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
    "doc_module": ("sknorm",),
    "backreferences_dir": "api/generated/backreferences",
    "reference_url": {"sknorm": None},
    "download_all_examples": False,
    "min_reported_time": 1,
}

# -- MyST (the benchmark and test READMEs are included as they are) --------------

myst_heading_anchors = 3

# -- HTML --------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sknorm {release}"
html_show_sourcelink = False
html_theme_options = {
    "github_url": "https://github.com/sknorm/sknorm",
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": {
        "auto_examples/plot_*": ["page-toc", "sg_download_links"],
    },
}
# Pages without sub-pages need no navigation column.
html_sidebars = {
    page: [] for page in ("index", "install", "benchmarks", "testing", "changelog")
}
html_context = {"default_mode": "light"}
