"""End to end on a real S3 server with real bucket notifications: Debian's Ceph RGW (tests/ceph.py).

The events come from the store: a notification topic whose push endpoint is the bridge function, bound to the
bucket for ``s3:ObjectCreated:*``; boto3 uploads the real alerts (single puts and multipart uploads); RGW notifies
the bridge, the bridge posts ``dev.ateda.object.created`` to the local broker, split and bronze run as in the
cluster. No bucket listing in that path (the runtime's bucket watcher is off). The lake (staging, quarantine,
manifests, the Iceberg warehouse) is on the same RGW, the Iceberg catalog on PostgreSQL.

Ceph is installed by scripts/ceph.sh (CI runs it as root): if it is missing these tests fail, they never skip.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time

import psycopg2
import pytest
import requests

from ateda.config import Settings
from ateda.ingest import IngestFailed, Uploaded, wait_committed
from ateda.lake import deadletters
from ateda.lake.storage import lake_store
from ateda.local.runtime import FunctionSpec, Runtime, free_port, ingestion_functions, ping
from ateda.steps import reconcile
from ceph import ACCESS_KEY, CLIENT_ENV, SECRET_KEY, CephRGW, gone, subscribe, upload
from conftest import HALF_BROKEN, PG, alert_files, bronze, check_bronze, check_cutouts, expected_alerts

TOKEN = secrets.token_urlsafe(24)
BRIDGE = FunctionSpec("ateda-minio-bridge", "minio_bridge", signature="http", workers=1, threads=16, parallelism=4)
MAINTENANCE = FunctionSpec("ateda-maintenance", "maintenance", workers=1, threads=1, parallelism=1)


@pytest.fixture(scope="module")
def rgw(tmp_path_factory):  # noqa: ANN201
    """One Ceph cluster for the module (each test uses its own buckets and topic)."""
    server = CephRGW(tmp_path_factory.mktemp("ceph")).start()
    print(f"\nCeph RGW started in {server.started_in:.1f} s at {server.url}")
    yield server
    pids = server.pids()
    server.stop()
    assert gone(pids), "a Ceph daemon outlived stop()"


@pytest.fixture
def ceph_env(monkeypatch):  # noqa: ANN201
    """pyarrow's S3 client (inside split/bronze, and here) must not send checksums RGW 16 refuses (HTTP 411): the
    child processes inherit this process's environment, so the test sets it for them."""
    for k, v in CLIENT_ENV.items():
        monkeypatch.setenv(k, v)


def lake_settings(tmp_path, rgw: CephRGW, pg_uri: str, tag: str) -> Settings:
    client = rgw.client()
    for bucket in (f"alerts-{tag}", f"lake-{tag}"):
        client.create_bucket(Bucket=bucket)
    return Settings(home=tmp_path / "home", bucket=f"alerts-{tag}", lake=f"s3://lake-{tag}",
                    warehouse=f"s3://lake-{tag}/warehouse", catalog_uri=pg_uri, s3_endpoint=rgw.url,
                    s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY, commit_window_ms=200,
                    bridge_token=TOKEN).resolved()


def runtime(s: Settings) -> Runtime:
    """split + bronze + the bridge; no bucket watcher: every event comes from the store's notifications."""
    return Runtime(s, functions=ingestion_functions(2) + [BRIDGE], watch=False, validate_events=True)


def bridge_url(rt: Runtime) -> str:
    return rt.urls["ateda-minio-bridge"]


