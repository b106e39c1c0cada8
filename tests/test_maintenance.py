"""Lake maintenance on real data: compaction moves rows without changing them, expiry and orphan cleanup never delete
a file a live snapshot needs, the warehouse does not re-process compacted rows, an overwrite racing an append keeps
the append, and the maintenance function answers the PingSource's event over HTTP and exports the lake's shape.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import requests

from ateda.events import catalogue as events

from ateda.events import transport

from ateda.steps import maintenance as mt

from ateda.config import Settings
from ateda.ingest import run_ingest
from ateda.lake.iceberg import HOUSEKEEPING, TABLE_PROPERTIES
from ateda.lake.storage import lake_store
from ateda.local.runtime import FunctionSpec, Runtime, free_port
from ateda.warehouse import bronze_views
from conftest import HALF_BROKEN, alert_files

EAGER = mt.MaintenanceConfig(quiet_minutes=0, min_files=2, max_bins=1000)  # compacts everything, however fresh


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The real alerts in bronze, ingested in three rounds so that most nights have several small files."""
    s = Settings.from_env({"ATEDA_HOME": str(tmp_path_factory.mktemp("maint") / "home"), "ATEDA_CHUNK_ALERTS": "20"})
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    for i in range(3):
        run_ingest(s, files[i::3], quiet=True, bronze_only=True)
    return s


def _sorted(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)  # as JSON: NaN equals NaN


def content(s: Settings) -> dict[str, list]:
    """Every row of every bronze table, order-free (stamps as digests).

    bronze.alert is read as the warehouse reads it (DuckDB over the snapshot's Parquet files): pyiceberg's reader
    returns a null list stored in a file as an empty one, so it cannot tell a faithful rewrite from a lossy one.
    """
    tables = mt.lake_tables(s)
    con = duckdb.connect()
    bronze_views.prepare_bronze(con, s)
    out = {"alert": _sorted(con.execute("select * from bronze.alert").to_arrow_table().to_pylist()),
           "ingest_ledger": _sorted(tables["ingest_ledger"].scan().to_arrow().to_pylist())}
    cut = tables["cutout"].scan().to_arrow()
    stamps = [hashlib.md5(b).hexdigest() for b in cut["stamp_data"].to_pylist()]
    out["cutout"] = sorted(zip(cut["candid"].to_pylist(), cut["kind"].to_pylist(), cut["source_key"].to_pylist(),
                               cut["part"].to_pylist(), stamps))
    return out


def test_compaction_moves_rows_without_changing_them(lake, tmp_path):
    before = content(lake)
    shape = {n: mt.table_stats(t, EAGER) for n, t in mt.lake_tables(lake).items()}
    assert shape["alert"]["max_files_per_partition"] >= 3, shape  # the fixture made small files to fold
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    files, _ = bronze_views.prepare_bronze(con, lake)
    bronze_views.mark_processed(con, files)  # as a successful refresh would
    view_rows = con.execute("select count(*), count(distinct candid) from bronze.alert").fetchone()

    report = mt.run_pass(lake, ["compact", "stats"], EAGER)

    after = {n: t.stats for n, t in report.tables.items()}
    for name in ("alert", "cutout", "ingest_ledger"):
        t = report.tables[name]
        assert t.compacted_files > t.written_files > 0, (name, t)
        assert after[name]["rows"] == shape[name]["rows"] and 0 < t.compacted_rows <= shape[name]["rows"]
        assert after[name]["data_files"] == shape[name]["data_files"] - t.compacted_files + t.written_files
        assert after[name]["max_files_per_partition"] < shape[name]["max_files_per_partition"]
    assert after["ingest_ledger"]["data_files"] == 1
    assert content(lake) == before  # every row, every stamp: moved, not changed
    # the warehouse sees the same rows through the new files and nothing to re-process
    files2, new2 = bronze_views.prepare_bronze(con, lake)
    assert files2["alert"] != files["alert"] and not any(new2.values()), new2
    assert con.execute("select count(*), count(distinct candid) from bronze.alert").fetchone() == view_rows
    # a second pass finds nothing left to do
    again = mt.run_pass(lake, ["compact"], EAGER)
    assert all(t.compacted_files == 0 for t in again.tables.values())
    # every table now carries the housekeeping properties
    for t in mt.lake_tables(lake).values():
        assert HOUSEKEEPING.items() <= t.metadata.properties.items()


def test_expiry_and_orphans_delete_only_what_no_live_snapshot_needs(lake):
    mt.run_pass(lake, ["compact"], EAGER)  # no-op when the previous test ran
    before = content(lake)
    store = lake_store(lake)
    later = time.time() + 2 * 3600  # "two hours from now": every file of the run is past a one-hour grace
    planted = {"staging/zz-orphan/1/alert-2020-01-01.parquet": later - 7200,  # old: goes
               "staging/zz-inflight/1/alert-2020-01-01.parquet": later - 60}  # being written: stays
    for key, mtime in planted.items():
        store.put_bytes(key, b"PAR1 not referenced by any snapshot")
        os.utime(store.uri(key), (mtime, mtime))
    tables = mt.lake_tables(lake)
    old_snapshot = tables["alert"].metadata.snapshots[0].snapshot_id
    n_snapshots = {n: len(t.metadata.snapshots) for n, t in tables.items()}

    config = mt.MaintenanceConfig(retain_hours=1, retain_last=2, orphan_grace_hours=1)
    report = mt.run_pass(lake, ["expire", "orphans", "stats"], config, now=later)

    for name, t in report.tables.items():
        assert t.expired_snapshots == n_snapshots[name] - min(2, n_snapshots[name]), name
        assert t.stats["snapshots"] == min(2, n_snapshots[name])
    assert report.orphans_deleted["staging"] >= 1 and report.orphans_deleted["table:alert"] > 0, report.orphans_deleted
    assert store.head("staging/zz-orphan/1/alert-2020-01-01.parquet") is None
    assert store.head("staging/zz-inflight/1/alert-2020-01-01.parquet") is not None
    # nothing a live snapshot reads was deleted: every row of every table still reads back the same
    assert content(lake) == before
    alert = mt.lake_tables(lake)["alert"]
    assert alert.metadata.snapshot_by_id(old_snapshot) is None
    for path in mt.referenced_files(alert):
        assert path.startswith("s3://") or Path(path).exists(), path
    # and a second pass deletes nothing more
    again = mt.run_pass(lake, ["expire", "orphans"], config, now=later)
    assert sum(again.orphans_deleted.values()) == 0 and all(t.expired_snapshots == 0 for t in again.tables.values())


