"""minio-bridge: MinIO webhook notifications in, dev.ateda.object.created CloudEvents out (to K_SINK)."""

from __future__ import annotations

import functools

import flask
import functions_framework

from ateda.batching import MicroBatcher
from ateda.bridge import authorised, parse_webhook, post_batches
from ateda.config import settings
from ateda.errors import AtedaError, BadInput
from ateda.function import request_scope
from ateda.metrics import m


@functions_framework.http
def handle(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """HEAD: MinIO's probe. POST: one webhook; 200 once its event is with the broker, 401/400/503 otherwise."""
    if request.method in ("HEAD", "GET"):
        return "", 200
    if not authorised(request.headers.get("Authorization"), settings().bridge_token):
        return "bad or missing bearer token", 401
    with request_scope("minio-bridge", "minio.webhook"):
        try:
            items = parse_webhook(request.get_json(force=True, silent=False))
        except (BadInput, ValueError) as exc:
            m().rejected.labels("minio-bridge", getattr(exc, "reason", "not_json")).inc()
            return f"not a MinIO notification: {exc}", 400
        try:
            for item in items:
                _batcher().submit(item, timeout=60)
        except (AtedaError, TimeoutError) as exc:
            return f"broker unavailable: {exc}", 503
        m().objects.labels("minio-bridge").inc(len(items))
        return "", 200


@functools.cache
def _batcher() -> MicroBatcher:
    s = settings()
    return MicroBatcher(lambda items: post_batches(s.sink, items), s.batch_window_ms / 1000.0,
                        s.batch_max_objects, name="bridge-coalescer")
