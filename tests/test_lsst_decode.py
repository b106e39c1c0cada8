"""Rubin (LSST) decoding on real data only: the sample alerts the installed lsst-alert-packet ships (every version,
read from the distribution at test time, never copied here) and a real ZTF alert for the non-Rubin case."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import math
import subprocess
import sys
import zlib

import fastavro
import pyarrow as pa
import pytest

from ateda.errors import BadInput
from ateda.lsst import alerts as lsst
from ateda.lsst import schemas
from ateda.ztf.alerts import _CUTOUT_COLUMNS as ZTF_CUTOUT_COLUMNS
from ateda.avro import Limits
from conftest import ALERTS, REAL_402

# Rubin's own samples for 3.0 .. 7.4 carry Unix seconds (1480360995.0, 2016-11-28) in midPointTai/midpointMjdTai;
# 8.0 on carry an MJD. The decoder reads them all; bronze rejects the Unix-seconds times as bad_value.
UNIX_SECONDS_SAMPLES = {"3.0", "4.0", "5.0", "6.0", "6.1", "7.0", "7.1", "7.2", "7.3", "7.4"}
SAMPLE_DIA_SOURCE_ID = 281323062375219200  # diaSource.diaSourceId of every sample (above 2**53: floats lose it)
SAMPLE_DIA_OBJECT_ID = 281323062375219201
SAMPLE_ALERT_ID = 1231321321  # the top-level diaSourceId (8.0 on) / alertId (before): differs in the samples


def samples() -> dict[str, tuple]:
    found = schemas.sample_files()
    assert found, "lsst-alert-packet is not installed in this environment"
    return found


def sample_bytes(version: str) -> bytes:
    return samples()[version][0].read_bytes()


def frame(version: str, record: dict) -> bytes:
    """A Confluent wire-format frame of ``record``, written with the registry's schema of ``version``."""
    sid = next(i for i, v in schemas.known_schemas() if v == version)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schemas.schema(sid).parsed, record)
    return b"\0" + sid.to_bytes(4, "big") + body.getvalue()


def container(version: str, records: list[dict], codec: str = "null", sync_interval: int = 16000) -> bytes:
    sid = next(i for i, v in schemas.known_schemas() if v == version)
    out = io.BytesIO()
    fastavro.writer(out, schemas.schema(sid).json, records, codec=codec, sync_interval=sync_interval)
    return out.getvalue()


def with_mjd_time(record: dict) -> dict:
    """The record with its Unix-seconds time (old samples) turned into the MJD it stands for."""
    source = record["diaSource"]
    for k in ("midPointTai", "midpointMjdTai"):
        if k in source and source[k] > 1e6:
            source[k] = source[k] / 86400 + 40587
    return record


def meta(decoded: lsst.LsstDecoded, part: int = 0) -> dict:
    return {"source_bucket": "alerts", "source_key": "rubin/x.avro", "source_etag": "e1", "source_member": None,
            "part": part, "schema_version": decoded.schema_version, "schema_id": decoded.schema_id,
            "ingested_at": dt.datetime(2026, 12, 5, tzinfo=dt.timezone.utc)}


# ---------------------------------------------------------------- registry

def test_registry_holds_every_shipped_version_by_its_id():
    known = dict(schemas.known_schemas())
    assert known[1101] == "11.1" and known[701] == "7.1" and known[300] == "3.0" and known[1000] == "10.0"
    assert list(known) == sorted(known) and len(known) == 15
    for sid, version in known.items():
        major, minor = (int(x) for x in version.split("."))
        assert sid == major * 100 + minor
        s = schemas.schema(sid)
        assert s.name == f"lsst.v{major}_{minor}.alert" and s.version == version and s.schema_id == sid
        assert schemas.schema_id_of(s.name) == sid and schemas.version_of_id(sid) == version
    assert set(samples()) == set(known.values())  # every version has its sample alert
    latest = samples()["11.1"][0].parents[3] / "latest.txt"  # schema/latest.txt
    assert latest.read_text().strip() in known.values()
    assert schemas.schema(1299) is None and schemas.schema_id_of("ztf.alert") is None