def _small_table(tmp_path: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("ns")
    t = catalog.create_table("ns.t", schema=pa.schema([("night", pa.date32()), ("v", pa.int64())]),
                             properties=TABLE_PROPERTIES)
    with t.update_spec() as spec:
        spec.add_identity("night")
    night = dt.date(2026, 11, 20)
    for i in range(6):
        t.append(pa.table({"night": [night] * 10, "v": list(range(i * 10, i * 10 + 10))}))
    return catalog, night


def test_an_overwrite_racing_an_append_keeps_the_append(tmp_path):
    catalog, night = _small_table(tmp_path)
    stale = catalog.load_table("ns.t")
    entries = mt.live_entries(stale)
    catalog.load_table("ns.t").append(pa.table({"night": [night] * 5, "v": list(range(1000, 1005))}))
    rows, written = mt.rewrite_bin(stale, [e.data_file for e in entries])  # commits on a stale base: retried
    t = catalog.load_table("ns.t")
    assert (rows, written) == (60, 1)
    assert sorted(t.scan().to_arrow()["v"].to_pylist()) == list(range(60)) + list(range(1000, 1005))
    assert len(mt.live_entries(t)) == 2
    # two passes over the same files: the second fails instead of adding the rows again
    t2 = catalog.load_table("ns.t")
    files = [e.data_file for e in mt.live_entries(t2)]
    mt.rewrite_bin(catalog.load_table("ns.t"), files)
    with pytest.raises(Exception):
        mt.rewrite_bin(t2, files)
    assert sorted(catalog.load_table("ns.t").scan().to_arrow()["v"].to_pylist()) == list(range(60)) + list(
        range(1000, 1005))


def test_bins_respect_quiet_time_min_files_and_target_size():
    class F:
        def __init__(self, path, size, night, spec_id=0):
            self.file_path, self.file_size_in_bytes, self.partition, self.spec_id = path, size, [night], spec_id

    now = 10_000_000
    mb = 1024 * 1024
    entries = [mt._Entry(F(f"a{i}", 30 * mb, "d1"), now - 3_600_000) for i in range(5)]  # settled, 30 MB each
    entries += [mt._Entry(F("fresh", 1 * mb, "d1"), now - 60_000)]  # too fresh
    entries += [mt._Entry(F("big", 100 * mb, "d1"), 0)]  # not small
    entries += [mt._Entry(F(f"b{i}", 1 * mb, "d2"), 0) for i in range(3)]  # too few for min_files=4
    bins = mt.plan_bins(entries, mt.MaintenanceConfig(target_mb=128, min_files=4, quiet_minutes=30), now)
    assert [[e.data_file.file_path for e in b] for b in bins] == [["a0", "a1", "a2", "a3"]]  # a4 alone: no bin
    assert mt.tasks_of(None) == list(mt.TASKS) and mt.tasks_of({"tasks": ["stats", "compact"]}) == ["compact", "stats"]
    for bad in ({"tasks": ["vacuum"]}, {"tasks": "compact"}, b"not json"):
        with pytest.raises(mt.BadInput):
            mt.tasks_of(bad)


def _metric(url: str, name: str, **labels: str) -> float | None:
    for line in requests.get(url, timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_function_answers_the_ping_over_http_and_exports_lake_health(lake, monkeypatch):
    port = free_port()
    monkeypatch.setenv("ATEDA_METRICS_PORT_MAINTENANCE", str(port))
    monkeypatch.setenv("ATEDA_METRICS_ADDR", "127.0.0.1")
    monkeypatch.setenv("ATEDA_MAINTENANCE_EVERY_S", "1")  # the runtime's own pinger, as the PingSource
    rows = mt.table_stats(mt.lake_tables(lake)["alert"], EAGER)["rows"]
    metrics = f"http://127.0.0.1:{port}/metrics"
    spec = FunctionSpec("ateda-maintenance", "maintenance", workers=1, threads=1, parallelism=1)
    with Runtime(lake, functions=[spec], watch=False, validate_events=True, backoff_scale=0.01) as rt:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (_metric(metrics, "ateda_maintenance_runs_total", outcome="complete") or 0) >= 1:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        assert _metric(metrics, "ateda_lake_table_stat", table="alert", stat="rows") == rows
        assert _metric(metrics, "ateda_lake_table_stat", table="alert", stat="data_files") >= 1
        assert _metric(metrics, "ateda_maintenance_orphans_deleted_total", area="staging") is not None
        # a ping naming an unknown task: 400 from the function, counted, never retried
        bad = events.make_event(events.PING, events.PING_SOURCE, {"tasks": ["vacuum"]})
        headers, body = transport.to_binary(bad)
        r = requests.post(rt.urls["ateda-maintenance"], data=body, headers=headers, timeout=30)
        assert r.status_code == 400 and "vacuum" in r.text
        assert _metric(metrics, "ateda_rejected_total", function="maintenance", reason="bad_ping") == 1
