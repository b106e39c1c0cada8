"""Conflicting copies are resolved by provenance and shown (issue 12, design 8), end to end on a real alert.

A real 4.02 alert and a re-serialisation of it made here (as other brokers re-serialise: some history values
edited) are ingested together and the warehouse refreshed. The two alerts' histories share every entry; four of
them differ. Expected, from the rule (docs/data-model.md, "One copy of everything"), computed here from the Avro
records and never from SQL:
* detection X: the copy's jd was edited (it no longer agrees with the time its candid encodes) and its magpsf: the
  real copy is kept whatever the order of the files' keys (kept_because jd_agrees); the conflict row names jd and
  magpsf;
* detection Y: only magpsf edited, both jds agree, both are history rows of alerts with the same jd and schema:
  the documented source order decides (the smaller bucket key), kept_because source_order;
* upper limit Z (no candid; its pid encodes its time): diffmaglim edited: source order;
* forced-photometry point F: jd and flux edited: the real copy is kept (jd_agrees).
"""

from __future__ import annotations

import io
import shutil

import duckdb
import fastavro
import pytest

from ateda.config import Settings
from ateda.ingest import run_ingest
from ateda.warehouse import build as warehouse
from ateda.warehouse import location
from conftest import ALERTS

REAL = "alercebroker_pipeline_3044341005815015012.avro"  # ZTF22aaldvku, 11 history entries, 10 forced points
COPY = "a_reserialised_copy.avro"  # sorts before REAL: the source order prefers the copy when nothing else decides


def encoded_jd(pid: int) -> float:
    """The JD a ZTF pid encodes (field notes, "ZTF candid encodes its time")."""
    return 2457754.5 + pid // 10**9 + (pid // 10**4 % 10**5) * 1e-5


