"""The explorer's web pages (docs/explorer.md, "Pages"): plain HTML served here, filled in by plain JavaScript
modules under ``static/`` that call ``/api/v1``. No build step, nothing from a CDN: plotly.js is served by the app
at ``/static/plotly.min.js`` (from the plotly wheel), so the pages work offline.

Each page is ``templates/<page>.html`` (its ``<main>``) inside ``templates/base.html``. Nothing from a request is
written into a page except the object id of ``/objects/{id}``, HTML-escaped into a data attribute; every value the
API returns is put into the DOM by the scripts as text (``textContent``), never as markup.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

TEMPLATES = Path(__file__).with_name("templates")
# page -> (title, the script module that fills it in)
PAGES = {
    "home": ("Nightly summary and latest candidates", "home.js"),
    "candidates": ("Candidates", "candidates.js"),
    "object": ("Object", "object.js"),
    "cone": ("Cone search", "cone.js"),
    "sql": ("SQL console", "sql.js"),
}
NAV = (("/", "Home"), ("/candidates", "Candidates"), ("/cone", "Cone search"), ("/sql", "SQL"))

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


def render(page: str, data: dict[str, str] | None = None) -> str:
    """The page's HTML: its body in the shared layout; ``data`` becomes ``data-*`` attributes of ``<main>``
    (escaped), the one way a value reaches a page other than through the API."""
    title, script = PAGES[page]
    attrs = "".join(f' data-{key}="{html.escape(value, quote=True)}"' for key, value in (data or {}).items())
    current = ' aria-current="page"'
    nav = "\n".join(f'      <a href="{href}"{current if href == _path_of(page) else ""}>{label}</a>'
                    for href, label in NAV)
    return _template("base").substitute(
        title=html.escape(title), page=page, attrs=attrs, nav=nav, body=_template(page).template, script=script)


def _path_of(page: str) -> str:
    return {"home": "/", "object": ""}.get(page, f"/{page}")


@router.get("/")
def home() -> str:
    return render("home")


@router.get("/candidates")
def candidates() -> str:
    return render("candidates")


@router.get("/objects/{object_id}")
def object_page(object_id: str) -> str:
    """The page of any id: the script asks the API, which answers 404 with a clear message for an unknown one."""
    return render("object", {"object-id": object_id})


@router.get("/cone")
def cone() -> str:
    return render("cone")


@router.get("/sql")
def sql() -> str:
    return render("sql")
