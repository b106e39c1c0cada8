"""``ateda up``: the embedded runtime (function servers, broker, bucket watcher) in the foreground."""

from __future__ import annotations

import signal
import time

from prometheus_client import start_http_server

from ateda.config import Settings
from ateda.local.runtime import Runtime


def register(sub) -> None:  # noqa: ANN001
    up = sub.add_parser("up", help="run the runtime (functions, broker, bucket watcher) until stopped")
    up.add_argument("--metrics-port", type=int, default=0,
                    help="serve this process's metrics (broker deliveries, dead letters) on this port")
    up.set_defaults(func=cmd_up)


def cmd_up(args, settings: Settings) -> int:  # noqa: ANN001
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    with Runtime(settings) as rt:
        print(f"ateda up: broker {rt.sink}; bucket {settings.bucket_root / settings.bucket if not settings.uses_s3 else settings.bucket}; "
              f"home {settings.home}. Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
