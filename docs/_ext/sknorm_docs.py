"""Sphinx extension of the sknorm documentation.

- The API reference is driven by ``sknorm.__all__``: one page per public name
  is written into ``api/generated/`` when the build starts, the directive
  ``sknorm-api-summary`` lists them by section, and the build fails if a
  public name ends up without its page (so a class added to ``__all__``
  appears without editing the docs, and one that cannot be documented stops
  the build).
- The estimators' HTML representation links to these pages (scikit-learn's
  ``_doc_link_module`` / ``_doc_link_template``): once they are set, the build
  checks that every link names the page of its class.
- The gallery is built from a copy of ``examples/`` with the gallery's header
  added, so that sphinx-gallery finds the header it needs and the figures the
  examples save land in the build tree instead of ``examples/``.
"""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from docutils.utils import get_source_line
from sklearn.base import BaseEstimator
from sphinx.errors import SphinxError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import sknorm

logger = logging.getLogger(__name__)


class APIReferenceError(SphinxError):
    """The API reference does not cover the public API."""

    category = "sknorm API reference"


# Where the generated pages go, relative to the documentation's source.
API_DIR = "api/generated"

# Sections of the API reference, in order. A public name that no section lists
# goes to the last one, so new classes appear without editing this; a listed
# name that is not (yet) public is left out.
API_SECTIONS = [
    (
        "Per-feature normalizers",
        "Learn each feature's statistics from a stream of mini-batches.",
        [
            "BatchNormalizer",
            "RobustNormalizer",
            "QuantileNormalizer",
        ],
    ),
    (
        "Per-sample normalizers",
        "Normalize every row (or group of features of a row) with its own statistics.",
        [
            "LayerNormalizer",
            "GroupNormalizer",
            "invert_group_normalization",
            "GroupStats",
        ],
    ),
    (
        "Imputation",
        "Replace missing values with statistics learned from a stream.",
        ["StreamingImputer"],
    ),
    (
        "Streaming composites",
        "scikit-learn's composites with ``partial_fit``.",
        [
            "StreamingPipeline",
            "make_streaming_pipeline",
            "StreamingColumnTransformer",
            "make_streaming_column_transformer",
            "StreamingFeatureUnion",
            "make_streaming_union",
        ],
    ),
    (
        "Exceptions",
        "",
        ["SparseCenteringError"],
    ),
]
OTHER_SECTION = ("Other public names", "")


def public_names() -> list[str]:
    """The documented names: ``sknorm.__all__`` without ``__version__``."""
    return [name for name in sknorm.__all__ if not name.startswith("__")]


def api_sections() -> list[tuple[str, str, list[str]]]:
    """The sections of the API reference, each with the public names it holds."""
    public = public_names()
    listed = {name for _, _, names in API_SECTIONS for name in names}
    sections = [
        (title, text, [name for name in names if name in public])
        for title, text, names in API_SECTIONS
    ]
    others = [name for name in public if name not in listed]
    if others:
        sections.append((*OTHER_SECTION, others))
    return [section for section in sections if section[2]]


def page_name(name: str) -> str:
    """The document name of a public name's page."""
    return f"{API_DIR}/sknorm.{name}"


def stub_text(name: str) -> str:
    """The reStructuredText of a public name's page."""
    try:
        obj = getattr(sknorm, name)
    except AttributeError:
        raise APIReferenceError(
            f"sknorm.__all__ lists {name!r}, which sknorm does not define."
        ) from None
    title = f"{name}\n{'=' * len(name)}\n\n.. currentmodule:: sknorm\n\n"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        body = f".. autoexception:: {name}\n"
    elif inspect.isclass(obj) and issubclass(obj, BaseEstimator):
        # Inherited methods (fit_transform, set_output, get_params, ...) are
        # part of what a user calls, so they are listed too.
        body = f".. autoclass:: {name}\n   :members:\n   :inherited-members:\n"
    elif inspect.isclass(obj):
        body = f".. autoclass:: {name}\n   :members:\n"
    elif callable(obj):
        body = f".. autofunction:: {name}\n"
    else:
        body = f".. autodata:: {name}\n"
    gallery = (
        f"\n.. minigallery:: sknorm.{name}\n"
        f"   :add-heading: Examples using ``sknorm.{name}``\n"
    )
    return title + body + gallery


