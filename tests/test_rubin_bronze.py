"""Rubin alerts through the real pipeline (split and bronze servers, the local broker, Iceberg): the official sample
alerts of lsst-alert-packet (read from the installed distribution at test time) in every form Rubin ships, with real
ZTF stamps as their cutouts and real ZTF alerts beside them in one lake.

Truth is computed here from the inputs with fastavro, independently of the decoder: which diaSourceIds each file
holds, which cutout bytes go with each, and which inputs must be quarantined with which reason.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import fastavro
import pyarrow.compute as pc

from ateda.config import Settings
from ateda.ingest import run_ingest
from ateda.lake.iceberg import existing_lsst_table, load_catalog
from ateda.lsst import schemas
from conftest import alert_files, bronze, expected_alerts

RUBIN_IDS = 1 << 60  # ids above 2**53: a float anywhere on the way would lose them
MJD = 61000.25  # 2025-11-21T06:00 UTC (03:00 in Chile, the night that began on the 20th): dayObs 2025-11-20


def _sample_record(version: str) -> dict:
    with open(schemas.sample_files()[version][0], "rb") as fh:
        return next(iter(fastavro.reader(fh)))


def _sid(version: str) -> int:
    return next(i for i, v in schemas.known_schemas() if v == version)


def _stamps(n: int) -> list[bytes]:
    """FITS images from real ZTF alerts (their gzipped stamps, inflated): Rubin sends plain FITS."""
    out = []
    for path in alert_files():
        for rec in _readable(path.read_bytes()):
            cut = rec.get("cutoutScience") or {}
            data = cut.get("stampData") if isinstance(cut, dict) else None
            if data and data[:2] == b"\x1f\x8b":
                out.append(gzip.decompress(data))
            if len(out) == n:
                return out
    raise AssertionError("not enough real ZTF stamps")


def _alerts(version: str, first: int, n: int, stamps: list[bytes]) -> list[dict]:
    """``n`` alerts of ``version`` made from its official sample, ids from ``first`` (one object per two alerts),
    each with three real stamps."""
    out = []
    for i in range(n):
        rec = _sample_record(version)
        sid = first + i
        rec["diaSourceId"] = sid
        rec["diaSource"]["diaSourceId"] = sid
        rec["diaSource"]["diaObjectId"] = RUBIN_IDS + 1000 + i // 2
        rec["diaSource"]["midpointMjdTai"] = MJD + i / 1440
        for j, kind in enumerate(("cutoutScience", "cutoutTemplate", "cutoutDifference")):
            rec[kind] = stamps[(i + j) % len(stamps)]
        out.append(rec)
    return out


def _container(version: str, records: list[dict]) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, schemas.schema(_sid(version)).json, records, codec="deflate")
    return buf.getvalue()


def _frame(version: str, record: dict, sid: int | None = None) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.schema(_sid(version)).parsed, record)
    return b"\0" + (sid or _sid(version)).to_bytes(4, "big") + buf.getvalue()


def _readable(data: bytes) -> list[dict]:
    """The records fastavro reads from a damaged container before it fails."""
    out = []
    try:
        for rec in fastavro.reader(io.BytesIO(data)):
            out.append(rec)
    except Exception:  # noqa: BLE001 - the damage: what came before it is the truth
        pass
    return out


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_rubin_and_ztf_alerts_land_once_in_one_lake(tmp_path):
    stamps = _stamps(5)
    inp = tmp_path / "in"
    (inp / "rubin").mkdir(parents=True)
    truth: dict[str, list[dict]] = {}  # file (key relative to the input) -> the Rubin alerts it carries

    def put(name: str, data: bytes, records: list[dict]) -> None:
        (inp / "rubin" / name).write_bytes(data)
        truth[f"in/rubin/{name}"] = records

    many = _alerts("11.1", RUBIN_IDS, 7, stamps)
    put("visit.avro", _container("11.1", many), many)  # one container, many alerts
    for k, version in enumerate(("8.0", "9.0", "10.0", "11.0")):  # every version since 8.0, as Kafka frames
        rec = _alerts(version, RUBIN_IDS + 100 + k, 1, stamps)
        put(f"frame-{version}.bin", _frame(version, rec[0]), rec)
    gz = _alerts("11.1", RUBIN_IDS + 200, 3, stamps)
    put("archive.avro.gz", gzip.compress(_container("11.1", gz)), gz)  # the Rubin archive's form
    one = _alerts("11.1", RUBIN_IDS + 300, 1, stamps)
    put("frame.bin.gz", gzip.compress(_frame("11.1", one[0])), one)
    # bad input beside it: an unknown schema id, a cut container, Rubin's own 3.0 sample (Unix seconds as MJD)
    bad = {"unknown-id.bin": ("unknown_schema_id", _frame("11.1", one[0], sid=1299)),
           "cut.avro": (None, _container("11.1", _alerts("11.1", RUBIN_IDS + 400, 4, stamps))[:-900]),
           "old-3.0.avro": ("bad_value", schemas.sample_files()["3.0"][0].read_bytes())}
    for name, (_, data) in bad.items():
        (inp / "rubin" / name).write_bytes(data)
    truth["in/rubin/cut.avro"] = _readable(bad["cut.avro"][1])  # the records before the damage go on
    # a tarball mixing the surveys: its parts never hold both
    ztf = [f for f in alert_files()[:40] if f.suffix == ".avro"][:6]
    mixed = _alerts("11.1", RUBIN_IDS + 500, 4, stamps)
    members = {f"z/{f.name}": f.read_bytes() for f in ztf[:3]}
    members |= {f"r/{i}.bin": _frame("11.1", rec) for i, rec in enumerate(mixed)}
    members |= {f"z/{f.name}": f.read_bytes() for f in ztf[3:]}
    _tar(inp / "night.tar.gz", members)

    s = Settings.from_env({"ATEDA_HOME": str(tmp_path / "home"), "ATEDA_CHUNK_ALERTS": "5"})
    summary = run_ingest(s, [inp], quiet=True, bronze_only=True)
    again = run_ingest(s, [inp], quiet=True, bronze_only=True)  # at-least-once: the same files again

    catalog = load_catalog(s)
    lsst = existing_lsst_table(catalog, s).scan().to_arrow()
    got = sorted(zip(lsst["source_key"].to_pylist(), lsst["source_member"].to_pylist(), lsst["diaSourceId"].to_pylist()))
    want = sorted([(key, None, r["diaSourceId"]) for key, recs in truth.items() for r in recs]
                  + [("in/night.tar.gz", f"r/{i}.bin", r["diaSourceId"]) for i, r in enumerate(mixed)])
    assert got == want, "every Rubin alert exactly once, ids exact"
    assert lsst["diaSourceId"].type == lsst["diaObjectId"].type == lsst.schema.field("diaSourceId").type
    by_id = {r["diaSourceId"]: r for recs in [*truth.values(), mixed] for r in recs}
    for row in lsst.select(["diaSourceId", "diaObjectId", "night", "midpointMjdTai"]).to_pylist():
        rec = by_id[row["diaSourceId"]]
        assert row["diaObjectId"] == rec["diaSource"]["diaObjectId"]
        assert row["midpointMjdTai"] == rec["diaSource"]["midpointMjdTai"]
        assert str(row["night"]) == "2025-11-20"  # dayObs: UTC - 12 h
    # cutouts: three per Rubin alert, the alert's own bytes, survey "lsst"; ZTF's stamps say "ztf"
    cut = bronze(s)["cutout"].scan().to_arrow()
    rubin_cut = cut.filter(pc.equal(cut["survey"], "lsst"))
    assert rubin_cut.num_rows == 3 * len(by_id)
    for row in rubin_cut.select(["candid", "kind", "stamp_data", "objectId"]).to_pylist():
        rec = by_id[row["candid"]]
        assert row["stamp_data"] == rec[f"cutout{row['kind'].capitalize()}"]
        assert row["objectId"] == str(rec["diaSource"]["diaObjectId"])
    assert set(cut.filter(pc.invert(pc.equal(cut["survey"], "lsst")))["survey"].to_pylist()) == {"ztf"}
    # the ZTF alerts of the same run are in bronze.alert, as before
    ztf_rows = bronze(s)["alert"].scan().to_arrow()
    assert sorted(ztf_rows["candid"].to_pylist()) == sorted(c for v in expected_alerts(ztf).values() for c in v)
    # no part in both alert tables; every part of every file in the ledger once
    rubin_parts = set(zip(lsst["source_key"].to_pylist(), lsst["part"].to_pylist()))
    ztf_parts = set(zip(ztf_rows["source_key"].to_pylist(), ztf_rows["part"].to_pylist()))
    assert not rubin_parts & ztf_parts and {p for _, p in rubin_parts if _ == "in/night.tar.gz"}
    ledger = bronze(s)["ingest_ledger"].scan().to_arrow()
    keys = list(zip(ledger["source_key"].to_pylist(), ledger["part"].to_pylist()))
    assert len(keys) == len(set(keys)) and rubin_parts | ztf_parts <= set(keys)
    # bad input: quarantined with its reason, the rest went on
    reasons = {r["key"]: r["reason"] for r in summary.rejected}
    assert reasons["in/rubin/unknown-id.bin"] == "unknown_schema_id"
    assert reasons["in/rubin/old-3.0.avro"] == "bad_value"
    assert reasons["in/rubin/cut.avro"] in ("truncated_avro", "corrupt_avro", "truncated")
    assert summary.by_survey == {"lsst": len(by_id), "ztf": ztf_rows.num_rows}
    assert again.new_alerts == 0 and again.alerts == summary.alerts
