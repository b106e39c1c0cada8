"""CloudEvents the platform emits: types, construction, delivery to the broker (``K_SINK``), validation.

The catalogue of types and their JSON Schemas lives in ``events/`` at the repo root (one source of truth, also
read by the manifest checks); this module only names them.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import TransientError

OBJECT_CREATED = "dev.ateda.object.created"
ALERTS_STAGED = "dev.ateda.alerts.staged"
BRONZE_COMMITTED = "dev.ateda.bronze.committed"
INPUT_REJECTED = "dev.ateda.input.rejected"
SILVER_REFRESHED = "dev.ateda.silver.refreshed"
CROSSMATCH_COMMITTED = "dev.ateda.crossmatch.committed"
PING = "dev.knative.sources.ping"  # Knative's PingSource type (its name is Knative's): the maintenance tick
PING_SOURCE = "/apis/v1/namespaces/ateda/pingsources/ateda-maintenance"  # what the PingSource sets as `source`
TYPES = (OBJECT_CREATED, ALERTS_STAGED, BRONZE_COMMITTED, INPUT_REJECTED, SILVER_REFRESHED, CROSSMATCH_COMMITTED,
         PING)

_local = threading.local()


def make_event(type_: str, source: str, data: dict, subject: str | None = None) -> dict:
    """A CloudEvent (spec 1.0) as a plain dict in structured JSON form."""
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": type_,
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject:
        event["subject"] = subject
    return event


def to_binary(event: dict) -> tuple[dict[str, str], bytes]:
    """HTTP binary content mode: attributes as ``ce-`` headers, data as the body."""
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = event.get("datacontenttype", "application/json")
    return headers, json.dumps(event.get("data"), separators=(",", ":")).encode()


def from_http(headers: dict[str, str], body: bytes) -> dict:
    """Parse a CloudEvent from an HTTP request in binary or structured mode (header names case-insensitive)."""
    h = {k.lower(): v for k, v in headers.items()}
    ctype = h.get("content-type", "")
    if ctype.startswith("application/cloudevents+json"):
        return json.loads(body)
    if "ce-type" not in h:
        raise ValueError("not a CloudEvent: no ce-type header and not structured mode")
    event: dict[str, Any] = {k[3:]: v for k, v in h.items() if k.startswith("ce-")}
    event["datacontenttype"] = ctype or "application/json"
    event["data"] = json.loads(body) if body and "json" in event["datacontenttype"] else body
    return event


def _session():  # noqa: ANN202
    import requests

    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def post(sink: str, event: dict, timeout: float = 30.0) -> None:
    """Post one event to the broker. No sink configured: the event is dropped (logged), as with no SinkBinding."""
    if not sink:
        return
    import requests

    headers, body = to_binary(event)
    try:
        resp = _session().post(sink, data=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise TransientError(f"broker unreachable at {sink}: {exc}") from exc
    if resp.status_code >= 300:
        raise TransientError(f"broker refused event {event['type']}: HTTP {resp.status_code} {resp.text[:200]}")


def catalog_dir() -> Path:
    """The event catalogue: ``ATEDA_EVENTS_DIR`` (set in the image), else ``events/`` at the repository root."""
    import os

    return Path(os.environ.get("ATEDA_EVENTS_DIR") or Path(__file__).resolve().parents[2] / "events")


def validator(type_: str):  # noqa: ANN201
    """A jsonschema validator for the ``data`` of events of ``type_`` (schemas in events/schemas/)."""
    import jsonschema

    schema = json.loads((catalog_dir() / "schemas" / f"{type_}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate(event: dict) -> None:
    """Raise if ``event`` is not a CloudEvent of a catalogued type whose data matches its schema."""
    for attr in ("specversion", "id", "source", "type"):
        if not event.get(attr):
            raise ValueError(f"CloudEvent without {attr!r}")
    if event["type"] not in TYPES:
        raise ValueError(f"unknown event type {event['type']!r}")
    validator(event["type"]).validate(event.get("data"))
