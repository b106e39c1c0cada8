"""A catalog applies to the past too (review 1.3, issue 12 design 2): `ateda catalog add` after the alerts are in
bronze matches them through dev.ateda.catalog.registered, in bounded chunks, and silver/gold hold exactly the
matches an independent haversine over the Avro files expects, ZTF's and Rubin's; a re-delivered chunk changes
nothing."""

from __future__ import annotations

import json
import math

import fastavro
import pyarrow as pa
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from functions_framework import create_app
from pyiceberg.exceptions import CommitFailedException

from ateda.cli import main
from ateda.config import Settings, settings
from ateda.dev import synth_lsst
from ateda.errors import BadInput
from ateda.events import catalogue as events
from ateda.lake.storage import lake_store
from ateda.lake.iceberg import ensure_crossmatch_table, existing_crossmatch_table
from ateda.steps import crossmatch as xm
from ateda.warehouse.build import connect
from conftest import DAMAGED_TAIL, HALF_BROKEN, REPO, alert_files

ARCSEC = 1 / 3600


# ---------------------------------------------------------------- fast: chunk planning, bad files

@pytest.mark.parametrize("max_rows", [1, 7, 100, 10_000])
def test_plan_chunks_is_bounded_and_covers_every_row_once(max_rows):
    files = [("a", 0), ("b", 1), ("c", 250), ("d", 7), ("e", 99), ("f", 100), ("g", 101), ("h", 3)]
    chunks = xm.plan_chunks(files, max_rows)
    total = sum(n for _, n in files)
    assert len(chunks) == math.ceil(total / max_rows)
    seen: dict[str, list[int]] = {}
    for chunk in chunks:
        assert chunk and sum(s["stop"] - s["start"] for s in chunk) <= max_rows
        for s in chunk:
            assert 0 <= s["start"] < s["stop"]
            seen.setdefault(s["file"], []).extend(range(s["start"], s["stop"]))
    for name, n in files:  # every row of every file exactly once, none invented
        assert sorted(seen.get(name, [])) == list(range(n))
    assert xm.plan_chunks(files, max_rows) == chunks  # deterministic: a re-planned run has the same chunks
    # files that name their survey (bronze.alert's, bronze.lsst_alert's): every slice says whose rows it holds
    named = xm.plan_chunks([(f, n, "lsst" if f in "ceg" else "ztf") for f, n in files], max_rows)
    assert [[{k: v for k, v in x.items() if k != "survey"} for x in c] for c in named] == chunks
    assert all(x["survey"] == ("lsst" if x["file"] in "ceg" else "ztf") for c in named for x in c)
    with pytest.raises(ValueError):
        xm.plan_chunks(files, 0)


def test_bad_catalog_files_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    (tmp_path / "cols.csv").write_text("x,y\n1,2\n")
    (tmp_path / "junk.parquet").write_bytes(b"\x00\x01 not parquet")
    (tmp_path / "dec.csv").write_text("id,ra,dec\na,10,95\n")
    (tmp_path / "empty.csv").write_text("id,ra,dec\n")
    for name in ("cols.csv", "junk.parquet", "dec.csv", "empty.csv", "missing.csv"):
        assert main(["catalog", "add", "w", str(tmp_path / name), "--radius-arcsec", "1"]) == 2, name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and name in err, err


def test_a_second_writer_of_the_same_work_appends_nothing(tmp_path):
    """Two pods with one chunk: the one whose table is stale loses the optimistic commit (real Iceberg, SQLite
    catalog), and its retry finds the work key in the winner's snapshot: the rows are appended once."""
    s = Settings(home=tmp_path / "home").resolved()
    (tmp_path / "w.csv").write_text("id,ra,dec\na,10.0,20.0003\nb,200.0,-30.0\n")
    info = xm.add_reference_catalog(s, "w", tmp_path / "w.csv", radius_arcsec=2.0)
    alerts = pa.table({"candid": pa.array([11, 12], pa.int64()), "objectId": ["ZTFa", "ZTFb"],
                       "ra": [10.0, 50.0], "dec": [20.0, 0.0], "night": pa.array([None, None], pa.date32())})
    found = xm.match(s, alerts, [info])
    assert found["match_id"].to_pylist() == ["a"]
    xm.commit_matches(s, xm.CROSSMATCH.empty_table(), [info], [1], work="")  # the table exists, empty
    stale = ensure_crossmatch_table(s)  # the second pod loaded the table here
    assert xm.commit_matches(s, found, [info], [11], work="backfill:w:v:r:0")[0] == 1  # the first pod wins
    with pytest.raises(CommitFailedException):  # the second pod's append on its stale table cannot land
        xm._append_new(stale, found, [11], "", "backfill:w:v:r:0")
    assert xm.commit_matches(s, found, [info], [11], work="backfill:w:v:r:0")[0] == 0  # its retry: already done
    assert ensure_crossmatch_table(s).scan().to_arrow().num_rows == 1


