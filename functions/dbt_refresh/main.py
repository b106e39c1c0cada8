"""dbt-refresh: record "bronze/crossmatch committed", answer at once; a background worker runs one debounced refresh.

Requests left pending by a previous process (a crash, Ctrl-C) are served as soon as this server gets its first
request of any kind (the runtime's readiness probe, a health check, an event): a Flask ``before_request`` hook
calls :meth:`RefreshWorker.resume` in the serving process (never at import, never in the parent before a fork).
"""

from __future__ import annotations

import functools

import flask
import functions_framework
from ateda.config import settings
from ateda.serving.request import emitter, request_scope
from ateda.steps.dbt_refresh import FUNCTION, RefreshWorker
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Triggers: dev.ateda.bronze.committed, dev.ateda.crossmatch.committed. Durable request marker, then 200; dbt
    never runs in the request."""
    with request_scope(FUNCTION, event["type"]):
        _worker().request({**event.get_attributes(), "data": event.data})


@functools.cache
def _worker() -> RefreshWorker:  # created (and its thread started) by the first request, never at import
    return RefreshWorker(settings(), emitter(FUNCTION))


def _resume_pending() -> str | None:
    """Before any request: serve what a previous process left pending. A GET is the health check (a readiness
    probe's ``httpGet /``): answered 200 here, where the framework has no GET route."""
    _worker().resume()
    if flask.request.method == "GET":
        return "ok\n"
    return None


# functions_framework loads this module inside its Flask app's context: register the hook (registration only; the
# worker and its thread are made by the first request). Outside an app (a plain import) there is nothing to hook.
if flask.has_app_context():
    flask.current_app.before_request(_resume_pending)
