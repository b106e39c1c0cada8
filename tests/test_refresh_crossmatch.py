"""The crossmatch (HEALPix-partitioned catalogs, known answers, pruning, idempotence) and the dbt refresh function
(debounce, no overlapping runs, retries then dead letter, the emitted event validates)."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time

import fastavro
import duckdb
import numpy as np
import pyarrow as pa
import pytest
from ateda.config import Settings, settings
from ateda.errors import TransientError
from ateda.events import catalogue as events
from ateda.lake import deadletters
from ateda.lake.iceberg import ensure_crossmatch_table, existing_crossmatch_table
from ateda.steps import crossmatch as xm, dbt_refresh as rf
from ateda.warehouse import bronze_views, location
from conftest import DAMAGED_TAIL, HALF_BROKEN, alert_files, put_alerts, validate_all
from conftest import app, post


@pytest.fixture
def lake_settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home").resolved()


def _csv(path, rows) -> None:
    path.write_text("id,ra,dec\n" + "".join(f"{i},{r!r},{d!r}\n" for i, r, d in rows))


def _alerts(rows) -> pa.Table:
    return pa.table({"candid": pa.array([r[0] for r in rows], pa.int64()), "objectId": [f"ZTF{r[0]}" for r in rows],
                     "ra": [float(r[1]) for r in rows], "dec": [float(r[2]) for r in rows],
                     "night": pa.array([None] * len(rows), pa.date32())})


# ---------------------------------------------------------------- crossmatch

def test_separation_known_answers():
    sep = xm.separation_arcsec
    assert sep(359.9999, 0, 0.0001, 0) == pytest.approx(0.72, abs=1e-6)  # across ra = 0/360
    assert sep(0, 89.9999, 180, 89.9999) == pytest.approx(0.72, abs=1e-6)  # over the north pole
    assert sep(10, 90, 200, 89.9998) == pytest.approx(0.72, abs=1e-6)  # ra is meaningless at the pole
    assert sep(45, -89.9999, 225, -89.9999) == pytest.approx(0.72, abs=1e-6)  # south pole
    assert sep(0, 89.9999, 90, 89.9999) == pytest.approx(0.36 * np.sqrt(2), rel=1e-6)  # quarter turn near pole
    assert sep(120, 30, 120, 30 + 1 / 3600) == pytest.approx(1.0, abs=1e-9)
    assert sep(0, 0, 180, 0) == pytest.approx(180 * 3600)  # antipodes: no loss of precision either way
    assert sep(12.3, -45.6, 12.3, -45.6) == 0.0


def test_catalog_add_and_match_known_answers(lake_settings, tmp_path):
    s = lake_settings
    arc = 1 / 3600
    cat_rows = [
        ("wrap", 0.0001, 0.0),  # alert 1 at ra 359.9999: 0.72"
        ("npole", 180.0, 89.9999),  # alert 2 at ra 0, dec 89.9999: 0.72" over the pole
        ("spole", 270.0, -89.9998),  # alert 3 at the south pole itself: 0.72"
        ("inside", 100.0, 20.0 + 1.99 * arc),  # alert 4 at (100, 20): 1.99" < 2"
        ("outside", 100.0, 20.0 - 2.01 * arc),  # 2.01" > 2": no match
        ("far", 200.0, -30.0),
    ]
    _csv(tmp_path / "cat.csv", cat_rows)
    info = xm.add_reference_catalog(s, "known", tmp_path / "cat.csv", radius_arcsec=2.0)
    assert info.rows == 6 and info.nside == 64 and len(info.cells) == 5  # inside/outside share one
    alerts = _alerts([(1, 359.9999, 0.0), (2, 0.0, 89.9999), (3, 0.0, -90.0), (4, 100.0, 20.0), (5, 10.0, 10.0)])
    found = xm.match(s, alerts)
    got = {(c, m): d for c, m, d in zip(found["candid"].to_pylist(), found["match_id"].to_pylist(),
                                         found["dist_arcsec"].to_pylist())}
    assert set(got) == {(1, "wrap"), (2, "npole"), (3, "spole"), (4, "inside")}
    assert got[(1, "wrap")] == pytest.approx(0.72, abs=1e-6)
    assert got[(2, "npole")] == pytest.approx(0.72, abs=1e-6)
    assert got[(3, "spole")] == pytest.approx(0.72, abs=1e-6)
    assert got[(4, "inside")] == pytest.approx(1.99, abs=1e-6)
    assert set(found["catalog"].to_pylist()) == {"known"}
    # a CSV and a Parquet file with the same rows are the same catalog version
    pa_tab = pa.table({"ra": [r[1] for r in cat_rows], "dec": [r[2] for r in cat_rows], "id": [r[0] for r in cat_rows]})
    import pyarrow.parquet as pq

    pq.write_table(pa_tab, tmp_path / "cat.parquet")
    assert xm.add_reference_catalog(s, "known", tmp_path / "cat.parquet", 2.0).version == info.version
    assert [c.name for c in xm.list_reference_catalogs(s)] == ["known"]
    # another radius matches differently: a new version (alerts re-delivered after it are matched again)
    wider = xm.add_reference_catalog(s, "known", tmp_path / "cat.parquet", 3.0)
    assert wider.version != info.version and xm.list_reference_catalogs(s)[0].version == wider.version


def test_only_the_needed_cells_are_read_and_pruning_loses_nothing(lake_settings, tmp_path, monkeypatch):
    s = lake_settings
    rng = np.random.default_rng(7)
    n = 12_000  # uniform on the sphere: some in every one of thousands of cells
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # plus a dense clump around (0, 0) and the north pole, so neighbours across ra = 0/360 and the pole matter
    ra = np.r_[ra, np.mod(rng.normal(0, 0.02, 500), 360), rng.uniform(0, 360, 500)]
    dec = np.r_[dec, rng.normal(0, 0.02, 500), 90 - np.abs(rng.normal(0, 0.02, 500))]
    _csv(tmp_path / "sky.csv", [(f"s{i}", float(r), float(d)) for i, (r, d) in enumerate(zip(ra, dec))])
    info = xm.add_reference_catalog(s, "sky", tmp_path / "sky.csv", radius_arcsec=120.0)
    assert len(info.cells) > 8_000
    alerts = _alerts([(1, 0.0, 0.0), (2, 359.99, 0.01), (3, 33.0, 89.995), (4, 150.0, -20.0)])

    from ateda.lake.storage import LocalStore

    reads: list[str] = []
    orig = LocalStore.get_bytes
    monkeypatch.setattr(LocalStore, "get_bytes", lambda self, k: (reads.append(k), orig(self, k))[1])
    stats = xm.MatchStats()
    found = xm.match(s, alerts, stats=stats)
    cell_reads = sorted(int(k.rsplit("cell=", 1)[1].split(".")[0]) for k in reads if "/cell=" in k)
    cones = set().union(*(xm.cone_cells(r, d, 120.0) for r, d in zip(alerts["ra"].to_pylist(),
                                                                      alerts["dec"].to_pylist())))
    assert cell_reads == sorted(set(cell_reads)), "a cell read twice"
    assert set(cell_reads) <= cones and set(cell_reads) == set(stats.cells_read["sky"])
    assert len(cell_reads) <= 40, f"{len(cell_reads)} of {len(info.cells)} cells read"
    # the same answer as a brute-force match against the whole catalog
    brute = set()
    for c, r, d in zip(alerts["candid"].to_pylist(), alerts["ra"].to_pylist(), alerts["dec"].to_pylist()):
        dist = xm.separation_arcsec(r, d, ra % 360, dec)
        brute |= {(c, f"s{j}") for j in np.flatnonzero(dist <= 120.0)}
    got = set(zip(found["candid"].to_pylist(), found["match_id"].to_pylist()))
    assert got == brute and len(brute) > 20


def _ingest(s, sink, n_files: int) -> list[dict]:
    objects = put_alerts(s, alert_files()[:n_files])
    assert post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects}).status_code == 200
    bronze = app("bronze")
    for e in sink.of(events.ALERTS_STAGED):
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    committed = sink.of(events.BRONZE_COMMITTED)
    validate_all(committed)
    return committed


def test_crossmatch_function_on_real_alerts_is_idempotent(env_settings, sink, tmp_path):
    s = env_settings
    committed = _ingest(s, sink, 12)
    alerts = pa.concat_tables([xm.alerts_of_commit(s, e["data"]) for e in committed])
    assert alerts.num_rows >= 12 and alerts["ra"].null_count == 0
    # a catalog with a source 1.5" north of every alert, one 3" south (outside the 2" radius), and noise
    rows = []
    for c, r, d in zip(alerts["candid"].to_pylist(), alerts["ra"].to_pylist(), alerts["dec"].to_pylist()):
        rows += [(f"n{c}", r, d + 1.5 / 3600), (f"s{c}", r, d - 3 / 3600)]
    rows += [(f"x{i}", float(i * 7 % 360), float(i % 170 - 85)) for i in range(300)]
    _csv(tmp_path / "watch.csv", rows)
    xm.add_reference_catalog(s, "watch", tmp_path / "watch.csv", radius_arcsec=2.0)

    _csv(tmp_path / "far.csv", [("f1", 10.0, -89.9)])  # a catalog no ZTF alert can match (ZTF sees dec > -31)
    xm.add_reference_catalog(s, "faraway", tmp_path / "far.csv", radius_arcsec=1.0)
    client = app("crossmatch")
    for e in committed:
        assert post(client, events.BRONZE_COMMITTED, e["data"]).status_code == 200
    table = ensure_crossmatch_table(s)
    first = table.scan().to_arrow()
    # one dev.ateda.crossmatch.committed per bronze commit with matches: dbt refresh is told
    told = sink.of(events.CROSSMATCH_COMMITTED)
    validate_all(told)
    assert len(told) == len(committed) and sum(e["data"]["appended"] for e in told) == first.num_rows
    assert {e["data"]["snapshot_id"] for e in told} <= {sn.snapshot_id for sn in table.metadata.snapshots}
    assert all(e["data"]["catalogs"] == ["faraway", "watch"] for e in told)
    assert sorted(c for e in told for c in e["data"]["chunks"]) == sorted(c for e in committed for c in e["data"]["chunks"])
    assert sorted(first["candid"].to_pylist()) == sorted(alerts["candid"].to_pylist())
    assert set(first["match_id"].to_pylist()) == {f"n{c}" for c in alerts["candid"].to_pylist()}
    assert np.allclose(first["dist_arcsec"].to_numpy(), 1.5, atol=1e-6)
    assert first["night"].null_count == 0 and set(first["objectId"].to_pylist()) == set(alerts["objectId"].to_pylist())
    snaps = len(table.refresh().metadata.snapshots)
    for e in committed:  # re-delivery: nothing new, not even a commit; the event is sent again (at-least-once)
        assert post(client, events.BRONZE_COMMITTED, e["data"]).status_code == 200
    table = table.refresh()
    assert table.scan().to_arrow().num_rows == first.num_rows and len(table.metadata.snapshots) == snaps
    again = sink.of(events.CROSSMATCH_COMMITTED)[len(told):]
    validate_all(again)
    assert len(again) == len(committed) and {e["data"]["appended"] for e in again} == {0}
    assert {e["data"]["matches"] for e in again} == {e["data"]["matches"] for e in told}


def _ztf_alerts_in(files) -> list[tuple[str, int, str, float, float]]:
    """("ztf", candid, objectId, ra, dec) of every alert in ``files``, read with fastavro (independent of ATEDA)."""
    out = []
    for f in files:
        with open(f, "rb") as fh:
            for rec in fastavro.reader(fh):
                c = rec["candidate"]
                out.append(("ztf", c["candid"], rec["objectId"], float(c["ra"]), float(c["dec"])))
    return out


def _rubin_alerts_in(files) -> list[tuple[str, int, str | None, float, float]]:
    """("lsst", diaSourceId, diaObjectId as digits or None, ra, dec) of every Rubin alert's triggering diaSource in
    ``files``, read with fastavro."""
    out = []
    for f in files:
        with open(f, "rb") as fh:
            for rec in fastavro.reader(fh):
                src = rec["diaSource"]
                oid = src.get("diaObjectId") or (rec.get("diaObject") or {}).get("diaObjectId")
                out.append(("lsst", src["diaSourceId"], None if oid is None else str(oid), float(src["ra"]),
                            float(src["dec"])))
    return out


def _haversine_arcsec(ra1, dec1, ra2, dec2) -> float:
    p1, p2 = math.radians(dec1), math.radians(dec2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600


def test_rubin_alerts_are_matched_live_as_ztfs_are(env_settings, sink, tmp_path):
    """Generated Rubin alerts beside real ZTF ones, through split and bronze; a catalog with sources 1" from some
    of each survey's alerts (a solar-system-only Rubin alert among them); every bronze.committed event delivered to
    the crossmatch function with its `survey` attribute, as the broker does. The matches are exactly those an
    independent haversine over the Avro files finds, per survey; re-deliveries (and a survey-less delivery) add
    nothing; silver and gold hold both surveys and `ateda object` shows the Rubin object's match."""
    from ateda.cli.science import format_object
    from ateda.dev import synth_lsst
    from ateda.warehouse import build as warehouse
    from ateda.warehouse.queries import object_info

    s = env_settings
    truth = synth_lsst.write_containers(tmp_path / "rubin", 60, seed=5, per_file=30)
    rubin_files = [p for p, _ in truth.files]
    ztf_files = [f for f in alert_files() if f.name not in HALF_BROKEN and f.name != DAMAGED_TAIL][::15][:6]
    objects = put_alerts(s, [*ztf_files, *rubin_files])
    assert post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects}).status_code == 200
    bronze = app("bronze")
    for e in sink.of(events.ALERTS_STAGED):
        assert post(bronze, events.ALERTS_STAGED, e["data"], extensions={"survey": e.get("survey")}).status_code == 200
    committed = sink.of(events.BRONZE_COMMITTED)
    validate_all(committed)
    assert {e.get("survey") for e in committed} == {"ztf", "lsst"}

    alerts = _ztf_alerts_in(ztf_files) + _rubin_alerts_in(rubin_files)
    rubin = [a for a in alerts if a[0] == "lsst"]
    assert len(rubin) == 60 and any(a[2] is None for a in rubin), "a solar-system-only alert among them"
    picked = [a for a in alerts if a[0] == "ztf"][::3] + rubin[::4] + [a for a in rubin if a[2] is None][:1]
    rows = [(f"n{i}", ra, dec + 1.0 / 3600) for i, (_, _, _, ra, dec) in enumerate(picked)]
    rows += [(f"far{i}", (ra + 1.0) % 360, max(-89.0, dec - 1.0)) for i, (_, _, _, ra, dec) in enumerate(picked[:5])]
    _csv(tmp_path / "watch.csv", rows)
    radius = 2.0
    xm.add_reference_catalog(s, "watch", tmp_path / "watch.csv", radius_arcsec=radius)
    expected = {(sv, c, i): _haversine_arcsec(ra, dec, sra, sdec) for sv, c, _, ra, dec in alerts
                for i, sra, sdec in rows if _haversine_arcsec(ra, dec, sra, sdec) <= radius}
    assert {k[0] for k in expected} == {"ztf", "lsst"} and not any(k[2].startswith("far") for k in expected)

    client = app("crossmatch")
    for e in committed:
        assert post(client, events.BRONZE_COMMITTED, e["data"], extensions={"survey": e.get("survey")}
                    ).status_code == 200
    table = ensure_crossmatch_table(s)
    got = table.scan().to_arrow()
    keys = list(zip(got["survey"].to_pylist(), got["candid"].to_pylist(), got["match_id"].to_pylist()))
    assert set(keys) == set(expected)
    for k, d in zip(keys, got["dist_arcsec"].to_pylist()):
        assert d == pytest.approx(expected[k], abs=1e-6), k
    oid = {(sv, c): o for sv, c, o, _, _ in alerts}
    assert all(o == oid[(sv, c)] for sv, c, o in zip(got["survey"].to_pylist(), got["candid"].to_pylist(),
                                                       got["objectId"].to_pylist()))
    told = sink.of(events.CROSSMATCH_COMMITTED)
    validate_all(told)

    snaps = len(table.refresh().metadata.snapshots)
    for e in committed:  # the broker re-delivers, and an event without the attribute means every survey
        for survey in (e.get("survey"), None):
            assert post(client, events.BRONZE_COMMITTED, e["data"], extensions={"survey": survey}).status_code == 200
    table = table.refresh()
    assert table.scan().to_arrow().num_rows == got.num_rows and len(table.metadata.snapshots) == snaps

    result = warehouse.refresh_models(s, test=True)
    assert result.success and set(result.tests.values()) == {"pass"}, result.errors
    with warehouse.connect(s) as con:
        silver = con.execute("select survey, candid, match_id, dist_arcsec, objectId from silver.crossmatch_catalog"
                             ).fetchall()
        gold = dict(con.execute("select objectId, survey from gold.object_catalog_match").fetchall())
    assert {r[:3] for r in silver} == set(expected) and len(silver) == len(expected)
    assert any(r[0] == "lsst" and r[4] is None for r in silver), "the solar-system alert's match, without object"
    want_objects = {oid[k[:2]]: k[0] for k in expected if oid[k[:2]] is not None}
    assert gold == want_objects
    rubin_object = next(o for o, sv in gold.items() if sv == "lsst")
    info = object_info(s, rubin_object)
    assert [c["catalog"] for c in info["catalogs"]] == ["watch"]
    assert "catalog       watch: n" in format_object(info)