def test_ceph_notifications_end_to_end(tmp_path, rgw, ceph_env, pg_uri):
    s = lake_settings(tmp_path, rgw, pg_uri, "e2e")
    client = rgw.client()
    # the two Fink samples (HALF_BROKEN) are left out: what bronze keeps of them is split's business (test_half_broken)
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    expected = expected_alerts(files)
    with runtime(s) as rt:
        subscribe(rgw, s.bucket, bridge_url(rt), TOKEN)
        t0 = time.monotonic()
        uploaded = upload(client, s.bucket, files)
        done = wait_committed(s, uploaded, timeout=600)
        print(f"\n{len(files)} objects notified and committed in {time.monotonic() - t0:.1f} s")
        # a duplicate notification (the store re-sends: same key and eTag): acknowledged, no second row
        dup = {"Records": [{"eventVersion": "2.2", "eventSource": "ceph:s3", "eventName": "ObjectCreated:Put",
                            "s3": {"bucket": {"name": s.bucket},
                                   "object": {"key": uploaded[1].key, "eTag": uploaded[1].etag, "size": 1}}}]}
        manifests_before = _manifest_count(s)  # before the post: the split of the duplicate may be done when it returns
        assert requests.post(f"{bridge_url(rt)}/?token={TOKEN}", json=dup, timeout=30).status_code == 200
        assert requests.post(f"{bridge_url(rt)}/?token=wrong", json=dup, timeout=30).status_code == 401
        _wait(lambda: _manifest_count(s) > manifests_before, 120, "the duplicate was not split again")
        time.sleep(1.0)  # bronze's commit window (200 ms) several times over: a second row would be there now
    check_bronze(s, expected, None, [])
    check_cutouts(s, files)
    assert len(done) == len(files) == 473
    # every event came from the store: the bridge's log names one request per object at least (no listing)
    lake = rgw.client()
    keys = [o["Key"] for p in lake.get_paginator("list_objects_v2").paginate(Bucket=f"lake-e2e", Prefix="warehouse/")
            for o in p.get("Contents", [])]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    assert bronze(s)["alert"].metadata.location.startswith("s3://lake-e2e/warehouse")
    with psycopg2.connect(**{**PG, "dbname": pg_uri.rsplit("/", 1)[1]}) as conn:
        cur = conn.cursor()
        cur.execute("select table_name from iceberg_tables order by 1")
        assert [r[0] for r in cur.fetchall()] == ["alert", "cutout", "ingest_ledger"]


def _manifest_count(s: Settings) -> int:
    return sum(1 for _ in lake_store(s).list(f"manifests/{s.bucket}/"))


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_object_deleted_before_split_reads_it_is_quarantined_once(tmp_path, rgw, ceph_env, pg_uri):
    """The notification arrives for an object that no longer exists: quarantined with its reason, not retried."""
    s = lake_settings(tmp_path, rgw, pg_uri, "gone")
    client = rgw.client()
    real = alert_files()[:3]
    with runtime(s) as rt:
        subscribe(rgw, s.bucket, bridge_url(rt), TOKEN)
        # RGW sends a persistent topic's notifications from its queue seconds after the put: the object is deleted
        # before its (real) notification reaches the bridge; deletions are not subscribed
        etag = client.put_object(Bucket=s.bucket, Key="gone.avro", Body=real[0].read_bytes())["ETag"].strip('"')
        client.delete_object(Bucket=s.bucket, Key="gone.avro")
        uploaded = upload(client, s.bucket, real[1:], multipart_every=1000)
        done = wait_committed(s, [Uploaded("gone.avro", etag, 1), *uploaded], timeout=300)
        time.sleep(2.0)  # a retry (there must be none) would show as a second manifest for the object
        letters = list(lake_store(s).list("dead-letter/"))
    reasons = [r["reason"] for r in done[("gone.avro", etag)]["rejected"]]
    assert reasons in (["missing_object"], ["object_missing"]), reasons
    assert letters == [], "a missing object is bad input, never a dead letter"
    manifests = [json.loads(lake_store(s).get_bytes(i.key)) for i in lake_store(s).list(f"manifests/{s.bucket}/")]
    assert sum(1 for m in manifests for o in m["objects"] if o["key"] == "gone.avro") == 1
    check_bronze(s, expected_alerts(real[1:]), None, [])


