"""What is in the lake: tables, row counts, snapshots, backlog, dead letters, quarantine; the running runtime's
function servers and bucket watcher; cutouts by candid. Nothing secret is shown (catalog password masked, no S3 key,
no token)."""

from __future__ import annotations

import requests
from pyiceberg.expressions import EqualTo

from ateda.config import Settings
from ateda.lake import deadletters
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.storage import lake_store
from ateda.local.runtime import running_runtime, runtime_health
from ateda.redact import mask, mask_uri


def status(settings: Settings) -> dict:
    tables = ensure_tables(load_catalog(settings), settings)
    info: dict = {"home": str(settings.home), "catalog": mask_uri(settings.catalog_uri), "tables": {}}
    for name, t in tables.items():
        snap = t.current_snapshot()
        summary = snap.summary.additional_properties if snap and snap.summary else {}
        info["tables"][f"{settings.namespace}.{name}"] = {
            "rows": int(summary.get("total-records", 0)), "data_files": int(summary.get("total-data-files", 0)),
            "snapshots": len(t.metadata.snapshots), "snapshot_id": snap.snapshot_id if snap else None,
        }
    lake = lake_store(settings)
    info["dead_letters"] = deadletters.count(lake)  # every producer's letters, old formats too
    info["quarantined"] = sum(1 for i in lake.list("quarantine/") if i.key.endswith(".reason.json"))
    runtime = running_runtime(settings)
    info["backlog"] = None
    info["runtime"] = None
    if runtime:
        try:
            health = runtime_health(runtime)
        except requests.RequestException as exc:
            health = {"error": f"{type(exc).__name__}: {exc}"}
        info["backlog"] = health.get("backlog")
        info["runtime"] = {"pid": runtime.get("pid"), "broker": runtime.get("broker"),
                           "functions": health.get("functions"), "watcher": health.get("watcher"),
                           "error": health.get("error")}
    return _masked(info, (settings.s3_access_key, settings.s3_secret_key, settings.bridge_token,
                          settings.broker_token, (runtime or {}).get("token") or ""))


def _masked(value, secrets: tuple[str, ...]):  # noqa: ANN001, ANN202
    """``value`` (JSON-like) with every string passed through :func:`redact.mask`."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value


def cutouts_of(settings: Settings, candid: int) -> dict[str, bytes]:
    """kind -> stamp bytes (as in the alert: gzipped FITS) for one candid."""
    table = ensure_tables(load_catalog(settings), settings)["cutout"]
    rows = table.scan(row_filter=EqualTo("candid", candid), selected_fields=("kind", "stamp_data")).to_arrow()
    return dict(zip(rows["kind"].to_pylist(), rows["stamp_data"].to_pylist()))
