"""maintenance: on a PingSource tick, compact small files, expire snapshots, delete orphans, export lake health."""

from __future__ import annotations

import logging

import functions_framework
from ateda.config import settings
from ateda.serving.request import request_scope
from ateda.steps.maintenance import FUNCTION, run_pass, tasks_of
from cloudevents.http import CloudEvent

log = logging.getLogger("ateda.maintenance")


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.knative.sources.ping. One pass, bounded by ATEDA_MAINTENANCE_BUDGET_S; 400 for a bad ping."""
    with request_scope(FUNCTION, event["type"], bad_input_status=400):  # a bad ping: 400, counted
        tasks = tasks_of(event.data)
        report = run_pass(settings(), tasks)
        log.info("maintenance %s: %s", event["id"], report.as_dict())
