"""What is in the lake: tables, row counts, snapshots, backlog, dead letters, quarantine; silver/gold freshness (the
bronze snapshot they reflect, pending refresh requests, the last run, copy conflicts); the running runtime's function
servers and bucket watcher. Nothing secret is shown (catalog password masked, no S3 key, no
token). Status only reads: it creates no home, no catalog and no table."""

from __future__ import annotations

from pathlib import Path

import requests
from pyiceberg.exceptions import NoSuchTableError

from ateda.config import Settings
from ateda.errors import AtedaError, ConfigError
from ateda.lake import deadletters
from ateda.lake.iceberg import LSST_ALERT_TABLE, TABLES, ensure_tables, load_catalog
from ateda.lake.storage import lake_store
from ateda.local.runtime import running_runtime, runtime_health
from ateda.redact import mask, mask_uri
from ateda.warehouse.build import freshness


class NoHome(ConfigError):
    """ATEDA_HOME names no folder: a new home (nothing ran yet) or a typo."""


def _sqlite_catalog_missing(settings: Settings) -> bool:
    """The default catalog (SQLite in the home) does not exist yet: nothing was ever ingested here."""
    uri = settings.catalog_uri
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def status(settings: Settings) -> dict:
    """The home's state (see the module). Raises :class:`NoHome` when ATEDA_HOME is no folder, a
    :class:`TransientError` when the catalog is down."""
    home = Path(settings.home)
    if not home.is_dir():
        raise NoHome(f"no ATEDA home at {home}: check ATEDA_HOME (`ateda up` or `ateda ingest` creates it)")
    info: dict = {"home": str(settings.home), "catalog": mask_uri(settings.catalog_uri), "tables": {},
                  "empty": False}
    tables = {}
    if not _sqlite_catalog_missing(settings):
        catalog = load_catalog(settings)
        for name in (*TABLES, LSST_ALERT_TABLE):  # bronze.lsst_alert once a Rubin alert landed
            try:
                tables[name] = catalog.load_table(f"{settings.namespace}.{name}")
            except NoSuchTableError:
                continue
    info["empty"] = not tables
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
    try:
        info["freshness"] = freshness(settings) if tables else None
    except AtedaError as exc:
        info["freshness"] = {"error": str(exc).splitlines()[0]}
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


def backlog_text(backlog: dict | None) -> str:
    """The broker's backlog (Trigger -> events accepted, not yet acknowledged or dead-lettered) as a sentence."""
    if backlog is None:
        return "runtime not running"
    busy = {k: v for k, v in backlog.items() if v}
    if not busy:
        return "none (every event delivered)"
    total = sum(busy.values())
    return f"{total} event(s) waiting: " + ", ".join(f"{n} for {t}" for t, n in sorted(busy.items()))


def freshness_text(f: dict | None) -> list[str]:
    """Silver/gold freshness as lines for ``ateda status``."""
    if f is None:
        return ["silver/gold: nothing in bronze yet"]
    if f.get("error"):
        return [f"silver/gold: freshness unknown ({f['error']})"]
    alert = (f.get("reflects") or {}).get("alert")
    now = (f.get("bronze") or {}).get("alert") or {}
    if not f.get("last_success_at"):
        head = "silver/gold: never refreshed"
    else:
        head = (f"silver/gold: reflect bronze.alert snapshot {alert.get('snapshot_id') if alert else '-'} "
                f"({alert.get('rows', 0) if alert else 0} rows), refreshed {f['last_success_at']}")
    if f.get("behind"):
        state = (f"BEHIND bronze (bronze.alert now {now.get('rows', 0)} rows, snapshot {now.get('snapshot_id')})"
                 if f.get("tables_behind") else "behind (requests pending)")
    else:
        state = "up to date with bronze"
    lines = [f"{head}; {state}", f"  refresh requests pending: {f.get('pending', 0)}"]
    run = f.get("last_run")
    if run:
        verdict = "ok" if run.get("ok") else f"FAILED: {(run.get('error') or '').splitlines()[0][:160]}"
        lines.append(f"  last refresh run: {run.get('started_at')}, {verdict}, {run.get('seconds', 0):.1f} s")
    if f.get("copy_conflicts") is not None:
        lines.append(f"  copy conflicts (silver.copy_conflict): {f['copy_conflicts']}")
    return lines


def _masked(value, secrets: tuple[str, ...]):  # noqa: ANN001, ANN202
    """``value`` (JSON-like) with every string passed through :func:`redact.mask`."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value