def test_silver_crossmatch_catalog_holds_the_matches_once_per_version(env_settings, sink, tmp_path):
    """bronze.crossmatch -> silver.crossmatch_catalog with dbt on DuckDB: distances known by construction, a
    catalog id held twice kept once (the nearest), a re-registered catalog's new version flagged latest for the
    alerts it matched, and a refresh without new data changes nothing."""
    from ateda.warehouse import build as warehouse

    s = env_settings
    committed = _ingest(s, sink, 8)
    alerts = pa.concat_tables([xm.alerts_of_commit(s, e["data"]) for e in committed])
    pos = dict(zip(alerts["candid"].to_pylist(), zip(alerts["ra"].to_pylist(), alerts["dec"].to_pylist())))
    first = min(pos)
    arc = 1 / 3600
    # v1: a source 1.5" north of every alert (inside 2"), one 3" south (outside); id "twin" twice near one alert
    rows = [(f"n{c}", r, d + 1.5 * arc) for c, (r, d) in pos.items()]
    rows += [(f"s{c}", r, d - 3 * arc) for c, (r, d) in pos.items()]
    rows += [("twin", pos[first][0], pos[first][1] + 1.0 * arc), ("twin", pos[first][0], pos[first][1] - 1.8 * arc)]
    _csv(tmp_path / "v1.csv", rows)
    v1 = xm.add_reference_catalog(s, "watch", tmp_path / "v1.csv", radius_arcsec=2.0).version
    client = app("crossmatch")
    for e in committed:
        assert post(client, events.BRONZE_COMMITTED, e["data"]).status_code == 200
    bronze_rows = ensure_crossmatch_table(s).scan().to_arrow()
    assert bronze_rows.num_rows >= len(pos) + 2 and bronze_rows["matched_at"].null_count == 0

    expected = {("watch", v1, c, f"n{c}"): (1.5, 2 if c == first else 1, True) for c in pos}
    expected[("watch", v1, first, "twin")] = (1.0, 1, True)  # the nearer of the two sources with that id

    def silver() -> dict:
        with warehouse.connect(s) as con:
            got = con.execute("select catalog, catalog_version, candid, match_id, dist_arcsec, match_rank, "
                              "is_latest_version, objectId, night from silver.crossmatch_catalog").fetchall()
        out = {r[:4]: r[4:7] for r in got}
        assert len(out) == len(got)
        oid = dict(zip(alerts["candid"].to_pylist(), alerts["objectId"].to_pylist()))
        night = dict(zip(alerts["candid"].to_pylist(), alerts["night"].to_pylist()))
        assert all(r[7] == oid[r[2]] and r[8] == night[r[2]] for r in got)
        return out

    def same(got: dict, want: dict) -> None:
        assert set(got) == set(want)
        for k, (dist, rank, latest) in want.items():
            assert got[k][0] == pytest.approx(dist, abs=1e-6) and got[k][1:] == (rank, latest), k

    def gold() -> dict:
        """gold.object_catalog_match against a Python recomputation from silver's current rows and the objects'
        mean positions: per (object, catalog) the newest version, the source nearest the mean position (Vincenty)."""
        with warehouse.connect(s) as con:
            current = con.execute("select objectId, catalog, catalog_version, candid, match_id, match_ra, match_dec, "
                                  "dist_arcsec, matched_at from silver.crossmatch_catalog "
                                  "where is_latest_version and objectId is not null").fetchall()
            mean = {o: (r, d) for o, r, d in con.execute("select objectId, meanra, meandec from gold.object").fetchall()}
            got = {(r[0], r[1]): r[2:] for r in con.execute(
                "select objectId, catalog, catalog_version, match_id, dist_arcsec, min_alert_dist_arcsec, "
                "n_sources, n_alerts_matched from gold.object_catalog_match").fetchall()}
        groups: dict = {}
        for r in current:
            groups.setdefault(r[:2], []).append(r)
        want = {}
        for key, rows in groups.items():
            version = max(rows, key=lambda r: (r[8], r[2]))[2]
            rows = [r for r in rows if r[2] == version]
            sources = {}
            for r in sorted(rows, key=lambda r: (r[7], r[3])):
                sources.setdefault(r[4], (r[5], r[6]))
            ra0, dec0 = mean[key[0]]
            dist, match_id = min((xm.separation_arcsec(ra0, dec0, ra, dec), i) for i, (ra, dec) in sources.items())
            want[key] = (version, match_id, dist, min(r[7] for r in rows), len(sources), len({r[3] for r in rows}))
        assert set(got) == set(want)
        for k, w in want.items():
            assert got[k][:2] == w[:2] and got[k][4:] == w[4:], k
            assert got[k][2] == pytest.approx(w[2], abs=1e-6) and got[k][3] == pytest.approx(w[3], abs=1e-9), k
        return got

    result = warehouse.refresh_models(s, test=True)
    assert result.success and set(result.tests.values()) == {"pass"}
    assert any("crossmatch_catalog" in t for t in result.tests)
    same(silver(), expected)
    first_gold = gold()
    assert set(first_gold) == {(oid, "watch") for oid in alerts["objectId"].to_pylist() if oid}
    assert {v[0] for v in first_gold.values()} == {v1}
    from ateda.cli.science import format_object
    from ateda.warehouse.queries import object_info

    (oid, _), row = min(first_gold.items(), key=lambda kv: (-kv[1][4], kv[0]))  # the object with most sources
    info = object_info(s, oid)
    assert [(c["catalog"], c["match_id"], c["n_sources"]) for c in info["catalogs"]] == [("watch", row[1], row[4])]
    assert f"catalog       watch: {row[1]} at {row[2]:.2f}\"" in format_object(info)
    # bronze's rows, deduplicated independently (nearest copy of each key), are silver's
    nearest: dict = {}
    for r in bronze_rows.to_pylist():
        k = (r["catalog"], r["catalog_version"], r["candid"], r["match_id"])
        nearest[k] = min(nearest.get(k, r["dist_arcsec"]), r["dist_arcsec"])
    assert {k: v[0] for k, v in silver().items()} == pytest.approx(nearest)

    # a warehouse built before `survey` existed (the Rubin matches): the next refresh adds the column, old rows ZTF
    with duckdb.connect(str(location.duckdb_path(s))) as con:
        for table in ("silver.crossmatch_catalog", "gold.object_catalog_match"):
            con.execute(f"alter table {table} drop column survey")

    # v2 of the same catalog: a source 0.5" south of two alerts' positions; their events re-delivered
    again = committed[:2]
    redo = {c for e in again for c in xm.alerts_of_commit(s, e["data"])["candid"].to_pylist()}
    _csv(tmp_path / "v2.csv", [(f"v{c}", pos[c][0], pos[c][1] - 0.5 * arc) for c in sorted(redo)])
    v2 = xm.add_reference_catalog(s, "watch", tmp_path / "v2.csv", radius_arcsec=2.0).version
    assert v2 != v1
    for e in again:
        assert post(client, events.BRONZE_COMMITTED, e["data"]).status_code == 200
    second = warehouse.refresh_models(s, test=True)
    assert second.new_files >= 1 and set(second.tests.values()) == {"pass"}
    expected = {k: (d, r, k[2] not in redo) for k, (d, r, _) in expected.items()}
    expected |= {("watch", v2, c, f"v{c}"): (0.5, 1, True) for c in redo}
    same(silver(), expected)
    second_gold = gold()  # the objects of the re-matched alerts now answer with v2, the others still with v1
    redo_objects = {o for c, o in zip(alerts["candid"].to_pylist(), alerts["objectId"].to_pylist()) if c in redo and o}
    assert {k[0] for k, v in second_gold.items() if v[0] == v2} == redo_objects
    assert all(v == first_gold[k] for k, v in second_gold.items() if k[0] not in redo_objects)

    # nothing new: nothing changes
    tables = ("silver.crossmatch_catalog", "gold.object_catalog_match")
    with warehouse.connect(s) as con:
        before = [con.execute(f"select count(*), sum(hash(t)) from {t} as t").fetchone() for t in tables]
    third = warehouse.refresh_models(s)
    assert third.new_files == 0
    with warehouse.connect(s) as con:
        assert [con.execute(f"select count(*), sum(hash(t)) from {t} as t").fetchone() for t in tables] == before