# ---------------------------------------------------------------- containers

@pytest.mark.parametrize("version", sorted(UNIX_SECONDS_SAMPLES | {"8.0", "9.0", "10.0", "11.0", "11.1"}))
def test_every_version_sample_decodes_with_exact_ids(version: str):
    avro, js = samples()[version]
    decoded = lsst.decode_lsst(avro.read_bytes())
    assert (decoded.schema_version, decoded.form, decoded.gzipped, decoded.error) == (version, "container", False,
                                                                                         None)
    assert decoded.schema_id == int(version.split(".")[0]) * 100 + int(version.split(".")[1])
    [rec] = decoded.records
    expected = json.loads(js.read_text())
    top = "alertId" if version in UNIX_SECONDS_SAMPLES else "diaSourceId"
    assert rec[top] == expected[top] == SAMPLE_ALERT_ID
    assert rec["diaSource"]["diaSourceId"] == expected["diaSource"]["diaSourceId"] == SAMPLE_DIA_SOURCE_ID
    assert rec["diaObject"]["diaObjectId"] == expected["diaObject"]["diaObjectId"] == SAMPLE_DIA_OBJECT_ID
    compared = 0
    for name, value in expected["diaSource"].items():  # every id and count of the alert's json, exactly
        if isinstance(value, int) and not isinstance(value, bool) and name in rec["diaSource"] \
                and not isinstance(rec["diaSource"][name], dt.datetime):  # 8.0's timestamp-micros fields
            assert rec["diaSource"][name] == value, name  # (a json field the version lacks was not written)
            compared += 1
    assert compared >= 4
    assert len(rec["prvDiaSources"]) == len(expected["prvDiaSources"])
    assert [p["diaSourceId"] for p in rec["prvDiaSources"]] == [p["diaSourceId"] for p in expected["prvDiaSources"]]


def test_gzip_of_a_container_and_a_multi_member_gzip():
    data = sample_bytes("11.1")
    decoded = lsst.decode_lsst(gzip.compress(data))
    assert decoded.gzipped and decoded.schema_id == 1101
    assert decoded.records == lsst.decode_lsst(data).records
    two_members = gzip.compress(data[:100]) + gzip.compress(data[100:])
    assert lsst.decode_lsst(two_members).records == decoded.records


def test_multi_alert_containers_in_every_codec_and_the_alert_cap():
    [rec] = lsst.decode_lsst(sample_bytes("11.1")).records
    records = [dict(rec, diaSourceId=SAMPLE_ALERT_ID + i) for i in range(5)]
    for codec in ("null", "deflate", "snappy"):
        decoded = lsst.decode_lsst(container("11.1", records, codec))
        assert [r["diaSourceId"] for r in decoded.records] == [SAMPLE_ALERT_ID + i for i in range(5)], codec
        assert decoded.error is None
    capped = lsst.decode_lsst(container("11.1", records), Limits(max_alerts=3))
    assert len(capped.records) == 3 and capped.error.reason == "too_many_alerts"


def test_truncated_containers():
    data = sample_bytes("11.1")
    for cut in (10, 2000, len(data) - 100):  # inside the header, inside the schema, inside the one block
        with pytest.raises(BadInput) as exc:
            lsst.decode_lsst(data[:cut])
        assert exc.value.reason == "truncated_avro", cut
    [rec] = lsst.decode_lsst(data).records
    many = container("11.1", [dict(rec, diaSourceId=i) for i in range(4)], sync_interval=1)  # a block per alert
    decoded = lsst.decode_lsst(many[:-200])
    assert [r["diaSourceId"] for r in decoded.records] == [0, 1, 2]
    assert decoded.error.reason == "truncated_avro" and "3 good record(s) before" in decoded.error.detail
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(gzip.compress(data)[:-50])
    assert exc.value.reason == "truncated_gzip"