def test_a_chunk_whose_file_is_gone_is_bad_input_and_recorded(tmp_path):
    """A planned data file removed since (compacted, then expired): the chunk is bad input (acknowledged, not
    retried), and its record says why, so `ateda catalog add` stops with that reason instead of waiting."""
    s = Settings(home=tmp_path / "home").resolved()
    (tmp_path / "w.csv").write_text("id,ra,dec\na,10.0,20.0\n")
    info = xm.add_reference_catalog(s, "w", tmp_path / "w.csv", radius_arcsec=2.0)
    registered = xm.registered_data(info, "run1", 5)
    assert xm.plan_backfill(s, registered) == []  # an empty bronze: nothing planned
    chunk = {**registered, "range": {"kind": "files", "snapshot_id": None, "chunk": 0, "chunks": 1,
                                     "slices": [{"file": str(tmp_path / "gone.parquet"), "start": 0, "stop": 5}]}}
    events.validate(events.make_event(events.CATALOG_REGISTERED, "/test", chunk))
    with pytest.raises(BadInput) as err:
        xm.backfill_chunk(s, chunk)
    assert err.value.reason == "backfill_file_gone"
    progress = xm.backfill_progress(s, "w", info.version, "run1")
    assert progress.failed and progress.failed[0].startswith("backfill_file_gone") and progress.appended == 0


# ---------------------------------------------------------------- slow: the real thing, in the order of review 1.3

def _positions(files) -> list[tuple[str, int, str, float, float]]:
    """(survey, candid, objectId, ra, dec) of every alert in ``files``, straight from fastavro: ZTF's candidate, or
    a Rubin alert's triggering diaSource (diaSourceId, diaObjectId as digits, None for a solar-system-only one)."""
    out = []
    for f in files:
        with open(f, "rb") as fh:
            for rec in fastavro.reader(fh):
                if "diaSource" in rec:
                    src = rec["diaSource"]
                    oid = src.get("diaObjectId") or (rec.get("diaObject") or {}).get("diaObjectId")
                    out.append(("lsst", src["diaSourceId"], None if oid is None else str(oid), float(src["ra"]),
                                float(src["dec"])))
                    continue
                c = rec["candidate"]
                out.append(("ztf", c["candid"], rec["objectId"], float(c["ra"]), float(c["dec"])))
    return out