def test_a_crossmatch_table_from_before_matched_at_is_read_and_evolved(lake_settings):
    """No table yet: DuckDB gets an empty typed bronze.crossmatch (nothing created in the catalog). A table written
    before ``matched_at`` existed: DuckDB reads the column as NULL; the next commit adds it to the table."""
    import duckdb
    from ateda.lake.iceberg import CROSSMATCH_TABLE, TABLE_PROPERTIES, load_catalog

    s = lake_settings
    s.home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        bronze_views.prepare_bronze(con, s)
        cols = {r[0]: r[1] for r in con.execute("describe bronze.crossmatch").fetchall()}
        assert list(cols) == xm.CROSSMATCH.names and cols["matched_at"] == "TIMESTAMP WITH TIME ZONE"
        assert con.execute("select count(*) from bronze.crossmatch_delta").fetchone() == (0,)
    assert existing_crossmatch_table(s) is None

    def row(candid: int, schema: pa.Schema) -> pa.Table:
        values = {"catalog": "w", "catalog_version": "v0", "candid": candid, "objectId": f"ZTF{candid}",
                  "match_id": "a", "match_ra": 1.0, "match_dec": 2.0, "dist_arcsec": 0.5, "night": None,
                  "matched_at": None, "survey": None}
        return pa.Table.from_pylist([{n: values[n] for n in schema.names}], schema=schema)

    old = pa.schema([f for f in xm.CROSSMATCH if f.name != "matched_at"])
    table = load_catalog(s).create_table(f"{s.namespace}.{CROSSMATCH_TABLE}", schema=old, properties=TABLE_PROPERTIES)
    with duckdb.connect(str(s.home / "w.duckdb")) as con:
        for _ in range(2):  # an empty table's stand-in (a DuckDB table) is replaced by the view over the files
            bronze_views.prepare_bronze(con, s)
            assert con.execute("select count(*) from bronze.crossmatch where matched_at is null").fetchone() == (_,)
            table.append(row(1, old))
    assert xm.commit_matches(s, row(2, xm.CROSSMATCH), [xm.ReferenceCatalog("w", "v0", 1.0, 64, 1, [])], [2])[0] == 1
    rows = ensure_crossmatch_table(s).scan().to_arrow().sort_by("candid")
    assert rows["candid"].to_pylist() == [1, 1, 2] and rows["matched_at"].null_count == 2


