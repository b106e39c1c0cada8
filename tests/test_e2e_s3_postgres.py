"""The S3 code path of ``ateda ingest`` and a server catalog: a real Ceph RGW (tests/ceph.py) on loopback,
pyiceberg's SQL catalog on PostgreSQL, lake maintenance on both. (The notification path is tests/test_ceph_e2e.py.)"""

from __future__ import annotations

import time

import psycopg2
import pytest

from ateda.config import Settings
from ateda.ingest import run_ingest
from ateda.local.runtime import Runtime
from ceph import ACCESS_KEY, CLIENT_ENV, SECRET_KEY, CephRGW, gone
from conftest import PG, alert_files, expected_alerts
from conftest import bronze, check_bronze, check_cutouts



@pytest.fixture
def rgw(tmp_path, monkeypatch):  # noqa: ANN201
    """Ceph RGW; pyarrow's S3 client in the function servers needs CLIENT_ENV (they inherit this environment)."""
    for k, v in CLIENT_ENV.items():
        monkeypatch.setenv(k, v)
    server = CephRGW(tmp_path / "ceph").start()
    yield server
    pids = server.pids()
    server.stop()
    assert gone(pids)



def test_s3_and_postgres_end_to_end(tmp_path, rgw, pg_uri):
    s = Settings(home=tmp_path / "home", bucket="alerts", lake="s3://lake", warehouse="s3://lake/warehouse",
                 catalog_uri=pg_uri, s3_endpoint=rgw.url, s3_access_key=ACCESS_KEY,
                 s3_secret_key=SECRET_KEY, commit_window_ms=200).resolved()
    client = rgw.client()
    for bucket in ("alerts", "lake"):
        client.create_bucket(Bucket=bucket)
    files = alert_files()
    expected = expected_alerts(files)
    with Runtime(s, validate_events=True):
        summary = run_ingest(s, files, quiet=True, timeout=300)
    check_bronze(s, expected, None, [])
    check_cutouts(s, files)
    assert summary.alerts == sum(len(c) for c in expected.values())
    # the data really is in the S3 endpoint and the catalog really is in PostgreSQL
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lake", Prefix="staging/")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys)
    with psycopg2.connect(**{**PG, "dbname": pg_uri.rsplit("/", 1)[1]}) as conn:
        cur = conn.cursor()
        cur.execute("select table_name from iceberg_tables order by 1")
        assert [r[0] for r in cur.fetchall()] == ["alert", "cutout", "ingest_ledger"]
    assert bronze(s)["alert"].metadata.location.startswith("s3://lake/warehouse")
    # lake maintenance on the S3 code path: compaction reads and writes through the S3 endpoint, expiry commits to
    # PostgreSQL, orphan cleanup lists and deletes S3 objects; the data reads back unchanged
    from ateda.steps import maintenance as mt

    client.put_object(Bucket="lake", Key="staging/zz-orphan/1/alert-2020-01-01.parquet", Body=b"unreferenced")
    later = time.time() + 100 * 3600  # every object of the run is past the 72 h grace
    config = mt.MaintenanceConfig(quiet_minutes=0, min_files=2, max_bins=1000, retain_hours=1, retain_last=1)
    report = mt.run_pass(s, list(mt.TASKS), config, now=later)
    assert report.tables["alert"].compacted_files > report.tables["alert"].written_files > 0
    assert report.orphans_deleted["staging"] > 1 and report.tables["alert"].stats["snapshots"] == 1
    lake_keys = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="lake")
                 for o in page.get("Contents", [])}
    assert "staging/zz-orphan/1/alert-2020-01-01.parquet" not in lake_keys
    assert any("/data/compacted-" in k for k in lake_keys)
    check_bronze(s, expected, None, [])
    check_cutouts(s, files)
