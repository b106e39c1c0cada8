"""MinIO webhook -> CloudEvents. MinIO emits no CloudEvents and the Broker accepts nothing else.

MinIO POSTs one JSON object per bucket event (``EventName``, ``Key``, ``Records[0]`` with ``s3.bucket.name``,
``s3.object.key`` query-escaped, ``eTag``, ``size``, ``eventTime``), with ``Authorization: Bearer <token>``, and
probes the endpoint with HEAD. Notifications that arrive together are coalesced into one
``dev.ateda.object.created`` per bucket; each webhook is answered 200 only after its event was accepted by the
broker, else 503 (MinIO keeps it in its queue_dir and re-sends).
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote_plus

from . import events
from .errors import BadInput


def parse_webhook(body: dict) -> list[tuple[str, dict]]:
    """(bucket, object) for every ObjectCreated record of one MinIO notification; other events give []."""
    out = []
    records = body.get("Records")
    if not isinstance(records, list):
        raise BadInput("not_minio_event", "no Records list")
    for rec in records:
        name = rec.get("eventName") or body.get("EventName", "")
        if not name.startswith("s3:ObjectCreated:"):
            continue
        try:
            s3 = rec["s3"]
            bucket = s3["bucket"]["name"]
            obj = s3["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError) as exc:
            raise BadInput("not_minio_event", f"record without s3.bucket.name/s3.object.key: {exc}") from exc
        item = {"key": key, "etag": str(obj.get("eTag", "")).strip('"'), "event_name": name}
        if isinstance(obj.get("size"), int):
            item["size"] = obj["size"]
        if rec.get("eventTime"):
            item["time"] = rec["eventTime"]
        out.append((bucket, item))
    return out


def authorised(header: str | None, token: str) -> bool:
    """True when no token is configured, or the Bearer token matches (constant-time)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def post_batches(sink: str, items: list[tuple[str, dict]], source: str = "/ateda/minio-bridge") -> list[None]:
    """One object.created event per bucket for a batch of (bucket, object); one ``None`` result per item."""
    by_bucket: dict[str, list[dict]] = {}
    for bucket, obj in items:
        by_bucket.setdefault(bucket, []).append(obj)
    for bucket, objects in by_bucket.items():
        subject = objects[0]["key"] if len(objects) == 1 else f"{objects[0]['key']} (+{len(objects) - 1})"
        events.post(sink, events.make_event(events.OBJECT_CREATED, source, {"bucket": bucket, "objects": objects},
                                            subject))
    return [None] * len(items)
