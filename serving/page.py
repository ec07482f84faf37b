"""The page at ``/``: type a text, see the label(s) with probability bars and the text with each
token shaded by its score (:mod:`serving/ui`).

The page is three small static files served from this package (no CDN: it works with no
network). Its script calls only the REST API that every client uses: ``GET /v1/models/NAME``
for the version, ``:predict`` with ``serving_default`` for the decision and with the ``explain``
signature for the scores. The one thing the REST API cannot tell it, which models this server
has, is written into the page when it is served.
"""

from __future__ import annotations

import json
import os

UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui")
FILES = {"app.js": "text/javascript", "style.css": "text/css"}  # what /ui/ serves; nothing else


def index_html(model_names) -> bytes:
    """index.html with the served models' names in its ``<script id="models">`` JSON."""
    with open(os.path.join(UI_DIR, "index.html"), encoding="utf-8") as f:
        page = f.read()
    # Inside <script> nothing is unescaped, so a '<' is written as JSON's \u003c, never as "</script>".
    names = json.dumps(sorted(model_names), ensure_ascii=False).replace("<", "\\u003c")
    return page.replace("__MODELS__", names).encode("utf-8")


def static_file(name: str) -> tuple[bytes, str] | None:
    """(body, content type) of ``/ui/<name>``, or None when it is not one of the page's files."""
    if name not in FILES:
        return None
    with open(os.path.join(UI_DIR, name), "rb") as f:
        return f.read(), FILES[name]