def test_reconciliation_repairs_lost_notifications_exactly_once(tmp_path, rgw, ceph_env, pg_uri):
    """The bridge is down while 50 objects land (a non-persistent topic: RGW drops what it cannot deliver); once
    it is up, the hourly maintenance ping (the PingSource's event, to the maintenance function, whose `reconcile`
    task re-announces through its sink) lands all 50 exactly once, and a second ping repairs nothing."""
    s = dataclasses.replace(lake_settings(tmp_path, rgw, pg_uri, "recon"), reconcile_grace_s=0.0)
    client = rgw.client()
    files = [f for f in alert_files() if f.name not in HALF_BROKEN][:50]
    subscribe(rgw, s.bucket, f"http://127.0.0.1:{free_port()}", TOKEN, persistent=False)  # nobody listens there
    uploaded = upload(client, s.bucket, files, multipart_every=10)
    with Runtime(s, functions=ingestion_functions(2) + [BRIDGE, MAINTENANCE], watch=False,
                 validate_events=True) as rt:
        subscribe(rgw, s.bucket, bridge_url(rt), TOKEN, persistent=False)  # the bridge is up: the topic points at it
        time.sleep(3.0)  # RGW had its chance to deliver (a persistent topic would have): nothing came
        assert _manifest_count(s) == 0, "a notification of the bridge-down period arrived"
        ping(rt.sink)
        wait_committed(s, uploaded, timeout=300)
        _wait(rt.idle, 300, "the first maintenance pass")
        split_runs = _manifest_count(s)
        ping(rt.sink)  # every object is in the ledger now: nothing to re-announce
        _wait(rt.idle, 300, "the second maintenance pass")  # the broker held the ping before it answered
        assert _manifest_count(s) == split_runs, "the second pass re-announced objects the ledger holds"
        assert list(lake_store(s).list("dead-letter/")) == [], "a maintenance pass failed"
        # within the grace period an unknown object is left for its notification
        young = client.put_object(Bucket=s.bucket, Key="young.avro", Body=files[0].read_bytes())["ETag"].strip('"')
        report = reconcile.run(s, rt.sink, grace_s=3600)
        assert ("young.avro", young) not in report.repaired
        wait_committed(s, [Uploaded("young.avro", young, 1)], timeout=120)  # its own notification brought it
    check_bronze(s, {**expected_alerts(files), "young.avro": expected_alerts(files[:1])[files[0].name]}, None, [])


def test_the_store_going_away_mid_ingest_loses_and_duplicates_nothing(tmp_path, rgw, ceph_env, pg_uri):
    """radosgw stops for 20 s while split and bronze work (the bucket, the lake and the warehouse all go away):
    they retry, what the broker dead-lettered meanwhile is replayed, and bronze ends with every alert exactly once.
    The notifications RGW had not sent yet wait in its persistent queue (in RADOS) and follow once it is back."""
    s = lake_settings(tmp_path, rgw, pg_uri, "outage")
    client = rgw.client()
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    with runtime(s) as rt:
        subscribe(rgw, s.bucket, bridge_url(rt), TOKEN)
        uploaded = upload(client, s.bucket, files, multipart_every=50)
        _wait(lambda: _manifest_count(s) >= 20, 300, "split did not start")
        assert _manifest_count(s) < len(files), "too late: split was done before the store went away"
        rgw.stop_rgw()
        time.sleep(20.0)  # the outage itself
        rgw.restart_rgw()
        replayed = 0
        for _ in range(5):
            try:
                wait_committed(s, uploaded, timeout=600)
                break
            except IngestFailed:  # events dead-lettered during the outage: replay them, as `ateda replay` does
                replayed += deadletters.replay(lake_store(s), rt.sink, token=rt.settings.broker_token)
        else:
            raise AssertionError("still dead letters after five replays")
        assert deadletters.count(lake_store(s)) == 0
        print(f"\noutage of 20 s: {replayed} dead letter(s) replayed")
    check_bronze(s, expected_alerts(files), None, [])
    check_cutouts(s, files)
