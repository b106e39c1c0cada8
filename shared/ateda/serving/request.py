"""What every function shares: settings, emitting follow-up events, metrics endpoint, error -> delivery mapping."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from werkzeug.exceptions import abort
from werkzeug.wrappers import Response
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import multiprocess

from ateda.config import settings
from ateda.errors import TransientError
from ateda.events import catalogue as events
from ateda.redact import mask
from ateda.serving.logs import configured_secrets, install_secret_masking
from ateda.serving.metrics import m

log = logging.getLogger("ateda")
_metrics_lock = threading.Lock()
_metrics_started = False


def serve_metrics() -> None:
    """Serve /metrics on ``ATEDA_METRICS_PORT`` (default 9464) once per process.

    With several gunicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` makes the one worker that binds the port serve all.
    """
    global _metrics_started
    with _metrics_lock:
        if _metrics_started:
            return
        _metrics_started = True
        cfg = settings().metrics
        port = cfg.port
        if port <= 0:
            return

        registry = None
        if cfg.multiproc_dir:

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        try:
            if registry is None:
                start_http_server(port, addr=cfg.addr)
            else:
                start_http_server(port, addr=cfg.addr, registry=registry)
        except OSError:  # another worker of this service already serves the (shared) registry
            pass


def emitter(function: str):  # noqa: ANN201
    """``emit(type, data, subject)`` posting to K_SINK, counted per type."""
    source = f"/ateda/{function}"

    def emit(type_: str, data: dict, subject: str) -> None:
        events.post(settings().sink, events.make_event(type_, source, data, subject))
        m().events_out.labels(function, type_).inc()

    return emit


@contextmanager
def request_scope(function: str, event_type: str) -> Iterator[None]:
    """Count and time one request; keep the in-flight gauge true even when the handler raises. A
    :class:`TransientError` answers 500 with its message (secrets masked) as the body, not Flask's generic text:
    Knative keeps that body in the dead letter's ``knativeerrordata``, so the letter says the real cause."""
    serve_metrics()
    install_secret_masking()
    mm = m()
    mm.events_in.labels(function, event_type).inc()
    mm.inflight.labels(function).inc()
    start = time.perf_counter()
    try:
        yield
    except TransientError as exc:
        log.exception("%s: transient failure, answering 500 (the broker retries)", function)
        body = mask(f"{type(exc).__name__}: {exc}", configured_secrets())[:2000]
        abort(Response(body, status=500, mimetype="text/plain"))
    finally:
        mm.inflight.labels(function).dec()
        mm.latency.labels(function, "request").observe(time.perf_counter() - start)
