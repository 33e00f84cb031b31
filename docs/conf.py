"""Sphinx configuration for the flask-observe documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html``. No extension here needs the
network, so the build works offline.
"""

from flask_observe import __version__

project = "flask-observe"
copyright = "2026, the flask-observe developers"
author = "the flask-observe developers"
release = __version__
#: The short X.Y version.
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

exclude_patterns = ["_build"]

autodoc_member_order = "bysource"

html_theme = "alabaster"
html_title = f"flask-observe {release}"
