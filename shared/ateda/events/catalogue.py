"""The event catalogue: the CloudEvent types the platform emits, their construction and validation.

The catalogue of types and their JSON Schemas lives in ``events/`` at the repo root (one source of truth, also
read by the manifest checks); this module only names them.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import jsonschema

from ateda.config import settings

OBJECT_CREATED = "dev.ateda.object.created"
ALERTS_STAGED = "dev.ateda.alerts.staged"
BRONZE_COMMITTED = "dev.ateda.bronze.committed"
INPUT_REJECTED = "dev.ateda.input.rejected"
SILVER_REFRESHED = "dev.ateda.silver.refreshed"
CROSSMATCH_COMMITTED = "dev.ateda.crossmatch.committed"
CATALOG_REGISTERED = "dev.ateda.catalog.registered"  # a reference catalog to match against bronze (a backfill)
PING = "dev.knative.sources.ping"  # Knative's PingSource type (its name is Knative's): the maintenance tick
PING_SOURCE = "/apis/v1/namespaces/ateda/pingsources/ateda-maintenance"  # what the PingSource sets as `source`
TYPES = (OBJECT_CREATED, ALERTS_STAGED, BRONZE_COMMITTED, INPUT_REJECTED, SILVER_REFRESHED, CROSSMATCH_COMMITTED,
         CATALOG_REGISTERED, PING)



SURVEY = "survey"  # extension attribute: the survey of the alerts an event is about ("ztf", "lsst"), when one


def make_event(type_: str, source: str, data: dict, subject: str | None = None,
               extensions: dict[str, str] | None = None) -> dict:
    """A CloudEvent (spec 1.0) as a plain dict in structured JSON form; ``extensions``: extension attributes
    (lowercase names, e.g. :data:`SURVEY`, so Triggers can filter on them)."""
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
    for name, value in (extensions or {}).items():
        if not (name.isascii() and name.isalnum() and name.islower()) or name in event:
            raise ValueError(f"not a CloudEvents extension attribute name: {name!r}")
        if value is not None:
            event[name] = value
    return event


def schema_dir(events_dir: Path | None = None) -> Path:
    """The event catalogue: ``events_dir``, else the process settings' ``ATEDA_EVENTS_DIR`` (set in the image;
    default ``events/`` at the repository root)."""

    return Path(events_dir or settings().paths.events_dir)


def validator(type_: str):  # noqa: ANN201
    """A jsonschema validator for the ``data`` of events of ``type_`` (schemas in events/schemas/)."""

    schema = json.loads((schema_dir() / "schemas" / f"{type_}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate(event: dict) -> None:
    """Raise if ``event`` is not a CloudEvent of a catalogued type whose data matches its schema."""
    for attr in ("specversion", "id", "source", "type"):
        if not event.get(attr):
            raise ValueError(f"CloudEvent without {attr!r}")
    if event["type"] not in TYPES:
        raise ValueError(f"unknown event type {event['type']!r}")
    validator(event["type"]).validate(event.get("data"))
