"""Sphinx configuration of the meanfield guide: ``sphinx-build -W docs docs/_build/html``.

The Markdown pages are read by MyST; the API reference is autodoc/autosummary over
numpydoc docstrings. Two pages are generated at build time by the extensions in
``docs/_ext``: the parameter reference (keys, defaults and who accepts them, from
the code's registries) and the gallery (from ``examples/*.py``).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import meanfield  # noqa: E402  (the installed package being documented)

project = "meanfield"
author = "the meanfield authors"
copyright = "the meanfield authors"
version = release = meanfield.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "mf_docstrings",
    "mf_params",
    "mf_gallery",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "README.md", "**/README.md"]
templates_path = []

# MyST: GitHub-style anchors so the pages' links (models.md#2-the-bilinear-model-...) resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# API reference
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # shapes and types are in the numpydoc sections
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "alabaster"
html_title = f"meanfield {release}"
html_static_path = []
