"""Decoding edge cases on real alerts: containers, codecs, gzip, tarballs, junk; deterministic parts."""

from __future__ import annotations

import gzip
import io
import tarfile

import fastavro
import pytest

from ateda.errors import BadInput
from ateda.steps.split import iter_containers
from ateda.ztf.alerts import AlertBatch, Source, decode_container, night_of
from conftest import ALERTS, DAMAGED_TAIL, HALF_BROKEN, alert_files, with_candidate_field


def test_every_real_file_decodes_or_is_rejected_for_a_stated_reason():
    kept = 0
    for f in alert_files():
        data = f.read_bytes()
        decoded = decode_container(data)
        assert (decoded.error is not None) == (f.name == DAMAGED_TAIL)
        batch = AlertBatch()
        assert batch.add(decoded, decoded.records, Source("b", f.name, "e"), 0, None) == []
        # the two Fink samples whose history is a record of strings: kept without it (tests/test_half_broken.py)
        problems = {err.reason for _, err in batch.take_history_problems()}
        assert problems == ({"unreadable_history"} if f.name in HALF_BROKEN else set())
        alerts, cutouts = batch.tables()
        assert alerts.num_rows == len(decoded.records)
        kept += alerts.num_rows
    assert kept > 600


def test_snappy_and_multi_alert_containers():
    snappy = next(f for f in alert_files() if _codec(f) == "snappy")
    assert len(decode_container(snappy.read_bytes()).records) == 1
    multi = ALERTS / "astrolabsoftware_fink-client_part-00002-0f70696a-f8dd-40ab-89e7-e7f64c104e25-c000.avro"
    decoded = decode_container(multi.read_bytes())
    assert len(decoded.records) == 56
    batch = AlertBatch(flush_every=10)  # several Arrow flushes, one schema
    batch.add(decoded, decoded.records, Source("b", multi.name, "e"), 0, None)
    alerts, _ = batch.tables()
    assert alerts.num_rows == 56 and alerts["extra_json"].null_count == 0  # Fink's extra fields kept


def test_gzipped_single_alert_and_tarballs_are_streamed():
    real = alert_files()[-1].read_bytes()
    assert [m for m, _ in iter_containers(io.BytesIO(gzip.compress(real)))] == [None]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("a.avro", real), ("notes.txt", b"junk")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = list(iter_containers(io.BytesIO(buf.getvalue())))
    assert [m for m, _ in got] == ["a.avro", "notes.txt"] and got[0][1] == real
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    last = list(iter_containers(io.BytesIO(truncated)))[-1][1]
    assert isinstance(last, BadInput) and last.reason in ("truncated_tar", "corrupt_gzip")


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty_file"), (b"plain text, no magic", "not_avro"), (b"Obj\x01\x00", "truncated_avro"),
])
def test_bad_bytes(payload, reason):
    with pytest.raises(BadInput) as err:
        (decode_container(payload) if payload[:1] == b"O" else _first(payload))
    assert err.value.reason == reason


def _first(payload: bytes):  # noqa: ANN202
    member, item = next(iter_containers(io.BytesIO(payload)))
    if isinstance(item, BadInput):
        raise item
    return decode_container(item)


def test_night_changes_at_palomar_local_noon():
    # 2018-11-20 03:00 UTC (evening of the 19th, local) and 12:00 UTC belong to the night labelled 2018-11-20
    jd_0300 = 2458442.625
    assert str(night_of(jd_0300)) == "2018-11-20"
    assert str(night_of(jd_0300 + 9 / 24)) == "2018-11-20"
    assert str(night_of(jd_0300 + 17.5 / 24)) == "2018-11-21"  # 20:30 UTC: the next night


def _codec(path) -> str:  # noqa: ANN001
    with open(path, "rb") as fh:
        return fastavro.reader(fh).codec


def test_a_record_arrow_cannot_hold_is_dropped_alone():
    """A record that passes every check but that Arrow cannot convert leaves the batch alone, named, with its
    cutouts; the others of its group convert (records edited by hand: fastavro would not produce them)."""
    multi = ALERTS / "astrolabsoftware_fink-client_avro_multi_alerts.avro"
    decoded = decode_container(multi.read_bytes())
    records = [dict(r, candidate=dict(r["candidate"])) for r in decoded.records]
    records[3]["candidate"]["fid"] = "not a number"
    batch = AlertBatch()
    assert batch.add(decoded, records, Source("b", multi.name, "e"), 0, None) == []
    alerts, cutouts = batch.tables()
    (row, err), = batch.take_dropped()
    assert row["candid"] == records[3]["candidate"]["candid"] and row["source_key"] == multi.name
    assert alerts.num_rows == batch.n_alerts == len(records) - 1
    assert records[3]["candidate"]["candid"] not in set(alerts["candid"].to_pylist())
    assert records[3]["candidate"]["candid"] not in set(cutouts["candid"].to_pylist())
    assert cutouts.num_rows == 3 * (len(records) - 1)


def test_fields_of_several_types_are_kept_as_text():

    data = with_candidate_field(["null", "long", "string"], None, values=(5, "five", None))
    decoded = decode_container(data)
    batch = AlertBatch()
    assert batch.add(decoded, decoded.records, Source("b", "k", "e"), 0, None) == []
    alerts, _ = batch.tables()
    assert alerts["candidate"].combine_chunks().field("extra").to_pylist() == ["5", "five", None]


@pytest.mark.parametrize("codec", ["deflate", "bzip2", "xz"])
def test_other_codecs_decode_bounded_and_checked(codec):
    from ateda.avro import Limits

    multi = ALERTS / "astrolabsoftware_fink-client_avro_multi_alerts.avro"
    with open(multi, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=codec)
    data = out.getvalue()
    decoded = decode_container(data)
    assert [r["candidate"]["candid"] for r in decoded.records] == [r["candidate"]["candid"] for r in records]
    with pytest.raises(BadInput) as err:  # the same blocks past a small limit: refused before inflating whole
        decode_container(data, Limits(max_bytes=10_000))
    assert err.value.reason == "too_large"
    cut = bytearray(data)
    cut[-40] ^= 0xFF  # inside the last block's compressed stream
    try:
        damaged = decode_container(bytes(cut))
        reason = damaged.error.reason if damaged.error else None
    except BadInput as exc:
        reason = exc.reason
    if codec == "deflate":  # raw deflate has no checksum: a flip inside a stored run can go unseen
        assert reason in ("checksum_mismatch", "corrupt_avro", "truncated_avro", "bad_value", None)
    else:  # bzip2 and xz carry a CRC of their own
        assert reason == "checksum_mismatch"
