"""What is in the lake: tables, row counts, snapshots, backlog, dead letters, quarantine; cutouts by candid."""

from __future__ import annotations

import requests
from pyiceberg.expressions import EqualTo

from .catalog import ensure_tables, load_catalog
from .config import Settings
from .runtime import running_runtime
from .storage import lake_store


def status(settings: Settings) -> dict:
    tables = ensure_tables(load_catalog(settings), settings)
    info: dict = {"tables": {}}
    for name, t in tables.items():
        snap = t.current_snapshot()
        summary = snap.summary.additional_properties if snap and snap.summary else {}
        info["tables"][f"{settings.namespace}.{name}"] = {
            "rows": int(summary.get("total-records", 0)), "data_files": int(summary.get("total-data-files", 0)),
            "snapshots": len(t.metadata.snapshots), "snapshot_id": snap.snapshot_id if snap else None,
        }
    lake = lake_store(settings)
    info["dead_letters"] = sum(1 for i in lake.list("dead-letter/") if i.key.endswith(".json"))
    info["quarantined"] = sum(1 for i in lake.list("quarantine/") if i.key.endswith(".reason.json"))
    runtime = running_runtime(settings)
    info["backlog"] = None
    if runtime:
        info["backlog"] = requests.get(runtime["broker"], timeout=5).json()["backlog"]
    return info


def cutouts_of(settings: Settings, candid: int) -> dict[str, bytes]:
    """kind -> stamp bytes (as in the alert: gzipped FITS) for one candid."""
    table = ensure_tables(load_catalog(settings), settings)["cutout"]
    rows = table.scan(row_filter=EqualTo("candid", candid), selected_fields=("kind", "stamp_data")).to_arrow()
    return dict(zip(rows["kind"].to_pylist(), rows["stamp_data"].to_pylist()))
