"""What every function shares: the request scope (metrics, and the one error -> delivery mapping), emitting
follow-up events, the metrics endpoint."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from werkzeug.exceptions import abort
from werkzeug.wrappers import Response

from ateda.config import settings
from ateda.errors import BadInput, TransientError
from ateda.events import catalogue as events, transport
from ateda.redact import mask
from ateda.serving.logs import configured_secrets, install_secret_masking
from ateda.serving.metrics import instruments

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
    """``emit(type, data, subject, survey=None)`` posting to K_SINK, counted per type; ``survey`` becomes the
    event's ``survey`` extension attribute."""
    source = f"/ateda/{function}"

    def emit(type_: str, data: dict, subject: str, survey: str | None = None) -> None:
        transport.post(settings().sink, events.make_event(type_, source, data, subject, {events.SURVEY: survey}))
        instruments().events_out.labels(function, type_).inc()

    return emit


@contextmanager
def request_scope(function: str, event_type: str, bad_input_status: int = 200) -> Iterator[None]:
    """Count and time one request, and map the package's errors to delivery semantics: the one place that does.

    * :class:`BadInput` (the event itself can never be processed; the step quarantined what it could): counted as
      rejected with its reason, never retried. Answered 2xx (acknowledged) unless ``bad_input_status`` is a 4xx,
      which is then answered with the reason as the body.
    * :class:`TransientError` (store, catalog or broker unavailable): 500 with its message (secrets masked) as the
      body, not Flask's generic text: the broker retries, and Knative keeps that body in the dead letter's
      ``knativeerrordata``, so the letter says the real cause.

    The in-flight gauge stays true whatever the handler raises.
    """
    serve_metrics()
    install_secret_masking()
    mm = instruments()
    mm.events_in.labels(function, event_type).inc()
    mm.inflight.labels(function).inc()
    start = time.perf_counter()
    try:
        yield
    except BadInput as exc:
        mm.rejected.labels(function, exc.reason).inc()
        log.warning("%s: bad input (%s), not retried: %s", function, exc.reason, str(exc)[:300])
        if bad_input_status >= 400:
            abort(Response(_masked_cause(exc), status=bad_input_status, mimetype="text/plain"))
    except TransientError as exc:
        log.exception("%s: transient failure, answering 500 (the broker retries)", function)
        abort(Response(_masked_cause(exc, with_type=True), status=500, mimetype="text/plain"))
    finally:
        mm.inflight.labels(function).dec()
        mm.latency.labels(function, "request").observe(time.perf_counter() - start)


def _masked_cause(exc: Exception, with_type: bool = False) -> str:
    text = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    return mask(text, configured_secrets())[:2000]
