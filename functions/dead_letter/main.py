"""dead-letter: keep events that exhausted their retries in the lake, for `ateda replay`."""

from __future__ import annotations

import json
import time

import functions_framework
from cloudevents.http import CloudEvent

from ateda.config import settings
from ateda.function import request_scope
from ateda.keys import name_segment
from ateda.metrics import m
from ateda.storage import lake_store


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Any event the Broker dead-letters: stored as dead-letter/<type>/<time>-<id>.json (each a safe segment) with its error extensions."""
    with request_scope("dead-letter", event["type"]):
        attrs = {k: v for k, v in event.get_attributes().items()}
        body = {**attrs, "data": event.data}
        # type and id are data from the sender, never a path: each becomes one safe segment
        key = f"dead-letter/{name_segment(str(event['type']))}/{time.strftime('%Y%m%dT%H%M%S')}-{name_segment(str(event['id']))}.json"
        lake_store(settings()).put_bytes(key, json.dumps(body, indent=1, default=str).encode())
        m().dead_letters.labels(attrs.get("knativeerrordest", "unknown")).inc()