def test_an_old_crossmatch_table_gains_survey_and_its_rows_read_as_ztf(lake_settings):
    """bronze.crossmatch written before ``survey`` existed: DuckDB reads the column as NULL, the next commit adds it
    in place (schema evolution, the old rows kept) and takes the old rows as ZTF's: a ZTF match already there is
    not appended again, a Rubin match with the same number (a diaSourceId equal to a ZTF candid) is, and
    ``ateda catalog add`` counts both."""
    import duckdb
    from ateda.backfill import matches_in_bronze
    from ateda.lake.iceberg import CROSSMATCH_TABLE, TABLE_PROPERTIES, load_catalog

    s = lake_settings
    s.home.mkdir(parents=True, exist_ok=True)
    old = pa.schema([f for f in xm.CROSSMATCH if f.name != "survey"])
    assert len(old) == len(xm.CROSSMATCH) - 1
    load_catalog(s).create_namespace_if_not_exists(s.namespace)
    table = load_catalog(s).create_table(f"{s.namespace}.{CROSSMATCH_TABLE}", schema=old, properties=TABLE_PROPERTIES)
    table.append(pa.Table.from_pylist([{"catalog": "w", "catalog_version": "v0", "candid": 7, "objectId": "ZTF7",
                                        "match_id": "a", "match_ra": 1.0, "match_dec": 2.0, "dist_arcsec": 0.5,
                                        "night": None, "matched_at": None}], schema=old))
    with duckdb.connect(str(s.home / "w.duckdb")) as con:
        bronze_views.prepare_bronze(con, s)
        assert con.execute("select candid, survey from bronze.crossmatch").fetchall() == [(7, None)]
    info = xm.ReferenceCatalog("w", "v0", 1.0, 64, 1, [])
    rows = pa.Table.from_pylist([
        {"catalog": "w", "catalog_version": "v0", "candid": 7, "objectId": "ZTF7", "match_id": "a", "match_ra": 1.0,
         "match_dec": 2.0, "dist_arcsec": 0.5, "night": None, "matched_at": None, "survey": "ztf"},
        {"catalog": "w", "catalog_version": "v0", "candid": 7, "objectId": "1234567", "match_id": "a", "match_ra": 1.0,
         "match_dec": 2.0, "dist_arcsec": 0.5, "night": None, "matched_at": None, "survey": "lsst"}],
        schema=xm.CROSSMATCH)
    assert xm.commit_matches(s, rows, [info], [7, 7])[0] == 1  # the Rubin one only
    evolved = ensure_crossmatch_table(s)
    assert evolved.schema().column_names == xm.CROSSMATCH.names
    got = sorted(evolved.scan().to_arrow().select(["candid", "objectId", "survey"]).to_pylist(),
                 key=lambda r: r["objectId"])
    assert got == [{"candid": 7, "objectId": "1234567", "survey": "lsst"},
                   {"candid": 7, "objectId": "ZTF7", "survey": None}]
    assert xm.commit_matches(s, rows, [info], [7])[0] == 0  # both there now: a re-delivery adds nothing
    assert matches_in_bronze(s, xm.ReferenceCatalog("w", "v0", 1.0, 64, 1, [])) == 2