def write_api_stubs(app) -> None:
    """Write one page per public name; remove pages of names no longer public.

    A page is rewritten only when its text changes, so that an incremental
    build does not read it again for nothing.
    """
    directory = Path(app.srcdir) / API_DIR
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {f"sknorm.{name}.rst": stub_text(name) for name in public_names()}
    for path in directory.glob("sknorm.*.rst"):
        if path.name not in wanted:
            path.unlink()
    for filename, text in wanted.items():
        path = directory / filename
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


class APISummary(SphinxDirective):
    """``.. sknorm-api-summary::``: the sections of the API reference.

    Each section is an autosummary table of its public names whose toctree
    holds their generated pages.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = []
        for title, text, names in api_sections():
            lines += [title, "-" * len(title), ""]
            if text:
                lines += [text, ""]
            lines += [
                ".. autosummary::",
                f"   :toctree: {Path(API_DIR).name}/",
                "   :nosignatures:",
                "",
                *(f"   {name}" for name in names),
                "",
            ]
        container = nodes.section()
        container.document = self.state.document
        source = self.get_source_info()[0]
        content = StringList(lines, source=source)
        nested_parse_with_titles(self.state, content, container)
        return container.children


def check_api_pages(app, env) -> None:
    """Fail the build unless every public name has its page, in the toctree,
    documenting the object under its public name."""
    domain_objects = env.get_domain("py").objects
    in_toctree = set()
    for children in env.toctree_includes.values():
        in_toctree.update(children)
    problems = []
    for name in public_names():
        docname = page_name(name)
        if docname not in env.found_docs:
            problems.append(f"{name}: no page {docname}")
        elif docname not in in_toctree:
            problems.append(f"{name}: page {docname} is in no toctree")
        elif f"sknorm.{name}" not in domain_objects:
            problems.append(f"{name}: its page documents no object sknorm.{name}")
    if problems:
        raise APIReferenceError(
            "The API reference misses public names of sknorm.__all__:\n  "
            + "\n  ".join(problems)
        )


def check_doc_links(app, env) -> None:
    """The HTML repr of each public estimator links to its page, if it links.

    scikit-learn builds the link from ``_doc_link_template``; sknorm's are
    checked only once ``_doc_link_module`` says they are sknorm's.
    """
    problems = []
    unset = []
    for name in public_names():
        cls = getattr(sknorm, name)
        if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)):
            continue
        if getattr(cls, "_doc_link_module", None) != "sknorm":
            unset.append(name)
            continue
        # The link depends only on class attributes: no constructor needed.
        link = cls._get_doc_link(object.__new__(cls))
        expected = f"/{page_name(name)}.html"
        if not link.endswith(expected):
            problems.append(f"{name}: links to {link!r}, not to ...{expected}")
    if problems:
        raise APIReferenceError(
            "Estimator HTML repr links do not name their API page:\n  "
            + "\n  ".join(problems)
        )
    if unset:
        logger.info(
            "sknorm_docs: no documentation link set yet for: " + ", ".join(unset)
        )


# A field of numpydoc's output: ``**name** : type`` (or a linked attribute
# name, ``:obj:`name_ <.name_>` : type``).
_FIELD = re.compile(r"^(\s*(?:\*\*[^*]+\*\*|:obj:`[^`]+`) : )(.+)$")
_LITERAL_OR_ROLE = re.compile(r"(`[^`]*`)")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[\s,;)\]]|$)")


def escape_underscores_in_types(app, what, name, obj, options, lines) -> None:
    """Escape the underscore that ends a name in a numpydoc type.

    A type such as ``ndarray of shape (n_features_in_,)`` is written into the
    page as reStructuredText, where ``n_features_in_`` would be a link to a
    target of that name. numpydoc has rendered the docstring at this point.
    """
    for i, line in enumerate(lines):
        match = _FIELD.match(line)
        if match is None:
            continue
        head, field_type = match.groups()
        parts = _LITERAL_OR_ROLE.split(field_type)
        parts[::2] = [_TRAILING_UNDERSCORE.sub(r"\\_", part) for part in parts[::2]]
        lines[i] = head + "".join(parts)


def skip_foreign_docstring_reference(app, env, node, contnode):
    """Without intersphinx, show references written in other projects'
    docstrings as plain text.

    An estimator's page lists the methods it inherits from scikit-learn, whose
    docstrings refer to scikit-learn's own labels and glossary
    (``metadata_routing``, ``meta-estimator``); intersphinx resolves them
    when it is on. References in sknorm's docstrings are always checked.
    """
    if not app.config.sknorm_skip_foreign_references:
        return None
    source = get_source_line(node)[0] or ""
    _, _, owner = source.partition("docstring of ")
    if owner and _written_outside_sknorm(owner):
        return contnode  # resolved, to its own text: no warning
    return None


def _written_outside_sknorm(owner: str) -> bool:
    """Whether the docstring of ``owner`` (a dotted name) is another project's.

    autodoc names an inherited property after the class that inherits it
    (``sknorm.StreamingFeatureUnion.n_features_in_``): the class of the MRO
    that defines the member tells whose docstring it is.
    """
    parts = owner.split(".")
    if parts[0] != "sknorm":
        return True
    cls = getattr(sknorm, parts[1], None) if len(parts) == 3 else None
    if inspect.isclass(cls):
        for klass in cls.__mro__:
            if parts[2] in vars(klass):
                return klass.__module__.split(".")[0] != "sknorm"
    return False


class ExampleOrder:
    """Sort key of the gallery: the examples in reading order, from why
    normalize to the integrations; an example not listed comes last."""

    ORDER = [
        "plot_feature_dominance.py",
        "plot_precision.py",
        "plot_modes.py",
        "plot_streaming_mlp.py",
        "plot_tabular_stream.py",
        "plot_robust_stream.py",
        "plot_quantile_stream.py",
        "plot_group_norm.py",
        "plot_dask_cluster.py",
    ]

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple:
        if filename in self.ORDER:
            return (0, self.ORDER.index(filename), filename)
        return (1, 0, filename)


def stage_gallery_sources(app, config) -> None:
    """Copy ``examples/*.py`` and the gallery header where sphinx-gallery reads.

    Files are copied only when they changed (sphinx-gallery then skips
    examples that ran before), and copies of removed examples are deleted.
    """
    srcdir = Path(app.srcdir)
    examples = (srcdir / config.sknorm_examples_dir).resolve()
    stage = srcdir / config.sphinx_gallery_conf["examples_dirs"]
    stage.mkdir(parents=True, exist_ok=True)
    wanted = {path.name: path for path in sorted(examples.glob("*.py"))}
    wanted["GALLERY_HEADER.rst"] = srcdir / config.sknorm_gallery_header
    for path in stage.iterdir():
        if path.is_file() and path.name not in wanted:
            path.unlink()
    for filename, source in wanted.items():
        target = stage / filename
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)


def setup(app):
    app.add_config_value("sknorm_examples_dir", "../examples", "env")
    app.add_config_value("sknorm_gallery_header", "gallery_header.rst", "env")
    app.add_config_value("sknorm_skip_foreign_references", False, "env")
    # After sphinx-gallery has filled in its defaults (priority 10).
    app.connect("config-inited", stage_gallery_sources, priority=50)
    app.connect("builder-inited", write_api_stubs)
    app.add_directive("sknorm-api-summary", APISummary)
    app.connect("env-check-consistency", check_api_pages)
    app.connect("env-check-consistency", check_doc_links)
    app.connect("missing-reference", skip_foreign_docstring_reference)
    # Before numpydoc renders the docstring (priority 500), then after.
    app.connect("autodoc-process-docstring", escape_underscores_in_types, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
