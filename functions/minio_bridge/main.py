"""minio-bridge: S3 bucket notifications (MinIO, Ceph RGW, AWS format) in, dev.ateda.object.created CloudEvents out
(to K_SINK)."""

from __future__ import annotations

import functools
import json
import logging
import sys

import flask
import functions_framework

from ateda.config import settings
from ateda.errors import AtedaError, BadInput
from ateda.serving.logs import configure_logging
from ateda.serving.metrics import instruments
from ateda.serving.request import request_scope, serve_metrics
from ateda.steps.batching import MicroBatcher
from ateda.steps.bridge import authorised, loopback_only, parse_webhook, post_batches, read_capped, startup_problem

log = logging.getLogger("ateda.minio_bridge")


def _refuse(status: int, reason: str, text: str) -> flask.Response:
    """A 4xx, counted. Sent as a streamed response: functions-framework reads the whole request body into memory
    after any other response (its ``read_request`` hook), which is what a body limit or a token must prevent."""
    serve_metrics()  # a refusal may come before any request_scope started the endpoint
    instruments().rejected.labels("minio-bridge", reason).inc()
    log.info("refused a webhook (%s, HTTP %d): %s", reason, status, text[:300])
    return flask.Response(iter([text]), status=status, mimetype="text/plain")


@functions_framework.http
def handle(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """HEAD: a store's probe. POST: one notification; 200 once its event is with the broker (or when it holds no
    create event); 401 bad token, 403 not loopback (open mode), 413 body too large, 400 not a (safe) S3
    notification, 503 broker down."""
    if request.method in ("HEAD", "GET"):
        return "", 200
    s = settings()
    if s.bridge_token:
        if not authorised(request.headers.get("Authorization"), s.bridge_token, request.args.get("token")):
            return _refuse(401, "unauthorized", "bad or missing token")
    elif not loopback_only(request.remote_addr, request.headers.getlist("X-Forwarded-For")
                           + request.headers.getlist("Forwarded")):
        return _refuse(403, "not_loopback", "this bridge runs without a token and serves loopback callers only")
    with request_scope("minio-bridge", "minio.webhook"):
        try:
            body = read_capped(request.stream, request.content_length, s.bridge_max_body)
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
                raise BadInput("not_json", f"body is not JSON: {type(exc).__name__}: {exc}"[:300]) from exc
            items = parse_webhook(doc)
        except BadInput as exc:
            status = 413 if exc.reason == "too_large" else 400
            return _refuse(status, exc.reason, f"not an S3 notification: {exc}" if status == 400 else str(exc))
        try:
            for item in items:
                failure = _batcher().submit(item, timeout=60)
                if failure is not None:
                    raise failure
        except (AtedaError, TimeoutError) as exc:
            return f"broker unavailable: {exc}", 503
        instruments().objects.labels("minio-bridge").inc(len(items))
        return "", 200


@functools.cache
def _batcher() -> MicroBatcher:
    s = settings()
    return MicroBatcher(lambda items: post_batches(s.sink, items), s.batch_window_ms / 1000.0,
                        s.batch_max_objects, name="bridge-coalescer")


def _start() -> None:
    """Fail closed, when the server loads this function: no token and not explicitly open -> exit with one line."""
    configure_logging()
    s = settings()
    problem = startup_problem(s)
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(2)
    if not s.bridge_token:
        log.warning("minio-bridge running OPEN (ATEDA_BRIDGE_INSECURE_OPEN=true, no token): requests from loopback "
                    "only, for local development; never behind a proxy that connects from loopback")


_start()
