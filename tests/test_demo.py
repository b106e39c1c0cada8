"""The README's demo command (`ateda demo`, what scripts/demo.sh runs): a synthetic night plus real ZTF alerts, through
the functions into bronze, refreshed into silver and gold, and the real transient candidate with the most
detections plotted (not a star).

Its number of detections is counted independently, straight from the Avro files with fastavro."""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import fastavro

from ateda.cli import main
from ateda.cli.dev import DEMO_REAL_PREFIX
from ateda.config import settings
from ateda.warehouse import location
from conftest import ALERTS, DAMAGED_TAIL, HALF_BROKEN, alert_files


def _detections(files) -> dict[str, set[int]]:
    """objectId -> its distinct detections (candidate + prv_candidates carrying a candid; only the candidate of an
    alert whose history is unreadable)."""
    dets: dict[str, set[int]] = defaultdict(set)
    for f in files:
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    if not rec.get("objectId"):
                        continue
                    history = [] if f.name in HALF_BROKEN else (rec.get("prv_candidates") or [])
                    points = [rec["candidate"], *history]
                    dets[rec["objectId"]].update(p["candid"] for p in points if p.get("candid") is not None)
            except (EOFError, ValueError):
                assert f.name == DAMAGED_TAIL
    return dets


def test_demo_ingests_real_alerts_and_plots_the_richest_candidate(tmp_path, monkeypatch, capsys):
    real = tmp_path / "real"
    real.mkdir()
    picked = [f for f in alert_files() if f.name.startswith("ZwickyTransientFacility_ztf-avro-alert")][:5]
    picked += [f for f in alert_files() if "Ampel-ZTF_ZTF" in f.name][:8]
    picked += [ALERTS / DAMAGED_TAIL, ALERTS / sorted(HALF_BROKEN)[0]]  # bad input rides along, quarantined
    for f in picked:
        (real / f.name).symlink_to(f)
    detections = _detections(picked)

    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATEDA_METRICS_PORT", "0")
    settings.cache_clear()
    try:
        assert main(["demo", "-n", "40", "--lsst", "30", "--real", str(real), "--json"]) == 0
        s = settings()
    finally:
        settings.cache_clear()
    out = capsys.readouterr().out
    docs = json.loads("[" + out.replace("}\n{", "},\n{") + "]")
    synthetic, rubin, real_run, final = docs
    assert synthetic["alerts"] == 40 and not synthetic["rejected"]
    assert rubin["alerts"] == 30 and not rubin["rejected"] and rubin["by_survey"] == {"lsst": 30}
    assert real_run["files"] == len(picked)
    # a folder's files are keyed by the folder's name and their path in it, under the demo's prefix
    assert sorted(r["key"] for r in real_run["rejected"]) == sorted(
        f"{DEMO_REAL_PREFIX}real/{n}" for n in (DAMAGED_TAIL, sorted(HALF_BROKEN)[0]))
    assert {r["reason"] for r in real_run["rejected"]} == {"corrupt_avro", "unreadable_history"}

    with duckdb.connect(str(location.duckdb_path(s)), read_only=True) as con:
        candidates = dict(con.execute(
            "select c.objectId, o.ndet from gold.transient_candidates c join gold.object o using (objectId) "
            "where c.objectId in (select distinct objectId from silver.ztf_alert where starts_with(src_key, ?))",
            [DEMO_REAL_PREFIX]).fetchall())
        n_real = con.execute("select count(*) from silver.ztf_alert where starts_with(src_key, ?)",
                             [DEMO_REAL_PREFIX]).fetchone()[0]
        surveys = dict(con.execute("select survey, count(*) from gold.object group by survey").fetchall())
        matched = con.execute("select count(*) from gold.survey_match").fetchone()[0]
    assert candidates, "the real alerts hold transient candidates"
    expected_oid = min(candidates, key=lambda o: (-candidates[o], o))
    png = s.home / "demo-output" / f"{expected_oid}.png"
    assert final["plot"] == str(png), (final["plot"], candidates)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    assert candidates[expected_oid] == len(detections[expected_oid]), "gold's ndet against the Avro files"
    assert n_real > 0 and final["refresh"]["rows"]["gold.object"] > 0
    # the Rubin night sits beside the ZTF one, some of its objects on real ZTF objects' positions
    assert surveys.get("lsst", 0) > 0 and surveys.get("ztf", 0) > 0
    assert matched >= 1
