"""The explorer's HTML pages (docs/explorer.md, "Pages"): plain HTML and JavaScript over the API, served by the same
app, no build step. Mounted at the root by :func:`ateda.explorer.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