# ---------------------------------------------------------------- dbt refresh

class FakeDbt:
    """Stands in for ``run_dbt_models``: counts runs, records their intervals, can fail or be slow."""

    def __init__(self, seconds: float = 0.0, fail: int = 0) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, settings, target: str = "local"):
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.calls.append((start, time.monotonic()))
            if self.fail:
                self.fail -= 1
                raise RuntimeError("dbt exploded")
        from ateda.warehouse.build import RefreshResult

        return RefreshResult(target=target, success=True, seconds=self.seconds, new_files=1,
                             models={"detection": {"status": "success", "rows_affected": 3, "seconds": 0.1}},
                             rows={"silver.detection": 3, "gold.object": 1})


def _committed_data(i: int) -> dict:
    return {"snapshot_ids": {"alert": 1000 + i, "cutout": 2000 + i, "ingest_ledger": 3000 + i},
            "rows": {"alert": 1, "cutout": 3, "ingest_ledger": 1}, "nights": ["2026-11-20"],
            "chunks": [f"c{i}"], "alerts": 1}


def _wait(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_burst_of_commits_is_one_run_and_the_event_validates(env_settings, sink, monkeypatch):
    fake = FakeDbt()
    monkeypatch.setattr(rf, "run_dbt_models", fake)
    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "400")
    settings.cache_clear()  # the function reads the settings once per process: read them again with this debounce
    client = app("dbt_refresh")
    t0 = time.monotonic()
    for i in range(8):
        assert post(client, events.BRONZE_COMMITTED, _committed_data(i)).status_code == 200
        time.sleep(0.02)
    assert time.monotonic() - t0 < 2.0, "the handler must answer without running dbt"
    assert not fake.calls
    _wait(lambda: sink.of(events.SILVER_REFRESHED))
    time.sleep(0.6)  # nothing else comes
    assert len(fake.calls) == 1
    (evt,) = sink.of(events.SILVER_REFRESHED)
    validate_all([evt])
    assert evt["data"]["requests"] == 8 and evt["data"]["rows"]["silver.detection"] == 3
    assert evt["data"]["bronze_snapshot_ids"] == [1000 + i for i in range(8)]
    lake = env_settings.home / "lake"
    assert not list((lake / rf.REQUESTS).glob("*.json")), "served requests are cleared"
    # a later commit is a second run
    assert post(client, events.BRONZE_COMMITTED, _committed_data(9)).status_code == 200
    _wait(lambda: len(sink.of(events.SILVER_REFRESHED)) == 2)
    assert len(fake.calls) == 2


