"""A half-broken alert keeps what is good in it (issue 12, design 7; review 1.15).

The real case: two Fink re-serialisations in ../shared/data/ztf whose ``prv_candidates`` is a record of strings (one
string per column), not ZTF's array of records. Their ``candidate`` detection and cutouts go to bronze; the
unreadable history is quarantined as ``unreadable_history``, counted in ``ateda_rejected_total``, and named in the
split's manifest (what the ingest summary reads). A file with no usable alert is still rejected whole.
"""

from __future__ import annotations

import csv
import io
import json

import fastavro
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from ateda.errors import BadInput
from ateda.events import catalogue as events
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.quarantine import quarantine_key
from ateda.lake.storage import bucket_store, lake_store
from ateda.steps.split import Splitter
from ateda.ztf.alerts import AlertBatch, Source, decode_container
from conftest import ALERTS, ZTF, app, post

GOOD = "alercebroker_pipeline_3044341005815015012.avro"  # a real 4.02 alert with a readable history


def half_broken_files() -> list[str]:
    """The files of PROVENANCE.tsv whose writer schema's prv_candidates (or fp_hists) is not an array: found here
    from fastavro's reading of each file, not from a list in the code under test."""
    found = []
    with open(ZTF / "PROVENANCE.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            with open(ALERTS / row["file"], "rb") as f:
                try:
                    schema = fastavro.reader(f).writer_schema
                except Exception:  # noqa: BLE001 (a damaged file: not this test's subject)
                    continue
            for fld in schema["fields"]:
                if fld["name"] in ("prv_candidates", "fp_hists"):
                    types = fld["type"] if isinstance(fld["type"], list) else [fld["type"]]
                    if not any(isinstance(t, dict) and t.get("type") == "array" for t in types):
                        found.append(row["file"])
    return sorted(set(found))


def fastavro_records(name: str) -> list[dict]:
    with open(ALERTS / name, "rb") as fh:
        return list(fastavro.reader(fh))


def test_the_real_half_broken_files_are_the_two_fink_samples():
    files = half_broken_files()
    assert files == ["astrolabsoftware_fink-client_fink-broker-sample-alert-2.avro",
                     "astrolabsoftware_fink-client_fink-broker-sample-alert-4.avro"]
    for name in files:
        assert isinstance(fastavro_records(name)[0]["prv_candidates"], dict)  # a record of strings


def test_decoding_keeps_the_candidate_and_cutouts_and_reports_the_history():
    for name in half_broken_files():
        (rec,) = fastavro_records(name)
        decoded = decode_container((ALERTS / name).read_bytes())
        batch = AlertBatch()
        assert batch.add(decoded, decoded.records, Source("b", name, "e"), 0, None) == []
        problems = batch.take_history_problems()
        alerts, cutouts = batch.tables()
        assert alerts.num_rows == 1
        assert alerts["candid"].to_pylist() == [rec["candidate"]["candid"]]
        assert alerts["objectId"].to_pylist() == [rec["objectId"]]
        cand = alerts["candidate"].to_pylist()[0]
        assert cand["magpsf"] == pytest.approx(rec["candidate"]["magpsf"])
        assert cand["jd"] == rec["candidate"]["jd"]
        assert "prv_candidates" not in alerts.column_names  # not in bronze: it could not be read
        stamps = dict(zip(cutouts["kind"].to_pylist(), cutouts["stamp_data"].to_pylist()))
        assert stamps == {"science": rec["cutoutScience"]["stampData"],
                          "template": rec["cutoutTemplate"]["stampData"],
                          "difference": rec["cutoutDifference"]["stampData"]}
        assert [(row["candid"], err.reason) for row, err in problems] == [
            (rec["candidate"]["candid"], "unreadable_history")]
        assert "prv_candidates" in problems[0][1].detail and "kept" in problems[0][1].detail


def _no_usable_alert() -> bytes:
    """A real Fink sample rewritten with its candidate as a map of strings too: no usable alert in the file."""
    with open(ALERTS / half_broken_files()[0], "rb") as fh:
        reader = fastavro.reader(fh)
        schema, rec = reader.writer_schema, next(reader)
    for fld in schema["fields"]:
        if fld["name"] == "candidate":
            fld["type"] = {"type": "map", "values": "string"}
    rec = dict(rec, candidate={k: str(v) for k, v in rec["candidate"].items()})
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [rec])
    return out.getvalue()


