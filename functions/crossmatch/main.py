"""crossmatch: match alerts against the catalogs registered in the lake -> bronze.crossmatch.

Two event types, one handler: a bronze commit's alerts, ZTF's or Rubin's (its `survey` attribute), against every
registered catalog (as they arrive), and a newly registered catalog against the alerts of both surveys already in
bronze (the backfill, in chunk events)."""

from __future__ import annotations

import logging

import functions_framework
from ateda.config import settings
from ateda.events.catalogue import CATALOG_REGISTERED, CROSSMATCH_COMMITTED, SURVEY
from ateda.serving.request import emitter, request_scope
from ateda.steps.crossmatch import backfill_chunk, crossmatch_commit, plan_backfill
from cloudevents.http import CloudEvent

log = logging.getLogger("ateda.crossmatch")


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Triggers: dev.ateda.bronze.committed, dev.ateda.catalog.registered. Answers once the matches are committed;
    re-deliveries add nothing.

    Emits dev.ateda.crossmatch.committed when the alerts had matches, so dbt refresh brings
    silver.crossmatch_catalog up to date without waiting for the next bronze commit. A registration of the whole of
    bronze is answered by one catalog.registered event per planned chunk.
    """
    with request_scope("crossmatch", event["type"]):
        data = event.data or {}
        emit = emitter("crossmatch")
        if event["type"] == CATALOG_REGISTERED and data.get("range", {}).get("kind") == "bronze":
            chunks = plan_backfill(settings(), data)
            for c in chunks:
                emit(CATALOG_REGISTERED, c, f"{c['catalog']}@{c['version']}#{c['range']['chunk']}/{len(chunks)}")
            log.info("crossmatch %s: backfill of %s@%s planned in %d chunk(s)", event["id"], data["catalog"],
                     data["version"], len(chunks))
            return
        if event["type"] == CATALOG_REGISTERED:
            summary = backfill_chunk(settings(), data)
        else:
            summary = crossmatch_commit(settings(), data, survey=event.get(SURVEY))
        log.info("crossmatch %s: %s", event["id"], summary)
        if summary["matches"]:
            emit(CROSSMATCH_COMMITTED, summary, str(summary["snapshot_id"]))