def test_a_ztf_alert_is_not_a_rubin_alert():
    ztf = (ALERTS / REAL_402).read_bytes()
    for data in (ztf, gzip.compress(ztf)):
        with pytest.raises(BadInput) as exc:
            lsst.decode_lsst(data)
        assert exc.value.reason == "not_lsst_alert" and "ztf.alert" in exc.value.detail
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(b"SIMPLE  =                    T")
    assert exc.value.reason == "not_lsst_alert"
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(b"")
    assert exc.value.reason == "empty_file"


def test_an_oversized_inflate_is_too_large():
    data = gzip.compress(sample_bytes("11.1"))
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(data, Limits(max_bytes=20_000))
    assert exc.value.reason == "too_large"
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KB
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(bomb, Limits(max_bytes=1 << 20))
    assert exc.value.reason == "too_large"


# ---------------------------------------------------------------- Confluent frames

@pytest.mark.parametrize("version", ["7.1", "8.0", "9.0", "10.0", "11.0", "11.1"])
def test_confluent_frames_decode_to_the_same_records(version: str):
    [rec] = lsst.decode_lsst(sample_bytes(version)).records
    data = frame(version, rec)
    major, minor = (int(x) for x in version.split("."))
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == major * 100 + minor
    decoded = lsst.decode_lsst(data)
    assert (decoded.form, decoded.schema_version, decoded.records) == ("confluent", version, [rec])
    zipped = lsst.decode_lsst(gzip.compress(data))
    assert zipped.gzipped and zipped.records == [rec] and zipped.form == "confluent"


def test_frame_ids_follow_the_major_minor_rule():
    [rec] = lsst.decode_lsst(sample_bytes("11.1")).records
    assert frame("11.1", rec)[1:5] == (1101).to_bytes(4, "big")
    [old] = lsst.decode_lsst(sample_bytes("7.1")).records
    assert frame("7.1", old)[1:5] == (701).to_bytes(4, "big")


def test_unknown_schema_id_and_a_wrong_one():
    [rec] = lsst.decode_lsst(sample_bytes("11.1")).records
    body = frame("11.1", rec)[5:]
    with pytest.raises(BadInput) as exc:
        lsst.decode_lsst(b"\0" + (1299).to_bytes(4, "big") + body)
    assert exc.value.reason == "unknown_schema_id" and "1299" in exc.value.detail and "12.99" in exc.value.detail
    with pytest.raises(BadInput) as exc:  # an 11.1 body under 7.1's id: fails to read or leaves bytes over
        lsst.decode_lsst(b"\0" + (701).to_bytes(4, "big") + body)
    assert exc.value.reason in ("corrupt_avro", "truncated_avro", "bad_value")


