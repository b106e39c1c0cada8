"""Queries from the command line: great_circle_arcsec against astropy, `ateda cone` against a brute-force search,
full-precision table cells, object ids in any case, the demo's object, and the status/replay manners (review 1.7,
1.12, 1.13, 1.24, 1.25, 1.27; issue 12 design 10 and 11). Positions and times are the real alerts'."""

from __future__ import annotations

import json
import math

import duckdb
import fastavro
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from ateda.cli import main
from ateda.cli.science import MAX_WIDTH, format_rows
from ateda.config import settings
from ateda.events import catalogue as events
from ateda.status import backlog_text
from ateda.warehouse import build
from ateda.warehouse.queries import install_functions, normalise_object_id, richest_object
from conftest import HALF_BROKEN, Sink, alert_files, app, post, put_alerts


def _real_candidates(limit: int = 400) -> list[dict]:
    """(ra, dec, jd) of the real alerts' candidates."""
    out = []
    for f in alert_files():
        if f.name in HALF_BROKEN:
            continue
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    c = rec["candidate"]
                    out.append({"ra": c["ra"], "dec": c["dec"], "jd": c["jd"]})
                    break
            except EOFError:
                continue
        if len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------- fast: no warehouse needed

def test_great_circle_arcsec_matches_astropy_on_real_positions():
    """Pairs of real positions (far apart, and each with offsets from 1 mas to 3 arcmin, across RA 0/360 and
    towards a pole) against astropy's separation (before: no such function in `ateda query`)."""
    pos = _real_candidates()
    assert len(pos) > 100
    pairs = [(a["ra"], a["dec"], b["ra"], b["dec"]) for a, b in zip(pos, pos[1:])]
    for p in pos[:60]:
        for off in (0.001, 0.1, 1.0, 180.0):  # arcsec
            d = off / 3600
            pairs.append((p["ra"], p["dec"], p["ra"] + d / math.cos(math.radians(p["dec"])), p["dec"]))
            pairs.append((p["ra"], p["dec"], p["ra"], min(90.0, p["dec"] + d)))
    pairs += [(359.9999, 10.0, 0.0001, 10.0), (10.0, 89.9999, 190.0, 89.9999), (0.0, 0.0, 180.0, 0.0)]
    con = duckdb.connect()
    install_functions(con)
    ours = [r[0] for r in con.execute(
        "select great_circle_arcsec(a, b, c, d) from (select unnest(?) a, unnest(?) b, unnest(?) c, unnest(?) d)",
        [list(col) for col in zip(*pairs)]).fetchall()]
    ra1, dec1, ra2, dec2 = (np.array(col) for col in zip(*pairs))
    ref = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg)).arcsec
    diff = np.abs(np.array(ours) - ref)
    assert np.all(diff <= np.maximum(1e-7, 1e-12 * ref)), f"worst {diff.max()} arcsec"
    assert ours[-1] == pytest.approx(180 * 3600, rel=1e-12)


def test_table_cells_keep_full_precision_and_wide_cells_are_cut():
    """Real MJDs and positions read back exactly from the table (before: 6 significant digits, MJD 59095.3); a
    wide text cell is cut with an ellipsis (before: printed whole)."""
    pos = _real_candidates(50)
    rows = [(p["jd"] - 2400000.5, p["ra"], p["dec"], "x" * 300) for p in pos]
    text = format_rows(["mjd", "ra", "dec", "blob"], rows, "table", max_rows=100,
                       types=["DOUBLE", "DOUBLE", "DOUBLE", "VARCHAR"])
    lines = text.splitlines()[2:-1]
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        mjd, ra, dec, blob = line.split()
        assert (float(mjd), float(ra), float(dec)) == row[:3]
        assert len(blob) == MAX_WIDTH and blob.endswith("…")
    # a FLOAT (REAL) column shows its single-precision value in full, not the double's noise
    text = format_rows(["mag"], [(float(np.float32(18.123457)),)], "table", types=["FLOAT"])
    assert text.splitlines()[2].strip() == "18.123457"
    # csv and json are never cut
    assert "x" * 300 in format_rows(["blob"], [("x" * 300,)], "csv")


