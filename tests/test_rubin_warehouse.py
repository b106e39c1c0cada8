"""A generated Rubin night beside real ZTF alerts, through bronze and the dbt refresh (dbt build: every model's tests):
silver's Rubin tables against an independent count of the files with fastavro (ids exact, fluxes exact), gold's flux
statistics against the aggregates Rubin itself sends in diaObject, and a transient seen by both surveys as one
survey_match row. `ateda object` and `ateda plot` on a Rubin id.

The Rubin objects placed at ZTF transients' positions (the generator's ``also_at``) come from the real alerts'
candidate positions, read here with fastavro.
"""

from __future__ import annotations

import math

import duckdb
import fastavro
import pytest

from ateda.cli import main
from ateda.config import Settings
from ateda.dev import synth_lsst
from ateda.ingest import run_ingest
from ateda.warehouse import build as warehouse
from ateda.warehouse import location
from conftest import HALF_BROKEN, alert_files

N_RUBIN = 300


def _ztf_positions(files, n: int) -> dict[str, tuple[float, float]]:
    """objectId -> (ra, dec) of the first alert of ``n`` real ZTF objects (alerts of the 4.x schema era)."""
    out: dict[str, tuple[float, float]] = {}
    for path in files:
        try:
            with open(path, "rb") as fh:
                for rec in fastavro.reader(fh):
                    oid, cand = rec.get("objectId"), rec.get("candidate") or {}
                    if isinstance(oid, str) and oid.startswith("ZTF") and oid not in out and cand.get("ra") is not None:
                        out[oid] = (cand["ra"], cand["dec"])
        except Exception:  # noqa: BLE001 - a damaged file: not a source of positions
            continue
        if len(out) >= n:
            break
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("rubin-wh")
    ztf_files = [f for f in alert_files() if f.name not in HALF_BROKEN][:60]
    seen_by_both = dict(list(_ztf_positions(ztf_files, 40).items())[-3:])
    truth = synth_lsst.write_containers(root / "rubin", N_RUBIN, seed=11, per_file=100,
                                        also_at=list(seen_by_both.values()))
    s = Settings.from_env({"ATEDA_HOME": str(root / "home")})
    run_ingest(s, [*ztf_files, root / "rubin"], quiet=True, bronze_only=True)
    result = warehouse.refresh_models(s, test=True)
    return s, truth, seen_by_both, result


def _con(s: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(location.duckdb_path(s)), read_only=True)


def _files_truth(truth) -> dict:
    """From the generated files, with fastavro: every diaSource (triggering and history), forced source, object."""
    sources, forced, objects, alerts = {}, {}, set(), 0
    for path, _ in truth.files:
        with open(path, "rb") as fh:
            for rec in fastavro.reader(fh):
                alerts += 1
                own = rec.get("diaObject", {}) or {}
                for src in [rec["diaSource"], *(rec.get("prvDiaSources") or [])]:
                    sources[src["diaSourceId"]] = (src["psfFlux"], src["band"], src.get("diaObjectId")
                                                   or own.get("diaObjectId"))
                for f in rec.get("prvDiaForcedSources") or []:
                    forced[f["diaForcedSourceId"]] = (f["psfFlux"], f["band"])
                if own.get("diaObjectId") is not None:
                    objects.add(own["diaObjectId"])
    return {"sources": sources, "forced": forced, "objects": objects, "alerts": alerts}


def test_dbt_build_passes_with_both_surveys(home):
    _, _, _, result = home
    assert result.success and set(result.tests.values()) == {"pass"}, result.errors
    assert result.rows["silver.lsst_dia_source"] > N_RUBIN and result.rows["gold.lsst_fluxstats"] > 0


def test_silver_rubin_tables_equal_the_files(home):
    s, truth, _, _ = home
    want = _files_truth(truth)
    with _con(s) as con:
        got = {r[0]: (r[1], r[2], r[3]) for r in con.execute(
            "select diaSourceId, psfFlux, band, diaObjectId from silver.lsst_dia_source").fetchall()}
        forced = {r[0]: (r[1], r[2]) for r in con.execute(
            "select diaForcedSourceId, psfFlux, band from silver.lsst_dia_forced_source").fetchall()}
        objects = {r[0] for r in con.execute("select diaObjectId from silver.lsst_dia_object").fetchall()}
        mags = con.execute("select count(*) from silver.lsst_dia_source where (psfFlux > 0) <> (mag is not null) "
                           "or abs(mag - (31.4 - 2.5 * log10(greatest(psfFlux, 1e-30)))) > 1e-9").fetchone()[0]
    assert got == want["sources"], "one row per diaSource, ids and fluxes exact"
    assert forced == want["forced"]
    assert objects == want["objects"]
    assert mags == 0


def test_gold_flux_statistics_agree_with_rubins_own(home):
    s, _, _, _ = home
    with _con(s) as con:
        rows = con.execute(
            "select objectId, band, ndata, weighted_mean, sigma, max_slope, rubin_psfFluxNdata, rubin_psfFluxMean, "
            "rubin_psfFluxSigma, rubin_psfFluxMaxSlope from gold.lsst_fluxstats where rubin_psfFluxMean is not null"
        ).fetchall()
    assert len(rows) > 20
    for oid, band, n, wmean, sigma, slope, r_n, r_mean, r_sigma, r_slope in rows:
        assert n == r_n, (oid, band)
        assert math.isclose(wmean, r_mean, rel_tol=1e-5, abs_tol=1e-3), (oid, band, wmean, r_mean)
        if r_sigma is not None and sigma is not None:
            assert math.isclose(sigma, r_sigma, rel_tol=1e-5, abs_tol=1e-3), (oid, band)
        if r_slope is not None and slope is not None:
            assert math.isclose(slope, r_slope, rel_tol=1e-5, abs_tol=1e-3), (oid, band)


def test_a_transient_seen_by_both_surveys_is_one_survey_match_row(home):
    s, _, seen_by_both, _ = home
    with _con(s) as con:
        pairs = con.execute("select ztf_objectId, lsst_objectId, dist_arcsec from gold.survey_match").fetchall()
        surveys = dict(con.execute("select survey, count(*) from gold.object group by survey").fetchall())
    matched = {z for z, _, _ in pairs}
    assert set(seen_by_both) <= matched, (seen_by_both, pairs)
    for z in seen_by_both:
        assert sum(1 for p in pairs if p[0] == z) == 1
    assert all(d <= 1.5 for _, _, d in pairs)
    assert surveys["ztf"] > 0 and surveys["lsst"] > 0


def test_object_and_plot_for_a_rubin_id(home, monkeypatch, capsys, tmp_path):
    s, _, seen_by_both, _ = home
    monkeypatch.setenv("ATEDA_HOME", str(s.home))
    with _con(s) as con:
        oid = con.execute("select objectId from gold.object where survey = 'lsst' order by ndet desc limit 1"
                          ).fetchone()[0]
        twin = con.execute("select lsst_objectId from gold.survey_match where ztf_objectId = ?",
                           [next(iter(seen_by_both))]).fetchone()[0]
    assert main(["object", oid]) == 0
    out = capsys.readouterr().out
    assert f"Rubin diaObject {oid}" in out and "flux statistics" in out
    assert main(["object", twin]) == 0
    assert "also ZTF" in capsys.readouterr().out
    png = tmp_path / "r.png"
    assert main(["plot", oid, "-o", str(png)]) == 0
    assert png.stat().st_size > 20_000
