"""crossmatch: match the alerts of a bronze commit against the catalogs registered in the lake -> bronze.crossmatch."""

from __future__ import annotations

import logging

import functions_framework
from ateda.config import settings
from ateda.events.catalogue import CROSSMATCH_COMMITTED
from ateda.serving.request import emitter, request_scope
from ateda.steps.crossmatch import crossmatch_commit
from cloudevents.http import CloudEvent

log = logging.getLogger("ateda.crossmatch")


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.ateda.bronze.committed. Answers once the matches are committed; re-deliveries add nothing.

    Emits dev.ateda.crossmatch.committed when the commit's alerts have matches, so dbt refresh brings
    silver.crossmatch_catalog up to date without waiting for the next bronze commit.
    """
    with request_scope("crossmatch", event["type"]):
        summary = crossmatch_commit(settings(), event.data or {})
        log.info("crossmatch %s: %s", event["id"], summary)
        if summary["matches"]:
            emitter("crossmatch")(CROSSMATCH_COMMITTED, summary, str(summary["snapshot_id"]))
