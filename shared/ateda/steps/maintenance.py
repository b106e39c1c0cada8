"""Lake maintenance: small-file compaction, snapshot expiry, orphan cleanup and lake-health gauges.

One pass (:func:`run_pass`) does, for every Iceberg table of the lake (bronze.alert, cutout, ingest_ledger,
crossmatch):

1. **housekeeping properties**: manifests merged on append, old ``metadata.json`` deleted after commit
   (:data:`ateda.lake.iceberg.HOUSEKEEPING`; new tables get them at creation, older ones here);
2. **compact**: per partition, data files smaller than half the target size that were added more than
   ``ATEDA_COMPACT_QUIET_MINUTES`` ago are packed into bins of about ``ATEDA_COMPACT_TARGET_MB``; each bin of two or
   more files is read (in the table's current schema, whatever schema version wrote each file), written again as
   one file and swapped in by one Iceberg overwrite that deletes exactly those files. Rows are not changed, only
   moved. The snapshot summary ``ateda.compacted`` names the files removed and added, so the local warehouse does
   not treat the rewritten rows as new (:mod:`ateda.warehouse.build`);
3. **expire**: snapshots older than ``ATEDA_SNAPSHOT_RETAIN_HOURS`` go, except the newest
   ``ATEDA_SNAPSHOT_RETAIN_LAST`` and branch/tag heads;
4. **orphans**: files under ``staging/`` and the tables' locations that no live snapshot or metadata file references
   and that are older than ``ATEDA_ORPHAN_GRACE_HOURS`` are deleted (staged duplicates, rewritten chunks, tarball
   parts, files compacted away once their snapshots expired, manifests of expired snapshots);
5. **stats**: gauges per table (data files, partitions, files in the fullest partition, small files, bytes,
   snapshots) for the lake-health dashboard;
6. **reconcile**: list the source bucket and re-announce every object whose notification was lost
   (:mod:`ateda.steps.reconcile`), through the event sink (``K_SINK``). It runs after the table tasks and outside
   the maintenance lock (it only reads the lake and posts events). Without a sink it is skipped and the report says
   why (``ateda maintain`` by hand, with no runtime running, has no broker to announce to).

Every step is idempotent and safe beside running writers: an overwrite that races a bronze append is retried by
pyiceberg on the new snapshot (the append is kept); one pass at a time (a file lock locally, max-scale 1 in the
cluster). A pass stops starting new compactions after ``ATEDA_MAINTENANCE_BUDGET_S`` so that it fits a request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any
from pyiceberg.exceptions import NoSuchTableError
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import parquet_file_to_data_file
import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.exceptions import CommitFailedException, ForbiddenError

from ateda.config import MaintenanceSettings, Settings
from ateda.errors import BadInput
from ateda.lake.iceberg import (COMPACTED_KEY, CROSSMATCH_TABLE, HOUSEKEEPING, LSST_ALERT_TABLE, ensure_tables,
                                load_catalog)
from ateda.lake.locks import file_lock
from ateda.lake.storage import store_for_uri
from ateda.serving.metrics import instruments
from ateda.steps import reconcile

log = logging.getLogger(__name__)
FUNCTION = "maintenance"
TABLE_TASKS = ("compact", "expire", "orphans", "stats")  # the ones that hold the maintenance lock
TASKS = (*TABLE_TASKS, "reconcile")
STAGING = "staging/"


MaintenanceConfig = MaintenanceSettings  # the section of Settings (ATEDA_COMPACT_*, ATEDA_SNAPSHOT_*, ...)


@dataclass
class TableReport:
    compacted_files: int = 0  # files removed by compaction
    written_files: int = 0
    compacted_rows: int = 0
    expired_snapshots: int = 0
    # the catalog refused the expiry commit (a REST server that expires by itself: Lakana); the pass goes on
    expire_refused: str | None = None
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class PassReport:
    tasks: list[str]
    tables: dict[str, TableReport] = field(default_factory=dict)
    orphans_deleted: dict[str, int] = field(default_factory=dict)  # area -> files
    orphan_bytes: int = 0
    budget_exhausted: bool = False
    reconcile: dict[str, Any] | None = None  # the reconciliation report, or {"skipped": reason}
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "tables": {k: asdict(v) for k, v in self.tables.items()},
                "orphans_deleted": self.orphans_deleted, "orphan_bytes": self.orphan_bytes,
                "budget_exhausted": self.budget_exhausted, "reconcile": self.reconcile,
                "seconds": round(self.seconds, 3)}


def tasks_of(data: Any) -> list[str]:
    """The tasks a ping asks for: ``{"tasks": [...]}`` (PingSource data) or nothing = all. Unknown -> BadInput."""
    if data in (None, "", b""):
        return list(TASKS)
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise BadInput("bad_ping", f"ping data is not JSON: {exc}") from exc
    asked = data.get("tasks") if isinstance(data, dict) else None
    if asked is None:
        return list(TASKS)
    if not isinstance(asked, list) or not all(isinstance(t, str) for t in asked):
        raise BadInput("bad_ping", f"`tasks` must be a list of names, got {asked!r}")
    unknown = sorted(set(asked) - set(TASKS))
    if unknown:
        raise BadInput("bad_ping", f"unknown maintenance tasks {unknown}; known: {list(TASKS)}")
    return [t for t in TASKS if t in asked]


# ---------------------------------------------------------------- the pass

def lake_tables(settings: Settings) -> dict[str, Any]:
    """Every Iceberg table of the lake: the bronze tables and, once they exist, bronze.lsst_alert and
    bronze.crossmatch."""
    catalog = load_catalog(settings)
    tables = dict(ensure_tables(catalog, settings))
    for name in (LSST_ALERT_TABLE, CROSSMATCH_TABLE):
        try:
            tables[name] = catalog.load_table(f"{settings.namespace}.{name}")
        except NoSuchTableError:
            pass
    return tables


def run_pass(settings: Settings, tasks: list[str] | None = None, config: MaintenanceConfig | None = None,
             now: float | None = None) -> PassReport:
    """One maintenance pass under the lake's maintenance lock; see the module docstring."""

    config = config or settings.maintenance
    report = PassReport(tasks=list(tasks or TASKS))
    start = time.monotonic()
    if any(t in report.tasks for t in TABLE_TASKS):
        _table_tasks(settings, config, report, start, now)
    if "reconcile" in report.tasks:
        if settings.sink:
            report.reconcile = reconcile.run(settings, settings.sink).as_dict()
        else:
            report.reconcile = {"skipped": "no event sink (K_SINK): nowhere to announce lost objects"}
    report.seconds = time.monotonic() - start
    _record_metrics(report)
    return report


