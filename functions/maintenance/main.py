"""maintenance: on a PingSource tick, compact small files, expire snapshots, delete orphans, export lake health."""

from __future__ import annotations

import logging

import flask
import functions_framework
from ateda.config import settings
from ateda.errors import BadInput
from ateda.serving.metrics import m
from ateda.serving.request import request_scope
from ateda.steps.maintenance import FUNCTION, run_pass, tasks_of
from cloudevents.http import CloudEvent

log = logging.getLogger("ateda.maintenance")


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.knative.sources.ping. One pass, bounded by ATEDA_MAINTENANCE_BUDGET_S; 400 for a bad ping."""
    with request_scope(FUNCTION, event["type"]):
        try:
            tasks = tasks_of(event.data)
        except BadInput as exc:
            m().rejected.labels(FUNCTION, exc.reason).inc()
            flask.abort(400, str(exc))
        report = run_pass(settings(), tasks)
        log.info("maintenance %s: %s", event["id"], report.as_dict())
