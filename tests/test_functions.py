"""Each function through functions-framework's own test client, with real CloudEvents and the real alerts."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from ateda.events import catalogue as events
from ateda.lake.iceberg import ensure_tables, load_catalog
from conftest import DAMAGED_TAIL, HALF_BROKEN, alert_files, app, expected_alerts, post, put_alerts, validate_all


def rows(s, table: str):  # noqa: ANN001, ANN201
    return ensure_tables(load_catalog(s), s)[table].scan().to_arrow()


@pytest.mark.slow
def test_split_then_bronze_every_real_alert_once(env_settings, sink):
    s = env_settings
    files = alert_files()
    objects = put_alerts(s, files)
    split, bronze = app("split"), app("bronze")
    before = REGISTRY.get_sample_value("ateda_rejected_total", {"function": "split", "reason": "unreadable_history"}) or 0
    for i in range(0, len(objects), 256):  # as the watcher coalesces
        resp = post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects[i:i + 256]}, i == 0)
        assert resp.status_code == 200, resp.data
    staged, rejected = sink.of(events.ALERTS_STAGED), sink.of(events.INPUT_REJECTED)
    validate_all(staged + rejected)
    reasons = {e["data"]["source"]["key"]: e["data"] for e in rejected}
    assert set(reasons) == HALF_BROKEN | {DAMAGED_TAIL}
    assert reasons[DAMAGED_TAIL]["reason"] == "corrupt_avro" and reasons[DAMAGED_TAIL]["alerts_kept"] == 1
    # the Fink samples' history is unreadable: quarantined, their candidate (and cutouts) go on to bronze
    assert all(reasons[k]["reason"] == "unreadable_history" and reasons[k]["alerts_kept"] == 1 for k in HALF_BROKEN)
    after = REGISTRY.get_sample_value("ateda_rejected_total", {"function": "split", "reason": "unreadable_history"})
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


def _pre4_files() -> list:
    """One real alert file per schema version before 4.x (PROVENANCE.tsv's schemavsn column)."""
    import csv

    from conftest import ZTF

    by_version = {}
    with open(ZTF / "PROVENANCE.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            v = row["schemavsn"].split()[0]
            if row["file"] not in HALF_BROKEN and not v.startswith("4"):
                by_version.setdefault(v, row["file"])
    return [alert_files()[0].parent / f for _, f in sorted(by_version.items())]


def _candidate_fields(path) -> set[str]:  # noqa: ANN001
    import fastavro

    with open(path, "rb") as fh:
        schema = fastavro.reader(fh).writer_schema
    cand = next(f["type"] for f in schema["fields"] if f["name"] == "candidate")
    cand = next(t for t in cand if isinstance(t, dict)) if isinstance(cand, list) else cand  # ["null", record]
    return {f["name"] for f in cand["fields"]}


def test_a_new_lake_holds_the_full_4_02_layout_and_takes_old_alerts(env_settings, sink):
    """bronze.alert is created with every ZTF 4.02 field (so StarRocks binds them on any lake); alerts of older
    schemas still commit (their missing fields are NULL) and their own extra fields are unioned in."""
    import pyarrow as pa

    from ateda.ztf.alerts import canonical_struct
    from ateda.ztf.layout import canonical_field_types

    def nested_fields(table) -> dict[str, dict]:  # noqa: ANN001
        arrow, out = table.schema().as_arrow(), {}
        for top, kind in (("candidate", "candidate"), ("prv_candidates", "prv_candidate"), ("fp_hists", "fp_hist")):
            t = arrow.field(top).type
            t = t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else t
            out[kind] = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
        return out

    def check_canonical(got: dict[str, dict]) -> None:
        for kind, fields in got.items():
            assert set(fields) >= set(canonical_field_types()[kind])
            for f in canonical_struct(kind):  # the decoder's types (strings may come back as large_string)
                t = fields[f.name]
                assert t == f.type or (pa.types.is_string(f.type) and pa.types.is_large_string(t)), (kind, f, t)

    s = env_settings
    s.home.mkdir(parents=True, exist_ok=True)
    table = ensure_tables(load_catalog(s), s)["alert"]
    assert table.current_snapshot() is None
    fresh = nested_fields(table)
    check_canonical(fresh)
    assert {k: set(v) for k, v in fresh.items()} == {k: set(canonical_field_types()[k]) for k in fresh}
    files = _pre4_files()
    assert len(files) >= 10
    post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": put_alerts(s, files)})
    bronze = app("bronze")
    for e in sink.of(events.ALERTS_STAGED):
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    validate_all(sink.of(events.BRONZE_COMMITTED))
    alerts = rows(s, "alert")
    expected = expected_alerts(files)
    assert sorted(zip(alerts["source_key"].to_pylist(), alerts["candid"].to_pylist())) == sorted(
        (k, c) for k, cs in expected.items() for c in cs)
    assert not any(str(v).startswith("4") for v in alerts["schemavsn"].to_pylist())
    # a 4.02 field an alert's writer schema did not have reads back as NULL
    without_drb = {f.name for f in files if "drb" not in _candidate_fields(f)}
    cand = alerts["candidate"].combine_chunks()
    drb = [d for k, d in zip(alerts["source_key"].to_pylist(), cand.field("drb").to_pylist()) if k in without_drb]
    assert drb and drb == [None] * len(drb)
    assert alerts["fp_hists"].null_count == alerts.num_rows
    assert cand.field("jd").null_count == 0 and cand.field("magpsf").null_count == 0
    # the 4.02 types are unchanged, and an old-schema field 4.02 dropped got into the table by the union
    after = nested_fields(ensure_tables(load_catalog(s), s)["alert"])
    check_canonical(after)
    assert set(after["candidate"]) > set(canonical_field_types()["candidate"])


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
    from ateda.lake.storage import bucket_store

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


def test_one_error_to_delivery_mapping_in_the_request_scope(env_settings):
    """The serving glue maps the package's errors once for every function: bad input is counted and acknowledged
    (or answered with the 4xx the function asks for, the reason as body), a transient failure answers 500 with its
    masked cause as the body (what Knative keeps in a dead letter)."""
    from werkzeug.exceptions import HTTPException

    from ateda.errors import BadInput, TransientError
    from ateda.serving.request import request_scope

    def rejected(reason: str) -> float:
        return REGISTRY.get_sample_value("ateda_rejected_total", {"function": "scope-test", "reason": reason}) or 0

    before = rejected("bad_event")
    with request_scope("scope-test", "t"):
        raise BadInput("bad_event", "never processable")  # acknowledged: nothing escapes, so the answer is 2xx
    assert rejected("bad_event") == before + 1
    with pytest.raises(HTTPException) as refused:
        with request_scope("scope-test", "t", bad_input_status=400):
            raise BadInput("bad_event", "a bad ping")
    assert refused.value.response.status_code == 400
    assert refused.value.response.get_data(as_text=True) == "bad_event: a bad ping"
    with pytest.raises(HTTPException) as failed:
        with request_scope("scope-test", "t"):
            raise TransientError("catalog down at postgresql://ateda:hunter2@db/ateda")
    body = failed.value.response.get_data(as_text=True)
    assert failed.value.response.status_code == 500
    assert body.startswith("TransientError: catalog down") and "hunter2" not in body
    with pytest.raises(ZeroDivisionError):  # anything else is not the package's to map: the framework's 500
        with request_scope("scope-test", "t"):
            1 / 0