def _table_tasks(settings: Settings, config: MaintenanceConfig, report: PassReport, start: float,
                 now: float | None) -> None:
    with file_lock(settings.home / "locks" / "maintenance.lock"):
        tables = lake_tables(settings)
        for name, table in tables.items():
            report.tables[name] = TableReport()
            _ensure_housekeeping(table)
        deadline = start + config.budget_s
        if "compact" in report.tasks:
            for name in tables:
                tables[name] = tables[name].refresh()
                done = compact_table(tables[name], config, deadline, report.tables[name], now)
                if not done:
                    report.budget_exhausted = True
        if "expire" in report.tasks:
            for name, table in tables.items():
                try:
                    report.tables[name].expired_snapshots = expire_snapshots(table, config, now)
                except ForbiddenError as exc:  # a permanent refusal, not a failed pass: the other tasks still run
                    report.tables[name].expire_refused = str(exc)
                    log.warning("maintenance: the catalog refuses to expire snapshots of %s: %s", name, exc)
        if "orphans" in report.tasks:
            report.orphans_deleted, report.orphan_bytes = delete_orphans(settings, tables, config, now)
        if "stats" in report.tasks:
            for name, table in tables.items():
                report.tables[name].stats = table_stats(table.refresh(), config)


def _ensure_housekeeping(table) -> None:  # noqa: ANN001
    props = table.metadata.properties
    missing = {k: v for k, v in HOUSEKEEPING.items() if props.get(k) != v}
    if missing:
        with table.transaction() as tx:
            tx.set_properties(missing)


# ---------------------------------------------------------------- compaction

@dataclass(frozen=True)
class _Entry:
    data_file: Any
    added_ms: int  # when the snapshot that added it was committed (0 = unknown: that snapshot expired long ago)


def live_entries(table) -> list[_Entry]:  # noqa: ANN001
    """The data files of the current snapshot, with the time each was added."""
    snap = table.current_snapshot()
    if snap is None:
        return []
    times = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
    out = []
    for manifest in snap.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            out.append(_Entry(entry.data_file, times.get(entry.snapshot_id, 0)))
    return out


def _partition_key(df) -> tuple:  # noqa: ANN001
    part = df.partition
    return (df.spec_id, tuple(part[i] for i in range(len(part))) if part is not None else ())


