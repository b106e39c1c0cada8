"""What every function shares: settings, emitting follow-up events, metrics endpoint, error -> delivery mapping."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from . import events
from .config import settings
from .metrics import m

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
        port = int(os.environ.get("ATEDA_METRICS_PORT", "9464"))
        if port <= 0:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        try:
            if registry is None:
                start_http_server(port, addr=os.environ.get("ATEDA_METRICS_ADDR", "0.0.0.0"))
            else:
                start_http_server(port, addr=os.environ.get("ATEDA_METRICS_ADDR", "0.0.0.0"), registry=registry)
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
    """Count and time one request; keep the in-flight gauge true even when the handler raises."""
    serve_metrics()
    mm = m()
    mm.events_in.labels(function, event_type).inc()
    mm.inflight.labels(function).inc()
    start = time.perf_counter()
    try:
        yield
    finally:
        mm.inflight.labels(function).dec()
        mm.latency.labels(function, "request").observe(time.perf_counter() - start)


@functools.cache
def configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("ATEDA_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyiceberg").setLevel(logging.WARNING)