def test_object_ids_are_case_insensitive():
    assert normalise_object_id("ztf18AAUQCSV") == "ZTF18aauqcsv"
    assert normalise_object_id(" ZTF20abyfpze ") == "ZTF20abyfpze"
    assert normalise_object_id("not-an-id") == "not-an-id"


def test_backlog_is_a_sentence():
    assert backlog_text(None) == "runtime not running"
    assert backlog_text({"bronze-on-alerts-staged": 0}) == "none (every event delivered)"
    assert backlog_text({"b": 3, "a": 1, "c": 0}) == "4 event(s) waiting: 1 for a, 3 for b"


def test_status_on_a_missing_or_new_home_and_with_the_catalog_down(tmp_path, monkeypatch, capsys):
    """One line on stderr and a non-zero exit, no traceback, nothing created (before: a multi-line error, and a
    status on a new home created the lake's tables)."""
    typo = tmp_path / "typo"
    monkeypatch.setenv("ATEDA_HOME", str(typo))
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ATEDA_HOME" in err and str(typo) in err
    assert not typo.exists()

    new = tmp_path / "new"
    new.mkdir()
    monkeypatch.setenv("ATEDA_HOME", str(new))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "empty" in out
    assert not (new / "catalog.db").exists()

    monkeypatch.setenv("ATEDA_CATALOG_URI", "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")
    assert main(["status"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "catalog unavailable" in err and "Traceback" not in err


def test_replay_with_nothing_to_replay_exits_0(tmp_path, monkeypatch, capsys):
    """Before: exit 1, "no broker"."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    assert main(["replay"]) == 0
    assert "nothing to replay" in capsys.readouterr().out
    assert main(["replay", "--trigger", "bronze-on-alerts-staged"]) == 0
    assert "nothing to replay" in capsys.readouterr().out


def test_cone_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    assert main(["cone", "10", "95", "--radius-arcsec", "3"]) == 2
    assert main(["cone", "10", "20", "--radius-arcsec", "-1"]) == 2
    assert main(["cone", "10", "20", "--radius-arcsec", "5", "--since", "60000", "--until", "59000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("ateda cone: ") for line in err)


# ---------------------------------------------------------------- slow: a real warehouse

@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory):
    """A warehouse of 140 real alerts (split + bronze handlers, one dbt run); the alerts of the demo's old "richest
    object", the star ZTF18aauqcsv, among them."""
    mp = pytest.MonkeyPatch()
    sink = Sink()
    home = tmp_path_factory.mktemp("queries") / "home"
    mp.setenv("ATEDA_HOME", str(home))
    mp.setenv("K_SINK", sink.url)
    mp.setenv("ATEDA_COMMIT_WINDOW_MS", "50")
    mp.setenv("ATEDA_METRICS_PORT", "0")
    settings.cache_clear()
    s = settings()
    files = alert_files()
    star = [f for f in files if "918339430315010127" in f.name]
    chosen = files[:140] + [f for f in star if f not in files[:140]]
    objects = put_alerts(s, chosen)
    assert post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects}).status_code == 200
    bronze = app("bronze")
    for e in sink.of(events.ALERTS_STAGED):
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    build.refresh_models(s)
    yield s
    mp.undo()
    settings.cache_clear()
    sink.server.shutdown()


def _objects(s) -> list[tuple]:  # noqa: ANN001
    with build.connect(s) as con:
        return con.execute("select objectId, meanra, meandec from gold.object").fetchall()


