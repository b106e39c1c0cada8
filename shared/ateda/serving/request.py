"""What every function shares: settings, emitting follow-up events, metrics endpoint, error -> delivery mapping."""

from __future__ import annotations

import functools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from werkzeug.exceptions import abort
from werkzeug.wrappers import Response

from ateda.events import catalogue as events
from ateda.config import settings
from ateda.errors import TransientError
from ateda.serving.metrics import m
from ateda.redact import mask

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
        from prometheus_client import CollectorRegistry, start_http_server

        registry = None
        if cfg.multiproc_dir:
            from prometheus_client import multiprocess

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


@functools.cache
def configure_logging() -> None:
    """Log format and level, and secrets masked in every record of the process (any logger, any handler)."""
    logging.basicConfig(level=settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyiceberg").setLevel(logging.WARNING)
    install_secret_masking()


def configured_secrets() -> tuple[str, ...]:
    """The literal secrets of the current settings (every secret of the table, the catalog URI's password)."""
    try:
        return settings().secrets()
    except Exception:  # noqa: BLE001 - a malformed setting must not stop a log line
        return ()


_masking_installed = False


def install_secret_masking() -> None:
    """Mask secrets (:func:`redact.mask`: URI passwords, ``key=value`` secrets, :func:`configured_secrets`) in the
    message, traceback and stack of every log record when it is made, so no handler (ours, gunicorn's, Flask's)
    ever sees them. Idempotent."""
    global _masking_installed
    with _metrics_lock:
        if _masking_installed:
            return
        _masking_installed = True
    from ateda.redact import mask

    make = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args, **kwargs) -> logging.LogRecord:  # noqa: ANN002, ANN003
        record = make(*args, **kwargs)
        try:
            secrets = configured_secrets()
            record.msg, record.args = mask(record.getMessage(), secrets), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = mask(formatter.formatException(record.exc_info), secrets)
            if record.stack_info:
                record.stack_info = mask(record.stack_info, secrets)
        except Exception:  # noqa: BLE001 - logging must never raise; the record stays as it was
            pass
        return record

    logging.setLogRecordFactory(factory)