def test_two_workers_never_overlap(lake_settings, monkeypatch):
    fake = FakeDbt(seconds=0.3)
    monkeypatch.setattr(rf, "run_dbt_models", fake)
    emitted: list[dict] = []
    cfg = rf.RefreshConfig(debounce_s=0.05, retries=0)
    a = rf.RefreshWorker(lake_settings, lambda t, d, s: emitted.append(d), cfg)
    b = rf.RefreshWorker(lake_settings, lambda t, d, s: emitted.append(d), cfg)
    ev = {"type": events.BRONZE_COMMITTED, "id": "x", "data": _committed_data(0)}
    for i in range(6):  # requests keep coming to both while the other one runs
        (a if i % 2 else b).request({**ev, "id": str(i)})
        time.sleep(0.12)
    _wait(lambda: not list((lake_settings.home / "lake" / rf.REQUESTS).glob("*.json")) and len(emitted) >= 2)
    time.sleep(0.4)
    a.stop(), b.stop()
    calls = sorted(fake.calls)
    assert len(calls) >= 2
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(calls)), f"overlapping runs: {calls}"
    assert sum(d["requests"] for d in emitted) == 6, "every request served exactly once"


def test_failed_runs_are_retried_then_dead_lettered(lake_settings, monkeypatch):
    fake = FakeDbt(fail=99)
    monkeypatch.setattr(rf, "run_dbt_models", fake)
    emitted: list[dict] = []
    w = rf.RefreshWorker(lake_settings, lambda t, d, s: emitted.append(d),
                         rf.RefreshConfig(debounce_s=0.05, retries=2, backoff_s=0.05))
    event = events.make_event(events.BRONZE_COMMITTED, "/ateda/bronze", _committed_data(1), "1001")
    w.request(event)
    dl = lake_settings.home / "lake" / rf.DEAD_LETTERS
    _wait(lambda: list(dl.glob("*.json")))
    time.sleep(0.2)
    assert len(fake.calls) == 3 and not emitted
    (path,) = list(dl.glob("*.json"))
    body = json.loads(path.read_text())
    assert body["type"] == events.BRONZE_COMMITTED and body["id"] == event["id"]
    assert body["knativeerrorcode"] == "500" and "dbt exploded" in deadletters.decode_error(body["knativeerrordata"])
    assert body["knativeerrordest"] == "dbt-refresh"
    events.validate({k: v for k, v in body.items() if not k.startswith("knativeerror")})
    assert not list((lake_settings.home / "lake" / rf.REQUESTS).glob("*.json"))
    # after one failure a run succeeds: no dead letter, one event
    fake2 = FakeDbt(fail=1)
    monkeypatch.setattr(rf, "run_dbt_models", fake2)
    w.request(event)
    _wait(lambda: emitted)
    assert len(fake2.calls) == 2 and len(list(dl.glob("*.json"))) == 1
    w.stop()


