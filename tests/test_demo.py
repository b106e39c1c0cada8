"""The README's demo command (`ateda demo`, what scripts/demo.sh runs): a synthetic night plus real ZTF alerts, through
the functions into bronze, refreshed into silver and gold, and the richest real object plotted.

The expected object is computed independently, straight from the Avro files with fastavro."""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import fastavro

from ateda.cli import main
from ateda.cli.dev import DEMO_REAL_PREFIX
from ateda.config import settings
from ateda.warehouse import build as warehouse
from conftest import ALERTS, DAMAGED_TAIL, NOT_ZTF, alert_files


def _richest(files) -> tuple[str, int]:
    """objectId with the most distinct detections (candidate + prv_candidates carrying a candid), ties by name."""
    dets: dict[str, set[int]] = defaultdict(set)
    for f in files:
        if f.name in NOT_ZTF:
            continue
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    if not rec.get("objectId"):
                        continue
                    points = [rec["candidate"], *(rec.get("prv_candidates") or [])]
                    dets[rec["objectId"]].update(p["candid"] for p in points if p.get("candid") is not None)
            except (EOFError, ValueError):
                assert f.name == DAMAGED_TAIL
    oid = min(dets, key=lambda o: (-len(dets[o]), o))
    return oid, len(dets[oid])


def test_demo_ingests_real_alerts_and_plots_the_richest_object(tmp_path, monkeypatch, capsys):
    real = tmp_path / "real"
    real.mkdir()
    picked = [f for f in alert_files() if f.name.startswith("ZwickyTransientFacility_ztf-avro-alert")][:5]
    picked += [f for f in alert_files() if "Ampel-ZTF_ZTF" in f.name][:8]
    picked += [ALERTS / DAMAGED_TAIL, ALERTS / sorted(NOT_ZTF)[0]]  # bad input rides along, quarantined
    for f in picked:
        (real / f.name).symlink_to(f)
    expected_oid, expected_ndet = _richest(picked)

    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATEDA_METRICS_PORT", "0")
    settings.cache_clear()
    try:
        assert main(["demo", "-n", "40", "--real", str(real), "--json"]) == 0
        s = settings()
    finally:
        settings.cache_clear()
    out = capsys.readouterr().out
    docs = json.loads("[" + out.replace("}\n{", "},\n{") + "]")
    synthetic, real_run, final = docs
    assert synthetic["alerts"] == 40 and not synthetic["rejected"]
    assert real_run["files"] == len(picked)
    assert sorted(r["key"] for r in real_run["rejected"]) == sorted(
        DEMO_REAL_PREFIX + n for n in (DAMAGED_TAIL, sorted(NOT_ZTF)[0]))
    assert {r["reason"] for r in real_run["rejected"]} == {"corrupt_avro", "not_ztf_alert"}

    png = s.home / "demo-output" / f"{expected_oid}.png"
    assert final["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    with duckdb.connect(str(warehouse.duckdb_path(s)), read_only=True) as con:
        ndet = con.execute("select ndet from gold.object where objectId = ?", [expected_oid]).fetchone()[0]
        n_real = con.execute("select count(*) from silver.ztf_alert where starts_with(src_key, ?)",
                             [DEMO_REAL_PREFIX]).fetchone()[0]
    assert ndet == expected_ndet
    assert n_real > 0 and final["refresh"]["rows"]["gold.object"] > 0
