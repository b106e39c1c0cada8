"""The explorer's ASGI app: :func:`create_app` assembles the API (``/api/v1``), the IVOA cone search (``/scs``),
the pages (``/``) and their static files (``/static``, plotly.js from the plotly wheel), behind one optional token.

Errors are one line, ``{"detail": "..."}``: 422 names the malformed parameter, 503 says to run `ateda refresh` when
nothing is published yet. With ``ATEDA_EXPLORER_TOKEN`` set every request (pages, static files and the OpenAPI spec
included) needs ``Authorization: Bearer <token>`` or ``?token=<token>``; an answer to a request that showed the token
sets an HttpOnly, SameSite=Strict session cookie (a keyed hash of the token, never the token), so a browser that opened
``/?token=...`` once loads the pages' scripts, style sheet and stamp images, which cannot carry a header.
"""

from __future__ import annotations

import hmac
from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ateda.config import Settings
from ateda.errors import ConfigError
from ateda.explorer import api, pages, scs
from ateda.explorer.starrocks import StarRocksStore
from ateda.explorer.store import NoWarehouse, Store
from ateda.warehouse.location import WarehouseError

STATIC = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/v1"


def plotly_js() -> Path:
    """plotly.min.js as the installed plotly wheel ships it (never from a CDN)."""
    spec = find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("plotly is not installed (pip install 'ateda[explorer]')")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def create_app(settings: Settings) -> FastAPI:
    """The explorer over ``settings``' published warehouse."""
    app = FastAPI(title="ATEDA explorer", version="1",
                  description="Astronomical alerts (ZTF, Rubin) from the ATEDA lakehouse: objects, light curves, "
                              "stamps, cone search (also IVOA SCS 1.03 at /scs), nightly summaries, read-only SQL. "
                              "64-bit identifiers are JSON strings.")
    app.state.settings = settings
    app.state.store = open_store(settings)
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(scs.router)
    app.include_router(pages.router)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_line(exc)}, status_code=422)

    @app.exception_handler(NoWarehouse)
    async def no_warehouse(request: Request, exc: NoWarehouse) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(WarehouseError)
    async def warehouse_error(request: Request, exc: WarehouseError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=503)

    token = settings.explorer.token
    if token:
        @app.middleware("http")
        async def require_token(request: Request, call_next):  # noqa: ANN001, ANN202
            session = _session_value(token)
            if _token_ok(request, token):
                response = await call_next(request)
                response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
                return response
            if hmac.compare_digest(request.cookies.get(SESSION_COOKIE, "").encode(), session.encode()):
                return await call_next(request)
            return JSONResponse({"detail": "this explorer needs its token: Authorization: Bearer <token>"},
                                status_code=401, headers={"www-authenticate": "Bearer"})
    return app


SESSION_COOKIE = "ateda_session"
BACKENDS = {"duckdb": Store, "starrocks": StarRocksStore}


def open_store(settings: Settings) -> Store | StarRocksStore:
    """The store of ``ATEDA_EXPLORER_BACKEND``: duckdb (the published local file, :mod:`ateda.explorer.store`) or
    starrocks (the cluster's warehouse, :mod:`ateda.explorer.starrocks`)."""
    backend = settings.explorer.backend.strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"ATEDA_EXPLORER_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return BACKENDS[backend](settings)


def _session_value(token: str) -> str:
    """The session cookie's value: a keyed hash of the token (the cookie never holds the token itself)."""
    return hmac.new(token.encode(), b"ateda-explorer-session", "sha256").hexdigest()


def _token_ok(request: Request, token: str) -> bool:
    given = request.query_params.get("token") or ""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), token.encode())


def validation_line(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line naming each parameter: ``ra: Input should be a valid number``."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body", "header")]
        name = ".".join(loc) or "request"
        given = err.get("input")
        shown = f" (got {given!r})" if isinstance(given, (str, int, float)) and len(repr(given)) < 60 else ""
        parts.append(f"{name}: {err.get('msg', 'invalid')}{shown}")
    return "; ".join(parts) or "malformed request"
