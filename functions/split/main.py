"""split: decode the Avro of new bucket objects, stage alert rows and cutouts, emit one alerts.staged per chunk."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from ateda.config import settings
from ateda.function import emitter, request_scope
from ateda.metrics import m
from ateda.split import Splitter
from ateda.storage import bucket_store, lake_store


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.ateda.object.created. Bad input of any kind is quarantined per alert, member or object (200); only
    a store failure raises (500, retried)."""
    with request_scope("split", event["type"]):
        data = event.data
        s = settings()
        splitter = Splitter(s, bucket_store(s, data["bucket"]), lake_store(s), emitter("split"))
        result = splitter.run(data["bucket"], data["objects"])
        m().alerts.labels("split").inc(result["alerts"])
        m().objects.labels("split").inc(result["objects"])