def test_truncated_frames():
    [rec] = lsst.decode_lsst(sample_bytes("11.1")).records
    data = frame("11.1", rec)
    for cut in (3, 5, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(BadInput) as exc:
            lsst.decode_lsst(data[:cut])
        assert exc.value.reason == "truncated_avro", cut


# ---------------------------------------------------------------- survey_of

def test_survey_of_each_form():
    data = sample_bytes("11.1")
    [rec] = lsst.decode_lsst(data).records
    framed = frame("11.1", rec)
    ztf = (ALERTS / REAL_402).read_bytes()
    assert lsst.survey_of(data) == "lsst"
    assert lsst.survey_of(data[:600]) == "lsst"  # a head cut inside the writer schema
    assert lsst.survey_of(gzip.compress(data)) == "lsst"
    assert lsst.survey_of(gzip.compress(data)[:300]) == "lsst"
    assert lsst.survey_of(framed[:5]) == "lsst" and lsst.survey_of(gzip.compress(framed)) == "lsst"
    assert lsst.survey_of(b"\0" + (1299).to_bytes(4, "big") + b"xyz") == "lsst"  # plausible, decode says unknown
    assert lsst.survey_of(ztf) == "ztf" and lsst.survey_of(ztf[:600]) == "ztf"
    assert lsst.survey_of(gzip.compress(ztf)) == "ztf"
    assert lsst.survey_of(b"\0" + (123456).to_bytes(4, "big")) is None  # not a Rubin id
    assert lsst.survey_of(b"") is None and lsst.survey_of(b"\0\0") is None
    assert lsst.survey_of(b"SIMPLE  =                    T") is None
    assert lsst.survey_of(b"\x1f\x8b" + b"junk" * 10) is None


# ---------------------------------------------------------------- dayObs

def test_day_obs_rolls_over_at_noon_utc():
    assert lsst.day_obs(60000.0) == dt.date(2023, 2, 24)  # 2023-02-25T00:00 UTC: still the night of the 24th
    assert lsst.day_obs(60000.5 - 1e-7) == dt.date(2023, 2, 24)  # 11:59:59.99 UTC
    assert lsst.day_obs(60000.5) == dt.date(2023, 2, 25)  # 12:00 UTC
    assert lsst.day_obs(60902.993305483615) == dt.date(2025, 8, 15)  # the 8.0+ samples' time
    with pytest.raises(ValueError):
        lsst.day_obs(math.nan)


# ---------------------------------------------------------------- Arrow tables

def test_tables_of_every_version_share_one_canonical_schema_with_exact_ids():
    schema = lsst.lsst_alert_schema()
    tables = []
    for version in samples():
        decoded = lsst.decode_lsst(sample_bytes(version))
        out = lsst.lsst_tables([with_mjd_time(r) for r in decoded.records], meta(decoded))
        assert out.rejected == [] and out.alerts.num_rows == 1, version
        assert out.alerts.schema.equals(schema), version
        tables.append(out.alerts)
    alerts = pa.concat_tables(tables)
    assert alerts.num_rows == 15 and alerts.schema.equals(schema)
    for name in ("diaSourceId", "diaObjectId"):
        assert alerts.schema.field(name).type == pa.int64()
    assert alerts.schema.field("night").type == pa.date32()
    rows = alerts.to_pylist()
    old = [r for r in rows if r["schema_version"] in UNIX_SECONDS_SAMPLES]
    new = [r for r in rows if r["schema_version"] not in UNIX_SECONDS_SAMPLES]
    # the top-level diaSourceId: the alert's own from 8.0, diaSource's before (alertId is kept in its column)
    assert {r["diaSourceId"] for r in new} == {SAMPLE_ALERT_ID} and {r["alertId"] for r in new} == {None}
    assert {r["diaSourceId"] for r in old} == {SAMPLE_DIA_SOURCE_ID} and {r["alertId"] for r in old} == \
        {SAMPLE_ALERT_ID}
    assert {r["diaObjectId"] for r in rows} == {SAMPLE_DIA_OBJECT_ID}  # from diaObject: diaSource's is null
    assert {r["diaSource"]["diaSourceId"] for r in rows} == {SAMPLE_DIA_SOURCE_ID}
    assert {r["diaObject"]["diaObjectId"] for r in rows} == {SAMPLE_DIA_OBJECT_ID}
    assert {r["night"] for r in new} == {dt.date(2025, 8, 15)} and {r["night"] for r in old} == \
        {dt.date(2016, 11, 28)}
    assert {r["schema_id"] for r in rows} == {sid for sid, _ in schemas.known_schemas()}
    assert {r["observation_reason"] for r in old} == {None}  # a field older versions lack is null
    assert {r["source_key"] for r in rows} == {"rubin/x.avro"} and {r["part"] for r in rows} == {0}
    assert "cutoutDifference" not in alerts.schema.names and "cutoutScience" not in alerts.schema.names
    for name in ("source_bucket", "source_key", "source_etag", "source_member", "part", "ingested_at",
                 "schema_version", "midpointMjdTai"):
        assert name in alerts.schema.names


def test_a_bad_record_is_rejected_alone():
    old = lsst.decode_lsst(sample_bytes("7.4")).records[0]  # Unix seconds in midpointMjdTai, as Rubin shipped it
    good = lsst.decode_lsst(sample_bytes("11.1"))
    bad_type = lsst.decode_lsst(sample_bytes("11.1")).records[0]
    bad_type["diaSource"]["band"] = 12345  # a number where the schema has a string: Arrow refuses this row only
    no_source = {"diaSourceId": 7}
    records = [old, good.records[0], bad_type, no_source]
    out = lsst.lsst_tables(records, meta(good))
    assert [(i, e.reason) for i, e in out.rejected] == [(0, "bad_value"), (2, "not_lsst_alert"),
                                                        (3, "not_lsst_alert")]
    assert "1480360995" in out.rejected[0][1].detail
    assert out.alerts.num_rows == 1 and out.alerts["diaSourceId"].to_pylist() == [SAMPLE_ALERT_ID]


def test_cutouts_become_rows_of_the_cutout_table_like_ztfs():
    ztf = fastavro.reader(io.BytesIO((ALERTS / REAL_402).read_bytes()))
    fits = gzip.decompress(next(iter(ztf))["cutoutDifference"]["stampData"])  # real FITS bytes
    assert fits.startswith(b"SIMPLE")
    decoded = lsst.decode_lsst(sample_bytes("11.1"))
    [rec] = decoded.records
    assert rec["cutoutDifference"] is None  # Rubin's samples carry no cutouts
    rec["cutoutDifference"] = fits
    roundtrip = lsst.decode_lsst(frame("11.1", rec))  # through the wire format, bytes unchanged
    out = lsst.lsst_tables(roundtrip.records, meta(roundtrip, part=3))
    assert list(out.cutouts.schema.names) == list(ZTF_CUTOUT_COLUMNS)  # one table, both surveys (survey column)
    assert out.cutouts.schema.field("stamp_data").type == pa.binary()
    [row] = out.cutouts.to_pylist()
    assert row == {"survey": "lsst", "candid": SAMPLE_ALERT_ID, "objectId": str(SAMPLE_DIA_OBJECT_ID),
                   "night": dt.date(2025, 8, 15), "kind": "difference", "file_name": None, "stamp_data": fits,
                   "source_bucket": "alerts", "source_key": "rubin/x.avro", "source_etag": "e1", "part": 3}
    assert "cutoutDifference" not in out.alerts.schema.names


def test_the_lsst_package_and_its_heavy_dependencies_are_never_imported():
    code = ("import sys; from ateda.lsst import alerts, schemas\n"
            "assert not [m for m in sys.modules if m == 'lsst' or m.startswith('lsst.')]\n"
            "assert not schemas.schema.cache_info().currsize  # nothing read at import time\n"
            "avro = schemas.sample_files()['11.1'][0]\n"
            "d = alerts.decode_lsst(avro.read_bytes()); alerts.lsst_tables(d.records, {})\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lsst', 'astropy', 'pydantic', 'felis'))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decompression_inflates_lazily():
    """gunzip stops after the limit: a bomb never inflates to its full size."""
    bomb = gzip.compress(b"\0" * (64 << 20))
    with pytest.raises(BadInput) as exc:
        lsst.gunzip(bomb, 1 << 20)
    assert exc.value.reason == "too_large"
    with pytest.raises(BadInput) as exc:
        lsst.gunzip(b"\x1f\x8b\x08\x00" + b"\xff" * 40, 1 << 20)
    assert exc.value.reason in ("corrupt_gzip", "truncated_gzip")
    assert zlib.crc32(lsst.gunzip(gzip.compress(b"abc"), 10)) == zlib.crc32(b"abc")
