"""Each function through functions-framework's own test client, with real CloudEvents and the real alerts."""

from __future__ import annotations

import json

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from prometheus_client import REGISTRY

from ateda import events
from ateda.catalog import ensure_tables, load_catalog
from conftest import DAMAGED_TAIL, NOT_ZTF, REPO, alert_files, expected_alerts, put_alerts, validate_all


def app(name: str, signature: str = "cloudevent"):  # noqa: ANN201
    return create_app("handle", str(REPO / "functions" / name / "main.py"), signature).test_client()


def post(client, type_: str, data: dict, structured: bool = False):  # noqa: ANN001, ANN201
    ce = CloudEvent({"type": type_, "source": "/test"}, data)
    headers, body = (to_structured if structured else to_binary)(ce)
    return client.post("/", headers=headers, data=body)


def rows(s, table: str):  # noqa: ANN001, ANN201
    return ensure_tables(load_catalog(s), s)[table].scan().to_arrow()


def test_split_then_bronze_every_real_alert_once(env_settings, sink):
    s = env_settings
    files = alert_files()
    objects = put_alerts(s, files)
    split, bronze = app("split"), app("bronze")
    before = REGISTRY.get_sample_value("ateda_rejected_total", {"function": "split", "reason": "not_ztf_alert"}) or 0
    for i in range(0, len(objects), 256):  # as the watcher coalesces
        resp = post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects[i:i + 256]}, i == 0)
        assert resp.status_code == 200, resp.data
    staged, rejected = sink.of(events.ALERTS_STAGED), sink.of(events.INPUT_REJECTED)
    validate_all(staged + rejected)
    reasons = {e["data"]["source"]["key"]: e["data"] for e in rejected}
    assert set(reasons) == NOT_ZTF | {DAMAGED_TAIL}
    assert reasons[DAMAGED_TAIL]["reason"] == "corrupt_avro" and reasons[DAMAGED_TAIL]["alerts_kept"] == 1
    assert all(reasons[k]["reason"] == "not_ztf_alert" for k in NOT_ZTF)
    after = REGISTRY.get_sample_value("ateda_rejected_total", {"function": "split", "reason": "not_ztf_alert"})
    assert after - before == 2

    for e in staged:
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    committed = sink.of(events.BRONZE_COMMITTED)
    validate_all(committed)
    expected = expected_alerts(files)
    alerts = rows(s, "alert")
    got = sorted(zip(alerts["source_key"].to_pylist(), alerts["candid"].to_pylist()))
    assert got == sorted((k, c) for k, cs in expected.items() for c in cs)
    assert sum(e["data"]["rows"]["alert"] for e in committed) == len(got)

    # every event delivered again, and the whole split re-run: bronze is unchanged
    n_cut, n_ledger = rows(s, "cutout").num_rows, rows(s, "ingest_ledger").num_rows
    for e in staged:
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects[:100]})
    for e in sink.of(events.ALERTS_STAGED)[len(staged):]:
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    assert rows(s, "alert").num_rows == len(got)
    assert rows(s, "cutout").num_rows == n_cut
    assert rows(s, "ingest_ledger").num_rows == n_ledger


def test_split_answers_200_on_bad_input_and_keeps_it(env_settings, sink):
    s = env_settings
    objects = [{"key": k, "etag": e} for k, e in [
        ("empty.avro", _put(s, "empty.avro", b"")),
        ("text.avro", _put(s, "text.avro", b"hello, not avro")),
    ]]
    resp = post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects})
    assert resp.status_code == 200
    got = {e["data"]["source"]["key"]: e["data"]["reason"] for e in sink.of(events.INPUT_REJECTED)}
    assert got == {"empty.avro": "empty_file", "text.avro": "not_avro"}
    validate_all(sink.events)


def test_bronze_raises_500_when_the_catalog_is_down(env_settings, sink, monkeypatch):
    from ateda.config import settings

    monkeypatch.setenv("ATEDA_CATALOG_URI", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    settings.cache_clear()
    s = settings()
    files = alert_files()[:3]
    post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": put_alerts(s, files)})
    staged = sink.of(events.ALERTS_STAGED)
    assert staged
    assert post(app("bronze"), events.ALERTS_STAGED, staged[0]["data"]).status_code == 500


def _put(s, key: str, data: bytes) -> str:  # noqa: ANN001
    from ateda.storage import bucket_store

    return bucket_store(s).put_bytes(key, data)


MINIO = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "alerts/night%2F2026 11 20/ztf+1.avro",
    "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2026-11-21T09:12:03.420Z",
        "eventName": "s3:ObjectCreated:Put", "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config", "bucket": {"name": "alerts", "arn": "arn:aws:s3:::alerts"},
               "object": {"key": "night%2F2026+11+20%2Fztf%2B1.avro", "size": 18863,
                          "eTag": "78f33c859e650ca4464f6690c047f5c4", "contentType": "application/octet-stream",
                          "userMetadata": {}, "sequencer": "17F6B3C2A1E3D1C0"}},
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"},
    }],
}


@pytest.fixture
def bridge(env_settings, monkeypatch):  # noqa: ANN201
    from ateda.config import settings

    monkeypatch.setenv("ATEDA_BRIDGE_TOKEN", "s3cret")
    monkeypatch.setenv("ATEDA_BATCH_WINDOW_MS", "20")
    settings.cache_clear()
    return app("minio_bridge", "http")


def test_bridge_turns_minio_webhooks_into_cloudevents(bridge, sink):
    assert bridge.head("/").status_code == 200  # MinIO's probe
    auth = {"Authorization": "Bearer s3cret"}
    assert bridge.post("/", json=MINIO, headers=auth).status_code == 200
    (event,) = sink.of(events.OBJECT_CREATED)
    validate_all([event])
    (obj,) = event["data"]["objects"]
    assert event["data"]["bucket"] == "alerts"
    assert obj["key"] == "night/2026 11 20/ztf+1.avro"  # query-unescaped: '+' is a space, %2B a plus
    assert obj["etag"] == "78f33c859e650ca4464f6690c047f5c4" and obj["size"] == 18863


def test_bridge_refuses_bad_tokens_and_non_minio_bodies(bridge, sink):
    assert bridge.post("/", json=MINIO).status_code == 401
    assert bridge.post("/", json=MINIO, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert bridge.post("/", data="not json", headers={"Authorization": "Bearer s3cret"}).status_code == 400
    deleted = json.loads(json.dumps(MINIO).replace("ObjectCreated:Put", "ObjectRemoved:Delete"))
    assert bridge.post("/", json=deleted, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert sink.events == []