def plan_bins(entries: list[_Entry], config: MaintenanceConfig, now_ms: int) -> list[list[_Entry]]:
    """Bins of small, settled files of one partition each, about ``target`` bytes per bin, two files at least."""
    small_limit = config.target_bytes // 2
    settled_before = now_ms - int(config.quiet_minutes * 60_000)
    by_partition: dict[tuple, list[_Entry]] = defaultdict(list)
    for e in entries:
        if e.data_file.file_size_in_bytes < small_limit and e.added_ms <= settled_before:
            by_partition[_partition_key(e.data_file)].append(e)
    bins: list[list[_Entry]] = []
    for key in sorted(by_partition, key=lambda k: (-len(by_partition[k]), repr(k))):  # worst partitions first
        candidates = sorted(by_partition[key], key=lambda e: (e.added_ms, e.data_file.file_path))
        if len(candidates) < config.min_files:
            continue
        current: list[_Entry] = []
        size = 0
        for e in candidates:  # oldest first: rows stay roughly in arrival order
            if current and size + e.data_file.file_size_in_bytes > config.target_bytes:
                bins.append(current)
                current, size = [], 0
            current.append(e)
            size += e.data_file.file_size_in_bytes
        bins.append(current)
    return [b for b in bins if len(b) >= 2]


def compact_table(table, config: MaintenanceConfig, deadline: float, report: TableReport,  # noqa: ANN001
                  now: float | None = None) -> bool:
    """Rewrite the table's bins (at most ``max_bins``); False when the time budget stopped it early."""
    now_ms = int((now if now is not None else time.time()) * 1000)
    bins = plan_bins(live_entries(table), config, now_ms)
    for i, b in enumerate(bins[:config.max_bins]):
        if time.monotonic() > deadline:
            log.info("maintenance: budget used up, %d bins of %s left for the next pass", len(bins) - i, table.name())
            return False
        rows, written = rewrite_bin(table, [e.data_file for e in b])
        report.compacted_files += len(b)
        report.written_files += written
        report.compacted_rows += rows
        table = table.refresh()
    return True


def rewrite_bin(table, files: list) -> tuple[int, int]:  # noqa: ANN001
    """Replace ``files`` by the same rows in new file(s), in one overwrite; returns (rows, files written)."""


    start = time.perf_counter()
    data = read_conformed(table, files)
    expected = sum(f.record_count for f in files)
    if data.num_rows != expected:  # never swap files whose rows did not all come back
        raise RuntimeError(f"compaction of {table.name()}: read {data.num_rows} rows, manifests say {expected}")
    path = f"{table.location().rstrip('/')}/data/compacted-{uuid.uuid4().hex}.parquet"
    with table.io.new_output(path).create() as out:
        pq.write_table(data, out, compression=table.metadata.properties.get("write.parquet.compression-codec", "zstd"))
    tx = table.transaction()
    new_files = [parquet_file_to_data_file(table.io, tx.table_metadata, path)]
    lineage = json.dumps({"removed": [f.file_path for f in files], "added": [f.file_path for f in new_files]})
    with tx.update_snapshot(snapshot_properties={COMPACTED_KEY: lineage}).overwrite() as ow:
        for f in files:
            ow.delete_data_file(f)
        for f in new_files:
            ow.append_data_file(f)
    tx.commit_transaction()
    name = table.name()[-1]
    instruments().commits.labels(name).inc()
    instruments().latency.labels(FUNCTION, "compact").observe(time.perf_counter() - start)
    return data.num_rows, len(new_files)


def read_conformed(table, files: list):  # noqa: ANN001, ANN201
    """The rows of ``files`` in the table's current schema (Arrow, with Iceberg field ids).

    Read with pyarrow and aligned by name (every file of these tables is written by this project and no column is
    ever renamed): structs of different schema versions merge, absent columns and fields become nulls. Not with
    pyiceberg's reader, which returns a null list stored in a file (alerts without fp_hists) as an empty one.
    """

    target = schema_to_pyarrow(table.schema(), include_field_ids=True)
    parts = []
    for f in files:
        with table.io.new_input(f.file_path).open() as fh:
            parts.append(pq.read_table(fh))
    data = pa.concat_tables(parts, promote_options="permissive")
    for fld in target:
        if fld.name not in data.column_names:
            data = data.append_column(fld.name, pa.nulls(data.num_rows, fld.type))
    return data.select(target.names).cast(target)


# ---------------------------------------------------------------- snapshot expiry

