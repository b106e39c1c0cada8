"""dead-letter: keep events that exhausted their retries in the lake, for `ateda replay`."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from ateda.config import settings
from ateda.lake import deadletters
from ateda.lake.storage import lake_store
from ateda.serving.request import request_scope


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Any event Knative dead-letters: kept as delivered, with its ``knativeerror*`` extensions, under
    dead-letter/<trigger>/ (the Trigger its ``knativeerrordest`` names, else the subscriber's Service)."""
    with request_scope("dead-letter", event["type"]):
        attrs = dict(event.get_attributes())
        dest = str(attrs.get("knativeerrordest", ""))
        deadletters.write(lake_store(settings()), deadletters.folder_for(dest), {**attrs, "data": event.data}, dest,
                          attrs.get("knativeerrorcode", ""), deadletters.error_body(attrs.get("knativeerrordata")))