def test_a_file_with_no_usable_alert_is_still_rejected_whole():
    with pytest.raises(BadInput) as err:
        decode_container(_no_usable_alert())
    assert err.value.reason == "not_ztf_alert"


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("ateda_rejected_total", {"function": "split", "reason": reason}) or 0


def test_split_stages_the_candidate_and_quarantines_the_history(env_settings):
    s = env_settings
    names = half_broken_files()
    store = bucket_store(s)
    objects = [{"key": n, "etag": store.put_bytes(n, (ALERTS / n).read_bytes())} for n in [*names, GOOD]]
    objects.append({"key": "nothing.avro", "etag": store.put_bytes("nothing.avro", _no_usable_alert())})
    emitted: list[tuple[str, dict, str]] = []
    before = _rejected("unreadable_history"), _rejected("not_ztf_alert")
    out = Splitter(s, store, lake_store(s), lambda t, d, subj, survey=None: emitted.append((t, d, subj))).run(s.bucket, objects)

    staged = {src["key"]: src["alerts"] for c in out["chunks"] for src in c["sources"]}
    assert staged == {names[0]: 1, names[1]: 1, GOOD: 1}
    by_key = {}
    for r in out["rejected"]:
        by_key.setdefault(r["source"]["key"], []).append(r)
    assert sorted(by_key) == sorted([*names, "nothing.avro"])
    for name in names:
        (record,) = by_key[name]
        assert record["reason"] == "unreadable_history" and record["alerts_kept"] == 1
        assert str(fastavro_records(name)[0]["candidate"]["candid"]) in record["detail"]
        src = record["source"]
        copy = lake_store(s).get_bytes(quarantine_key(Source(src["bucket"], src["key"], src["etag"]),
                                                      "unreadable_history"))
        assert copy == (ALERTS / name).read_bytes(), "the unreadable history is kept, in the quarantined copy"
    (nothing,) = by_key["nothing.avro"]
    assert nothing["reason"] == "not_ztf_alert" and nothing["alerts_kept"] == 0
    assert _rejected("unreadable_history") - before[0] == 2
    assert _rejected("not_ztf_alert") - before[1] == 1
    assert sum(1 for t, d, _ in emitted if t == events.INPUT_REJECTED and d["reason"] == "unreadable_history") == 2

    # the manifest (what `ateda ingest` summarises) names the rejection of the history beside the kept alert
    manifests = [json.loads(lake_store(s).get_bytes(i.key)) for i in lake_store(s).list("manifests/")]
    listed = {(o["key"], r["reason"]) for m in manifests for o in m["objects"] for r in o["rejected"]}
    assert {(n, "unreadable_history") for n in names} <= listed

    # the staged rows: the candidates of the half-broken alerts, without a history column of theirs
    staged_rows = {}
    for info in lake_store(s).list("staging/"):
        if info.key.rsplit("/", 1)[-1].startswith("alert-") and info.key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(lake_store(s).get_bytes(info.key)))
            prv = (table["prv_candidates"].to_pylist() if "prv_candidates" in table.column_names
                   else [None] * table.num_rows)
            staged_rows.update(zip(table["source_key"].to_pylist(), zip(table["candid"].to_pylist(), prv)))
    for name in names:
        assert staged_rows[name] == (fastavro_records(name)[0]["candidate"]["candid"], None)
    assert staged_rows[GOOD][1], "a readable history is staged"


@pytest.mark.slow
def test_bronze_commits_the_half_broken_alerts(env_settings, sink):
    s = env_settings
    names = half_broken_files()
    store = bucket_store(s)
    objects = [{"key": n, "etag": store.put_bytes(n, (ALERTS / n).read_bytes())} for n in [*names, GOOD]]
    split, bronze = app("split"), app("bronze")
    assert post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects}).status_code == 200
    for e in sink.of(events.ALERTS_STAGED):
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    tables = ensure_tables(load_catalog(s), s)
    alerts = tables["alert"].scan(selected_fields=("source_key", "candid", "prv_candidates")).to_arrow()
    got = {k: (c, p) for k, c, p in zip(*(alerts[n].to_pylist() for n in ("source_key", "candid", "prv_candidates")))}
    for name in names:
        candid, prv = got[name]
        assert candid == fastavro_records(name)[0]["candidate"]["candid"] and not prv  # no history row
    assert got[GOOD][1], "a readable history is kept"
    cut = tables["cutout"].scan(selected_fields=("source_key", "kind")).to_arrow()
    kinds = sorted(k for key, k in zip(cut["source_key"].to_pylist(), cut["kind"].to_pylist()) if key == names[0])
    assert kinds == ["difference", "science", "template"]
