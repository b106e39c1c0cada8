"""``ateda up``: the embedded runtime (function servers, broker, bucket watcher) in the foreground."""

from __future__ import annotations

import signal
import sys
import time

from prometheus_client import start_http_server

from ateda.config import Settings
from ateda.local.home import RuntimeBusy, gate
from ateda.local.runtime import Runtime


def register(sub) -> None:  # noqa: ANN001
    up = sub.add_parser("up", help="run the runtime (functions, broker, bucket watcher) until stopped; one per "
                                   "ATEDA_HOME (a second one exits with 2, naming the first one's PID)")
    up.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                    help="serve this process's metrics (broker deliveries, dead letters) on this TCP port "
                         "(default 0: not served)")
    up.set_defaults(func=cmd_up)


def _say(line: str) -> None:
    print(f"ateda up: {line}", flush=True)


def cmd_up(args, settings: Settings) -> int:  # noqa: ANN001
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    _say(f"starting on {settings.home}")
    rt = Runtime(settings, progress=_say)
    try:
        with gate(settings.home):  # an ingest deciding to attach waits until this runtime answers
            rt.start()
    except RuntimeBusy as exc:
        print(f"ateda up: {exc}", file=sys.stderr)
        return 2
    try:
        _say("ready. Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        _say("stopping")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second `kill` must not cut the stop short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        rt.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _say("stopped")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