def _haversine_arcsec(ra1, dec1, ra2, dec2) -> float:
    p1, p2 = math.radians(dec1), math.radians(dec2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600


def _bronze_matches(s) -> list[tuple]:
    table = existing_crossmatch_table(s)
    if table is None or table.current_snapshot() is None:
        return []
    rows = table.refresh().scan().to_arrow()
    cols = ("catalog", "catalog_version", "survey", "candid", "match_id", "dist_arcsec", "matched_at")
    return sorted(zip(*(rows[c].to_pylist() for c in cols)))


def _redeliver(event_data: dict):  # noqa: ANN202
    client = create_app("handle", str(REPO / "functions" / "crossmatch" / "main.py"), "cloudevent").test_client()
    headers, body = to_binary(CloudEvent({"type": events.CATALOG_REGISTERED, "source": "/test"}, event_data))
    return client.post("/", headers=headers, data=body)


@pytest.mark.slow  # a full runtime and dbt, twice
def test_catalog_added_after_the_alerts_matches_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "300")
    monkeypatch.delenv("K_SINK", raising=False)
    settings.cache_clear()
    s = settings()
    files = [f for f in alert_files() if f.name not in HALF_BROKEN and f.name != DAMAGED_TAIL][::15][:30]
    assert len(files) == 30
    rubin = [p for p, _ in synth_lsst.write_containers(tmp_path / "rubin", 40, seed=3, per_file=20).files]

    # 1. the alerts first, both surveys
    assert main(["ingest", "--json", *map(str, files), str(tmp_path / "rubin")]) == 0
    alerts = _positions(files) + _positions(rubin)
    assert _bronze_matches(s) == []  # no catalog yet: nothing matched

    # 2. a watchlist built from some of their positions (both surveys, a solar-system-only Rubin alert among them),
    # 1 arcsec north, and sources far from any alert
    picked = alerts[::4] + [a for a in alerts if a[0] == "lsst" and a[2] is None][:1]
    assert {a[0] for a in picked} == {"ztf", "lsst"} and any(a[2] is None for a in picked)
    rows = [(f"near{i}", ra, dec + 1.0 * ARCSEC) for i, (_, _, _, ra, dec) in enumerate(picked)]
    rows += [(f"far{i}", (ra + 1.0) % 360, max(-89.0, min(89.0, dec - 1.0))) for i, (_, _, _, ra, dec) in
             enumerate(picked[:5])]
    (tmp_path / "watch.csv").write_text("id,ra,dec\n" + "".join(f"{i},{r!r},{d!r}\n" for i, r, d in rows))
    radius = 2.0
    capsys.readouterr()
    assert main(["catalog", "add", "watch", str(tmp_path / "watch.csv"), "--radius-arcsec", str(radius),
                 "--chunk-alerts", "7"]) == 0
    out = capsys.readouterr().out

    # the independent answer: haversine between every alert of the files and every source
    expected = {(sv, c, i): _haversine_arcsec(ra, dec, sra, sdec)
                for sv, c, _, ra, dec in alerts for i, sra, sdec in rows
                if _haversine_arcsec(ra, dec, sra, sdec) <= radius}
    matched = {k[:2] for k in expected}
    expected_objects = {(o, sv) for sv, c, o, _, _ in alerts if o is not None and (sv, c) in matched}
    assert len(expected) >= len(picked) and not any(i.startswith("far") for _, _, i in expected)
    assert {sv for sv, _, _ in expected} == {"ztf", "lsst"}
    assert f"backfill: {len(matched)} of the {len(alerts)} past alerts" in out, out

    # 3. silver and gold hold exactly those matches, at those distances, each of its survey
    with connect(s) as con:
        silver = con.execute("select survey, candid, match_id, dist_arcsec from silver.crossmatch_catalog "
                             "where catalog = 'watch'").fetchall()
        gold = con.execute("select objectId, survey from gold.object_catalog_match where catalog = 'watch'").fetchall()
    assert {r[:3] for r in silver} == set(expected) and len(silver) == len(expected)
    for sv, c, m, d in silver:
        assert d == pytest.approx(expected[(sv, c, m)], abs=1e-6)
    assert set(gold) == expected_objects
    rubin_object = next(o for o, sv in gold if sv == "lsst")
    capsys.readouterr()
    assert main(["object", rubin_object]) == 0
    text = capsys.readouterr().out
    assert f"Rubin diaObject {rubin_object}" in text and "catalog       watch: near" in text

    # 4. the backfill ran in bounded chunks, each recorded once
    version = xm.list_reference_catalogs(s)[0].version
    lake = lake_store(s)
    (plan_key,) = [i.key for i in lake.list(f"{xm.BACKFILL}watch/{version}/") if i.key.endswith("plan.json")]
    plan = json.loads(lake.get_bytes(plan_key))
    assert len(plan["chunks"]) >= 2 and all(sum(x["stop"] - x["start"] for x in c) <= 7 for c in plan["chunks"])
    assert {x["survey"] for c in plan["chunks"] for x in c} == {"ztf", "lsst"}
    assert plan["alerts"] == len(alerts) and set(plan["snapshot_ids"]) == {"alert", "lsst_alert"}

    # 5. re-delivering every chunk event of the run (as a broker retry would) appends nothing
    before = _bronze_matches(s)
    assert before and len(before) == len(expected)
    registered = {"catalog": "watch", "version": version, "radius_arcsec": radius, "run": plan["run"],
                  "range": {"kind": "bronze", "chunk_alerts": 7}}
    chunks = xm.plan_backfill(s, registered)  # the run's plan is kept: the same chunks again
    assert [c["range"]["slices"] for c in chunks] == plan["chunks"]
    for data in chunks:
        events.validate(events.make_event(events.CATALOG_REGISTERED, "/test", data))
        assert _redeliver(data).status_code == 200
    assert _bronze_matches(s) == before
