"""Reconciliation: stores lose notifications (a webhook target down, a queue full, a non-persistent topic), so a
periodic pass lists the bucket and re-announces every object the lake does not know.

An object is known when its (key, eTag) is in ``bronze.ingest_ledger`` (bronze committed its parts) or in a split
manifest (split handled it: an object whose every alert was quarantined has no ledger row but has a manifest, and
must not be re-announced forever). Anything else older than ``ATEDA_RECONCILE_GRACE_S`` (its notification may still
be on its way) is announced again as ``dev.ateda.object.created`` (source ``/ateda/reconcile``), in batches of
``ATEDA_BATCH_MAX_OBJECTS``; each is counted in ``ateda_reconcile_repaired_total``. Split and bronze are idempotent
on (bucket, key, eTag), so a re-announcement of an object that was in flight costs work, never a duplicate row.

Meant for the maintenance function (the cluster's PingSource) and the local runtime's timer; ``sink`` is where the
events go (``K_SINK``, or the local broker).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pyarrow.compute as pc

from ateda.config import Settings
from ateda.errors import TransientError
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.storage import bucket_store, lake_store
from ateda.serving.metrics import instruments
from ateda.steps.bridge import post_batches

SOURCE = "/ateda/reconcile"
EVENT_NAME = "ateda:Reconciled"  # the object's event_name in the re-announcement


@dataclass
class ReconcileReport:
    bucket: str
    listed: int = 0  # objects in the bucket
    known: int = 0  # of them, in the ledger or a manifest
    young: int = 0  # unknown but within the grace period (left for their notification)
    repaired: list[tuple[str, str]] = field(default_factory=list)  # (key, etag) announced again

    def as_dict(self) -> dict:
        return {"bucket": self.bucket, "listed": self.listed, "known": self.known, "young": self.young,
                "repaired": len(self.repaired)}


def known_objects(settings: Settings, bucket: str) -> set[tuple[str, str]]:
    """(key, eTag) of every object of ``bucket`` the lake knows: ledger rows and split manifests."""
    known: set[tuple[str, str]] = set()
    try:
        ledger = ensure_tables(load_catalog(settings), settings)["ingest_ledger"]
        rows = ledger.scan(selected_fields=("source_bucket", "source_key", "source_etag")).to_arrow()
    except TransientError:
        raise
    except Exception as exc:  # noqa: BLE001 - database or lake I/O errors: the catalog is unavailable, try later
        raise TransientError(f"reconcile: cannot read the ingest ledger: {type(exc).__name__}: {exc}"[:500]) from exc
    rows = rows.filter(pc.equal(rows["source_bucket"], bucket))
    known.update(zip(rows["source_key"].to_pylist(), rows["source_etag"].to_pylist()))
    lake = lake_store(settings)
    for info in lake.list(f"manifests/{bucket}/"):
        if info.key.endswith(".json"):
            for obj in json.loads(lake.get_bytes(info.key)).get("objects", []):
                known.add((obj["key"], obj["etag"]))
    return known


def run(settings: Settings, sink: str, bucket: str | None = None, grace_s: float | None = None,
        now: float | None = None) -> ReconcileReport:
    """One pass over ``bucket`` (default: the configured one). Raises TransientError when the catalog, the lake,
    the bucket or the broker is unavailable (objects announced before the failure stay announced: harmless)."""
    name = bucket or settings.bucket
    grace = settings.reconcile_grace_s if grace_s is None else grace_s
    now = time.time() if now is None else now
    report = ReconcileReport(name)
    known = known_objects(settings, name)
    store = bucket_store(settings, name)
    todo: list[tuple[str, dict]] = []
    for info in store.list():
        report.listed += 1
        if not info.etag:  # a local folder lists no ETag (it costs a read; cached in an xattr once computed)
            info = store.head(info.key)
            if info is None:  # deleted meanwhile
                continue
        if (info.key, info.etag) in known:
            report.known += 1
            continue
        if now - info.mtime < grace:
            report.young += 1
            continue
        todo.append((name, {"key": info.key, "etag": info.etag, "size": info.size, "event_name": EVENT_NAME}))
    for start in range(0, len(todo), max(1, settings.batch_max_objects)):
        batch = todo[start:start + max(1, settings.batch_max_objects)]
        failures = [f for f in post_batches(sink, batch, source=SOURCE) if f is not None]
        if failures:
            raise TransientError(f"reconcile: broker refused the re-announcement: {failures[0]}")
        report.repaired += [(o["key"], o["etag"]) for _, o in batch]
        instruments().repaired.labels(name).inc(len(batch))
    return report