def test_a_failed_emit_is_retried_without_running_dbt_again(lake_settings, monkeypatch):
    """The broker is down after a successful run: only the emit is retried (then dead-lettered), dbt runs once."""
    fake = FakeDbt()
    monkeypatch.setattr(rf, "run_dbt_models", fake)
    refused, emitted = [3], []

    def emit(type_, data, subject) -> None:  # noqa: ANN001
        if refused[0]:
            refused[0] -= 1
            raise TransientError("broker unreachable")
        emitted.append(data)

    w = rf.RefreshWorker(lake_settings, emit, rf.RefreshConfig(debounce_s=0.05, retries=3, backoff_s=0.01))
    event = events.make_event(events.BRONZE_COMMITTED, "/ateda/bronze", _committed_data(1), "1001")
    w.request(event)
    _wait(lambda: emitted)
    time.sleep(0.2)  # no second run comes
    assert len(fake.calls) == 1 and len(emitted) == 1 and emitted[0]["requests"] == 1
    assert not list((lake_settings.home / "lake" / rf.REQUESTS).glob("*.json"))
    # the broker stays down: retries exhausted -> dead letter, markers dropped, still one dbt run per request
    refused[0] = 99
    w.request({**event, "id": "1002"})
    dl = lake_settings.home / "lake" / rf.DEAD_LETTERS
    _wait(lambda: list(dl.glob("*.json")))
    time.sleep(0.2)
    assert len(fake.calls) == 2 and len(emitted) == 1
    (path,) = list(dl.glob("*.json"))
    body = json.loads(path.read_text())
    cause = deadletters.decode_error(body["knativeerrordata"])
    assert body["id"] == "1002" and "emitting" in cause and "unreachable" in cause
    assert not list((lake_settings.home / "lake" / rf.REQUESTS).glob("*.json"))
    w.stop()


