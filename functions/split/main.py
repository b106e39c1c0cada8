"""split: decode the Avro of new bucket objects, stage alert rows and cutouts, emit one alerts.staged per chunk."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

import logging

from ateda.config import settings
from ateda.errors import BadInput
from ateda.keys import UnsafeName, check_bucket
from ateda.lake.storage import bucket_store, lake_store
from ateda.serving.metrics import instruments
from ateda.serving.request import emitter, request_scope
from ateda.steps.split import Splitter

log = logging.getLogger("ateda.split")


class _Refusing:
    """The store of a bucket whose name is unsafe: every object in it is refused (unsafe_key), none is read."""

    def __init__(self, err: UnsafeName) -> None:
        self.err = err

    def open(self, key: str):  # noqa: ANN201
        raise self.err


def _shape_error(data: object) -> str | None:
    """Why ``data`` is not an object.created payload split can work on (None when it is)."""
    if not isinstance(data, dict) or not isinstance(data.get("bucket"), str):
        return "data must be an object with a string 'bucket'"
    objects = data.get("objects")
    if not isinstance(objects, list) or not all(isinstance(o, dict) and isinstance(o.get("key"), str)
                                                for o in objects):
        return "data.objects must be a list of objects with a string 'key'"
    return None


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.ateda.object.created. Bad input of any kind is quarantined per alert, member or object (200); only
    a store failure raises (500, retried)."""
    with request_scope("split", event["type"]):
        data = event.data
        s = settings()
        problem = _shape_error(data)
        if problem:  # a malformed event can never succeed: acknowledged by the scope (a retry would fail the same)
            raise BadInput("bad_event", f"object.created {event['id']} refused: {problem}")
        try:
            bucket = bucket_store(s, check_bucket(data["bucket"]))
        except BadInput as err:  # quarantined per object below, with the bucket name kept as data
            bucket = _Refusing(err if isinstance(err, UnsafeName) else UnsafeName(str(err)))
        splitter = Splitter(s, bucket, lake_store(s), emitter("split"))
        result = splitter.run(data["bucket"], data["objects"])
        for survey, n in result["by_survey"].items():
            instruments().alerts.labels("split", survey).inc(n)
        instruments().objects.labels("split").inc(result["objects"])