def expire_snapshots(table, config: MaintenanceConfig, now: float | None = None) -> int:  # noqa: ANN001
    """Expire old snapshots (keeping the newest ``retain_last`` and every ref head); returns how many went."""

    cutoff_ms = int(((now if now is not None else time.time()) - config.retain_hours * 3600) * 1000)
    for _ in range(5):  # expiry is not retried by pyiceberg: a concurrent commit makes us recompute
        table = table.refresh()
        snaps = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms)
        keep = {s.snapshot_id for s in snaps[-config.retain_last:]} if config.retain_last > 0 else set()
        keep |= {ref.snapshot_id for ref in table.metadata.refs.values()}
        ids = [s.snapshot_id for s in snaps if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep]
        if not ids:
            return 0
        try:
            table.maintenance.expire_snapshots().by_ids(ids).commit()
            return len(ids)
        except CommitFailedException:
            time.sleep(0.2)
    log.warning("maintenance: could not expire snapshots of %s (busy); next pass", table.name())
    return 0


# ---------------------------------------------------------------- orphans

def _norm(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def referenced_files(table) -> set[str]:  # noqa: ANN001
    """Every file a live snapshot or the metadata log of ``table`` needs (normalised URIs)."""
    md = table.metadata
    refs = {_norm(table.metadata_location)} | {_norm(e.metadata_file) for e in md.metadata_log}
    seen_manifests: set[str] = set()
    for snap in md.snapshots:
        refs.add(_norm(snap.manifest_list))
        for manifest in snap.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            refs.add(_norm(manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                refs.add(_norm(entry.data_file.file_path))
    for stats in md.statistics:
        refs.add(_norm(stats.statistics_path))
    return refs


def delete_orphans(settings: Settings, tables: dict[str, Any], config: MaintenanceConfig,
                   now: float | None = None) -> tuple[dict[str, int], int]:
    """Delete unreferenced files older than the grace period under staging/ and each table's location."""

    start = time.perf_counter()
    referenced: set[str] = set()
    for table in tables.values():
        referenced |= referenced_files(table.refresh())
    cutoff = (now if now is not None else time.time()) - config.orphan_grace_hours * 3600
    areas = {"staging": _join(settings.lake, STAGING.rstrip("/"))}
    areas.update({f"table:{name}": _norm(t.location()) for name, t in tables.items()})
    deleted: dict[str, int] = {}
    nbytes = 0
    for area, root in areas.items():
        store = store_for_uri(root, settings, etags=False)
        count = 0
        for info in list(store.list("")):
            if info.mtime and info.mtime >= cutoff:
                continue
            if _norm(store.uri(info.key)) in referenced:
                continue
            store.delete(info.key)
            count += 1
            nbytes += info.size
        deleted[area] = count
        instruments().orphans.labels(area.split(":")[0]).inc(count)  # zero too: "nothing to delete" is a reading
    instruments().latency.labels(FUNCTION, "orphans").observe(time.perf_counter() - start)
    return deleted, nbytes


def _join(root: str, part: str) -> str:
    return root.rstrip("/") + "/" + part


# ---------------------------------------------------------------- lake health

def table_stats(table, config: MaintenanceConfig) -> dict[str, int]:  # noqa: ANN001
    entries = live_entries(table)
    per_partition: dict[tuple, int] = defaultdict(int)
    for e in entries:
        per_partition[_partition_key(e.data_file)] += 1
    snap = table.current_snapshot()
    return {
        "data_files": len(entries),
        "partitions": len(per_partition),
        "max_files_per_partition": max(per_partition.values(), default=0),
        "small_files": sum(e.data_file.file_size_in_bytes < config.target_bytes // 2 for e in entries),
        "bytes": sum(e.data_file.file_size_in_bytes for e in entries),
        "rows": sum(e.data_file.record_count for e in entries),
        "snapshots": len(table.metadata.snapshots),
        "manifests": len(snap.manifests(table.io)) if snap is not None else 0,
    }


def _record_metrics(report: PassReport) -> None:
    mm = instruments()
    for name, t in report.tables.items():  # zero increments too: a table with nothing to do still shows
        if "compact" in report.tasks:
            mm.compacted.labels(name).inc(t.compacted_files)
        if "expire" in report.tasks:
            mm.expired.labels(name).inc(t.expired_snapshots)
        for stat, value in t.stats.items():
            mm.lake.labels(name, stat).set(value)
    mm.latency.labels(FUNCTION, "pass").observe(report.seconds)
    mm.maintenance_runs.labels("budget_exhausted" if report.budget_exhausted else "complete").inc()
