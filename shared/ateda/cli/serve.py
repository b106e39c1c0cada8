"""``ateda serve``: the explorer (HTTP API, IVOA cone search, web pages) over the published local warehouse, on
uvicorn (docs/explorer.md). Beyond loopback only with a token (``ATEDA_EXPLORER_TOKEN``)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import uvicorn

from ateda.config import Settings
from ateda.errors import ConfigError
from ateda.explorer.app import create_app


def register(sub) -> None:  # noqa: ANN001
    s = sub.add_parser("serve", help="serve the explorer: the HTTP API (/api/v1, OpenAPI at /docs), the IVOA cone "
                                     "search (/scs) and the web pages over the local warehouse")
    s.add_argument("--host", default=None, help="address to listen on (default ATEDA_EXPLORER_HOST, 127.0.0.1); "
                                                "beyond loopback only with ATEDA_EXPLORER_TOKEN set")
    s.add_argument("--port", type=int, default=None, help="port (default ATEDA_EXPLORER_PORT, 8080)")
    s.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args, settings: Settings) -> int:  # noqa: ANN001
    host = args.host or settings.explorer.host
    port = args.port if args.port is not None else settings.explorer.port
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: must be within 1..65535")
    if not is_loopback(host) and not settings.explorer.token:
        raise ConfigError(f"refusing to listen on {host} without ATEDA_EXPLORER_TOKEN (anyone there could read "
                          "the warehouse); give the explorer a token, or listen on 127.0.0.1")
    settings = replace(settings, explorer=replace(settings.explorer, host=host, port=port))
    app = create_app(settings)  # a bad setting (the backend's name...) stops here, before the line below says "on"
    print(f"ateda explorer on http://{host}:{port}/ (API /api/v1, spec /openapi.json, cone search /scs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
