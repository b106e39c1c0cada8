"""dbt-refresh: record "bronze/crossmatch committed", answer at once; a background worker runs one debounced refresh."""

from __future__ import annotations

import functools

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