def test_the_lock_excludes_another_process(lake_settings, monkeypatch):
    import subprocess
    import sys

    fake = FakeDbt()
    monkeypatch.setattr(rf, "run_dbt_models", fake)
    code = ("import sys, time; from pathlib import Path; from ateda.config import Settings; from ateda.steps import dbt_refresh;"
            f"s = Settings(home=Path({str(lake_settings.home)!r})).resolved()\n"
            "with dbt_refresh.run_lock(s, 'local'):\n print('locked', flush=True); time.sleep(1.0); t = time.monotonic()\n"
            "print(t, flush=True)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    w = rf.RefreshWorker(lake_settings, lambda *a: None, rf.RefreshConfig(debounce_s=10, retries=0))
    w.lake.put_bytes(rf.REQUESTS + "0001-x.json", json.dumps({"type": events.BRONZE_COMMITTED}).encode())
    assert w.run_pending()["requests"] == 1  # blocks until the child let go
    released = float(child.stdout.readline())
    assert child.wait(10) == 0
    assert fake.calls[0][0] >= released


def test_one_real_refresh_on_real_alerts(env_settings, sink, monkeypatch):
    """The real thing once: bronze from real alerts, the handler, the worker, dbt on DuckDB, the event."""
    s = env_settings
    committed = _ingest(s, sink, 12)
    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "100")
    settings.cache_clear()  # the function reads the settings once per process: read them again with this debounce
    client = app("dbt_refresh")
    for e in committed:
        assert post(client, events.BRONZE_COMMITTED, e["data"]).status_code == 200
    _wait(lambda: sink.of(events.SILVER_REFRESHED), timeout=120)
    (evt,) = sink.of(events.SILVER_REFRESHED)
    validate_all([evt])
    d = evt["data"]
    assert d["target"] == "local" and d["requests"] == len(committed) and d["new_files"] >= 1
    assert all(m["status"] == "success" for m in d["models"].values()) and "detection" in d["models"]
    from ateda.warehouse.build import connect

    with connect(s) as con:
        n = con.execute("select count(*) from silver.ztf_alert").fetchone()[0]
    assert n == d["rows"]["silver.ztf_alert"] == sum(e["data"]["rows"]["alert"] for e in committed)


def test_cli_catalog_add_and_list(tmp_path, monkeypatch, capsys):
    from ateda.cli import main

    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    _csv(tmp_path / "w.csv", [("a", 10.0, 20.0), ("b", 359.9, -89.0)])
    assert main(["catalog", "add", "watch", str(tmp_path / "w.csv"), "--radius-arcsec", "1.5"]) == 0
    assert main(["catalog", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listed[0]["name"] == "watch" and listed[0]["rows"] == 2 and listed[0]["radius_arcsec"] == 1.5
    assert listed[0]["n_cells"] == 2