@pytest.mark.slow
def test_cone_finds_what_a_brute_force_astropy_search_finds(warehouse_home, capsys):
    """Cones around real objects, across RA 0/360 and near a pole, against every gold object's astropy
    separation; the distances agree to 1e-6 arcsec."""
    s = warehouse_home
    objs = _objects(s)
    coords = SkyCoord([o[1] for o in objs] * u.deg, [o[2] for o in objs] * u.deg)
    centres = [(objs[0][1], objs[0][2], 2.0), (objs[1][1], objs[1][2], 3600.0 * 20), (0.0, 0.0, 3600.0 * 45),
               (359.999, 30.0, 3600.0 * 40), (120.0, 89.5, 3600.0 * 10), (objs[2][1] + 1.0 / 3600, objs[2][2], 1.5)]
    found = 0
    for ra, dec, radius in centres:
        assert main(["cone", repr(ra), repr(dec), "--radius-arcsec", repr(radius), "--format", "json"]) == 0
        got = {r["objectId"]: r["dist_arcsec"] for r in json.loads(capsys.readouterr().out)}
        sep = coords.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec
        want = {o[0]: d for o, d in zip(objs, sep) if d <= radius}
        assert set(got) == set(want), (ra, dec, radius)
        assert all(abs(got[k] - want[k]) < 1e-6 for k in got)
        found += len(got)
    assert found > len(centres), "the cones hold objects"


@pytest.mark.slow
def test_cone_time_window_and_detections(warehouse_home, capsys):
    s = warehouse_home
    with build.connect(s) as con:
        oid, ra, dec, first, last = con.execute(
            "select objectId, meanra, meandec, firstmjd, lastmjd from gold.object where ndet >= 3 "
            "order by ndet desc limit 1").fetchone()
        dets = con.execute("select candid, mjd from silver.detection where objectId = ? order by mjd", [oid]).fetchall()
    mid = dets[len(dets) // 2][1]
    assert main(["cone", repr(ra), repr(dec), "--radius-arcsec", "5", "--detections", "--since", repr(mid),
                 "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {r["candid"] for r in got if r["objectId"] == oid} == {c for c, m in dets if m >= mid}
    assert all(r["dist_arcsec"] <= 5 for r in got)
    # objects: detected in the window, or not listed
    assert main(["cone", repr(ra), repr(dec), "--radius-arcsec", "5", "--until", repr(first - 1),
                 "--format", "json"]) == 0
    assert oid not in {r["objectId"] for r in json.loads(capsys.readouterr().out)}
    assert main(["cone", repr(ra), repr(dec), "--radius-arcsec", "5", "--since", repr(first),
                 "--until", repr(last)]) == 0
    out = capsys.readouterr().out
    assert oid in out and repr(ra) in out, "table output keeps the full-precision position"


@pytest.mark.slow
def test_query_has_great_circle_and_object_ids_in_any_case(warehouse_home, capsys):
    s = warehouse_home
    oid, ra, dec = _objects(s)[0]
    assert main(["query", f"select objectId from gold.object where great_circle_arcsec(meanra, meandec, {ra!r}, "
                          f"{dec!r}) < 1", "--format", "json"]) == 0
    assert oid in {r["objectId"] for r in json.loads(capsys.readouterr().out)}
    assert main(["object", oid.lower()]) == 0
    assert capsys.readouterr().out.startswith(oid)


@pytest.mark.slow
def test_the_demo_object_is_the_transient_candidate_with_most_detections(warehouse_home):
    """Before: the object with the most detections, the r~13.8 star ZTF18aauqcsv."""
    s = warehouse_home
    picked = richest_object(s, "")
    with build.connect(s) as con:
        cands = con.execute("select t.objectId, o.ndet, o.is_stellar from gold.transient_candidates t "
                            "join gold.object o using (objectId) order by o.ndet desc, t.objectId").fetchall()
        star = con.execute("select ndet, is_stellar from gold.object where objectId = 'ZTF18aauqcsv'").fetchone()
    assert star is not None and star[1], "the star is in this warehouse"
    assert cands and picked == cands[0][0] and not cands[0][2]
    assert picked != "ZTF18aauqcsv"