def _reserialise(dest) -> dict:  # noqa: ANN001
    """Write the real alert with four history values edited to ``dest``; return what was edited."""
    with open(ALERTS / REAL, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, rec = reader.writer_schema, next(reader)
    prv = [dict(p) for p in rec["prv_candidates"]]
    dets = [p for p in prv if p["candid"] is not None]
    limits = [p for p in prv if p["candid"] is None]
    x, y, z = dets[0], dets[1], limits[0]
    for p, id_ in ((x, x["candid"] // 10**6), (y, y["candid"] // 10**6), (z, z["pid"])):
        assert abs(p["jd"] - encoded_jd(id_)) <= 2e-5, "the real copies' jds agree with their ids"
    edited = {"X": dict(x), "Y": dict(y), "Z": dict(z), "alert": rec}
    x["jd"], x["magpsf"] = x["jd"] + 0.5, x["magpsf"] + 0.3
    y["magpsf"] = y["magpsf"] + 0.2
    z["diffmaglim"] = z["diffmaglim"] - 0.5
    fps = [dict(f) for f in rec["fp_hists"]]
    f = fps[0]
    assert abs(f["jd"] - encoded_jd(f["pid"])) <= 2e-5
    edited["F"] = dict(f)
    f["jd"], f["forcediffimflux"] = f["jd"] + 0.25, f["forcediffimflux"] * 1.5
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [dict(rec, prv_candidates=prv, fp_hists=fps)])
    dest.write_bytes(out.getvalue())
    with open(dest, "rb") as fh:  # as stored (floats are 32-bit in the schema)
        stored = next(fastavro.reader(fh))
    by_candid = {p["candid"]: p for p in stored["prv_candidates"] if p["candid"] is not None}
    edited["X'"], edited["Y'"] = by_candid[x["candid"]], by_candid[y["candid"]]
    edited["Z'"] = next(p for p in stored["prv_candidates"] if p["candid"] is None and p["pid"] == z["pid"])
    edited["F'"] = next(p for p in stored["fp_hists"] if p["pid"] == f["pid"])
    return edited


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("conflicts")
    inbox = root / "in"
    inbox.mkdir()
    shutil.copyfile(ALERTS / REAL, inbox / REAL)  # the real file, read at test time (never kept in the repository)
    edited = _reserialise(inbox / COPY)
    s = Settings.from_env({"ATEDA_HOME": str(root / "home")})
    summary = run_ingest(s, [inbox], quiet=True, bronze_only=True)
    assert summary.alerts == 2 and not summary.rejected
    result = warehouse.refresh_models(s, test=True)
    assert result.success, result.errors
    with duckdb.connect(str(location.duckdb_path(s)), read_only=True) as con:
        keys = dict(con.execute("select source_key, candid from bronze.alert").fetchall())
    real_key = next(k for k in keys if k.endswith(REAL))
    copy_key = next(k for k in keys if k.endswith(COPY))
    assert copy_key < real_key
    return s, edited, real_key, copy_key


def _query(s: Settings, sql: str, params: list | None = None) -> list[dict]:
    with duckdb.connect(str(location.duckdb_path(s)), read_only=True) as con:
        rel = con.execute(sql, params or [])
        cols = [d[0] for d in rel.description]
        return [dict(zip(cols, r)) for r in rel.fetchall()]


def _conflict(s: Settings, kind: str, key: str) -> dict[bool, dict]:
    rows = _query(s, "select * from silver.copy_conflict where kind = ? and conflict_key = ?", [kind, key])
    assert len(rows) == 2, rows
    return {r["is_kept"]: r for r in rows}


@pytest.mark.slow
def test_edited_jd_loses_to_the_copy_whose_jd_its_candid_encodes(built):
    s, edited, real_key, copy_key = built
    x = edited["X"]
    (kept,) = _query(s, "select * from silver.detection where candid = ?", [x["candid"]])
    assert kept["src_key"] == real_key, "the real copy is kept although the edited one's key sorts first"
    assert kept["jd"] == x["jd"] and kept["magpsf"] == pytest.approx(x["magpsf"], abs=1e-6)
    rows = _conflict(s, "detection", str(x["candid"]))
    assert rows[True]["src_key"] == real_key and rows[True]["kept_because"] == "jd_agrees"
    assert rows[False]["src_key"] == copy_key and rows[False]["differs_from_kept"] == "jd,magpsf"
    assert rows[False]["jd"] == edited["X'"]["jd"]
    assert rows[False]["src_alert_candid"] == rows[True]["src_alert_candid"] == edited["alert"]["candid"]


@pytest.mark.slow
def test_otherwise_the_documented_source_order_decides(built):
    s, edited, real_key, copy_key = built
    y = edited["Y"]
    (kept,) = _query(s, "select * from silver.detection where candid = ?", [y["candid"]])
    assert kept["src_key"] == copy_key and kept["magpsf"] == pytest.approx(edited["Y'"]["magpsf"], abs=1e-6)
    rows = _conflict(s, "detection", str(y["candid"]))
    assert rows[True]["src_key"] == copy_key and rows[True]["kept_because"] == "source_order"
    assert rows[False]["src_key"] == real_key and rows[False]["differs_from_kept"] == "magpsf"

    z = edited["Z"]
    (limit,) = _query(s, "select * from silver.non_detection where objectId = ? and pid = ?",
                      ["ZTF22aaldvku", z["pid"]])
    assert limit["src_key"] == copy_key and limit["diffmaglim"] == pytest.approx(edited["Z'"]["diffmaglim"], abs=1e-6)
    rows = _conflict(s, "non_detection", f"ZTF22aaldvku/{z['pid']}")
    assert rows[True]["src_key"] == copy_key and rows[False]["differs_from_kept"] == "diffmaglim"


@pytest.mark.slow
def test_forced_photometry_point_with_an_edited_jd_loses(built):
    s, edited, real_key, copy_key = built
    f = edited["F"]
    (kept,) = _query(s, "select * from silver.forced_photometry where objectId = ? and pid = ?",
                     ["ZTF22aaldvku", f["pid"]])
    assert kept["src_key"] == real_key and kept["forcediffimflux"] == pytest.approx(f["forcediffimflux"], rel=1e-6)
    rows = _conflict(s, "forced_photometry", f"ZTF22aaldvku/{f['pid']}")
    assert rows[True]["kept_because"] == "jd_agrees"
    assert rows[False]["src_key"] == copy_key and rows[False]["differs_from_kept"] == "jd,forcediffimflux"


@pytest.mark.slow
def test_only_the_edited_entries_conflict(built):
    s, edited, _, _ = built
    keys = {(r["kind"], r["conflict_key"]) for r in _query(s, "select kind, conflict_key from silver.copy_conflict")}
    assert keys == {("detection", str(edited["X"]["candid"])), ("detection", str(edited["Y"]["candid"])),
                    ("non_detection", f"ZTF22aaldvku/{edited['Z']['pid']}"),
                    ("forced_photometry", f"ZTF22aaldvku/{edited['F']['pid']}")}
    # no edited copy became a measurement of its own: one row per real detection, upper limit and forced point
    alert = edited["alert"]
    history = alert["prv_candidates"]
    counts = _query(s, "select (select count(*) from silver.detection) as d, (select count(*) from "
                       "silver.non_detection) as n, (select count(*) from silver.forced_photometry) as f")[0]
    assert counts == {"d": 1 + sum(p["candid"] is not None for p in history),
                      "n": sum(p["candid"] is None for p in history),
                      "f": sum(f["forcediffimflux"] not in (None, 0, -99999)
                               and f["forcediffimfluxunc"] not in (None, 0, -99999) for f in alert["fp_hists"])}
