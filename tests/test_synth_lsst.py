"""The synthetic Rubin night: decodes in both forms, validates against the shipped schema, ids and fluxes exact,
deterministic, histories and diaObject aggregates consistent, solar-system-only alerts, FITS stamps, also_at."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from fastavro.validation import validate

from ateda.dev import synth_lsst
from ateda.lsst import schemas
from ateda.lsst.alerts import day_obs, decode_lsst, lsst_tables

pytestmark = pytest.mark.skipif(not schemas.known_schemas(), reason="lsst-alert-packet is not installed")

N = 240
SEED = 7
ALSO_AT = [(150.1234567, -12.3456789), (359.9999, 2.5)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("rubin")
    containers = synth_lsst.write_containers(root / "c", N, SEED, per_file=100, also_at=ALSO_AT)
    frames = synth_lsst.write_frames(root / "f", N, SEED, also_at=ALSO_AT)
    records = [r for path, _ in containers.files for r in decode_lsst(path.read_bytes()).records]
    return {"root": root, "containers": containers, "frames": frames, "records": records}


def _f32(x: float | None) -> float | None:
    return None if x is None else float(np.float32(x))


def test_containers_decode_with_version_ids_and_counts(written: dict[str, Any]) -> None:
    truth = written["containers"]
    assert truth.version == "11.1" and truth.schema_id == 1101 and truth.n_alerts == N
    assert [len(ids) for _, ids in truth.files] == [100, 100, 40]
    for path, ids in truth.files:
        dec = decode_lsst(path.read_bytes())
        assert (dec.form, dec.schema_version, dec.schema_id, dec.error) == ("container", "11.1", 1101, None)
        assert [r["diaSourceId"] for r in dec.records] == ids  # exact int64s, in order
    ids = [i for _, got in truth.files for i in got]
    assert len(set(ids)) == N and min(ids) > 2**53 and max(ids) < 2**63


def test_frames_decode_and_equal_the_containers(written: dict[str, Any]) -> None:
    truth, records = written["frames"], written["records"]
    assert len(truth.files) == N
    for (path, ids), rec in zip(truth.files, records):
        data = path.read_bytes()
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1101
        dec = decode_lsst(data)
        assert (dec.form, dec.schema_id) == ("confluent", 1101)
        assert dec.records == [rec] and ids == [rec["diaSourceId"]]  # same seed: the same alerts, every value


def test_records_validate_against_the_shipped_schema(written: dict[str, Any]) -> None:
    parsed = schemas.schema(1101).parsed
    seen: set[int] = set()  # each earlier (forced) source is validated once, in the first alert carrying it
    for rec in written["records"]:
        shell = dict(rec)
        for key, id_key in (("prvDiaSources", "diaSourceId"), ("prvDiaForcedSources", "diaForcedSourceId")):
            if rec[key] is not None:
                shell[key] = [p for p in rec[key] if p[id_key] not in seen]
                seen.update(p[id_key] for p in rec[key])
        assert validate(shell, parsed, raise_errors=True)


def test_same_seed_same_bytes(tmp_path: Path, written: dict[str, Any]) -> None:
    again = synth_lsst.write_containers(tmp_path, N, SEED, per_file=100, also_at=ALSO_AT)
    for (a, _), (b, _) in zip(written["containers"].files, again.files):
        assert a.read_bytes() == b.read_bytes()
    other = synth_lsst.write_containers(tmp_path / "o", 20, SEED + 1)
    assert other.files[0][0].read_bytes() != written["containers"].files[0][0].read_bytes()


def test_ids_fluxes_and_times_are_exact_and_realistic(written: dict[str, Any]) -> None:
    records = written["records"]
    mjds = [r["diaSource"]["midpointMjdTai"] for r in records]
    assert mjds == sorted(mjds)
    assert {day_obs(m) for m in mjds} == {synth_lsst.DEFAULT_NIGHT}
    bands, negative = set(), 0
    for r in records:
        s = r["diaSource"]
        assert r["diaSourceId"] == s["diaSourceId"]
        assert s["psfFlux"] == _f32(s["psfFlux"]) and s["psfFluxErr"] == _f32(s["psfFluxErr"]) > 0
        assert s["scienceFlux"] == _f32(s["scienceFlux"])
        assert 0.0 <= s["reliability"] <= 1.0 and s["snr"] >= 5.0
        assert 0 <= s["detector"] < 189 and 0 <= s["x"] <= 4072 and 0 <= s["y"] <= 4000
        assert s["visit"] // 100000 == int(f"{synth_lsst.DEFAULT_NIGHT:%Y%m%d}")
        # diaSourceId = ((day * 2**14 + seq) * 2**8 + detector) * 2**24 + counter
        assert (s["diaSourceId"] >> 24) & 0xFF == s["detector"]
        assert (s["diaSourceId"] >> 32) & 0x3FFF == s["visit"] % 100000
        assert s["dec"] < 30.5 or any(abs(s["dec"] - d) < 0.01 for _, d in ALSO_AT)
        bands.add(s["band"])
        negative += s["psfFlux"] < 0
        for p in (r["prvDiaSources"] or []) + (r["prvDiaForcedSources"] or []):
            assert p["visit"] // 100000 < int(f"{synth_lsst.DEFAULT_NIGHT:%Y%m%d}") or \
                p["midpointMjdTai"] < s["midpointMjdTai"]
            bands.add(p["band"])
    assert negative and bands == set("ugrizy")
    forced_ids = [f["diaForcedSourceId"] for r in records for f in r["prvDiaForcedSources"] or []]
    assert forced_ids and all(i > 2**53 for i in forced_ids)


def test_histories_are_earlier_sources_of_the_same_object(written: dict[str, Any]) -> None:
    seen: dict[int, dict[int, dict]] = {}
    for r in written["records"]:
        s, obj = r["diaSource"], r["diaObject"]
        if obj is None:
            continue
        oid = obj["diaObjectId"]
        assert s["diaObjectId"] == oid
        known = seen.setdefault(oid, {})
        for p in r["prvDiaSources"]:
            assert p["diaObjectId"] == oid and p["midpointMjdTai"] < s["midpointMjdTai"]
            assert s["midpointMjdTai"] - p["midpointMjdTai"] < 365
            assert known.setdefault(p["diaSourceId"], p) == p  # the same earlier source in every later alert
        for f in r["prvDiaForcedSources"]:
            assert f["diaObjectId"] == oid and f["midpointMjdTai"] < s["midpointMjdTai"]
        # the object is named after its first diaSource
        assert oid == min([p["diaSourceId"] for p in r["prvDiaSources"]] + [s["diaSourceId"]],
                          key=lambda i: next(x["midpointMjdTai"] for x in r["prvDiaSources"] + [s]
                                             if x["diaSourceId"] == i))
        known[s["diaSourceId"]] = s
    truth = written["containers"]
    last = {r["diaObject"]["diaObjectId"]: r for r in written["records"] if r["diaObject"]}
    assert set(last) == set(truth.objects)
    for oid, r in last.items():
        assert truth.objects[oid].n_dia_sources == r["diaObject"]["nDiaSources"] == len(r["prvDiaSources"]) + 1
        assert truth.objects[oid].n_forced == len(r["prvDiaForcedSources"])
    assert sum(t.n_alerts for t in truth.objects.values()) + len(truth.ss_alerts) == N


def _recompute(sources: list[dict], forced: list[dict]) -> dict[str, Any]:
    """The documented aggregates, written again independently of the generator."""
    out: dict[str, Any] = {"nDiaSources": len(sources),
                           "firstDiaSourceMjdTai": min(s["midpointMjdTai"] for s in sources),
                           "lastDiaSourceMjdTai": max(s["midpointMjdTai"] for s in sources),
                           "dec": float(np.mean([s["dec"] for s in sources]))}
    for b in "ugrizy":
        ss = sorted([s for s in sources if s["band"] == b], key=lambda s: s["midpointMjdTai"])
        f = np.array([s["psfFlux"] for s in ss])
        e = np.array([s["psfFluxErr"] for s in ss])
        out[f"{b}_psfFluxNdata"] = len(ss)
        for name, vals, errs in (("psfFlux", f, e),
                                 ("scienceFlux", np.array([s["scienceFlux"] for s in ss]),
                                  np.array([s["scienceFluxErr"] for s in ss])),
                                 ("fpFlux", np.array([s["psfFlux"] for s in forced if s["band"] == b]),
                                  np.array([s["psfFluxErr"] for s in forced if s["band"] == b]))):
            w = 1 / errs**2
            out[f"{b}_{name}Mean"] = float((w * vals).sum() / w.sum()) if len(vals) else None
            out[f"{b}_{name}MeanErr"] = float(1 / np.sqrt(w.sum())) if len(vals) else None
        out[f"{b}_psfFluxSigma"] = float(np.std(f, ddof=1)) if len(f) > 1 else None
        out[f"{b}_psfFluxMin"] = float(f.min()) if len(f) else None
        out[f"{b}_psfFluxMax"] = float(f.max()) if len(f) else None
        out[f"{b}_psfFluxErrMean"] = float(e.mean()) if len(e) else None
        t = np.array([s["midpointMjdTai"] for s in ss])
        out[f"{b}_psfFluxMaxSlope"] = float((np.diff(f) / np.diff(t)).max()) if len(f) > 1 else None
    return out


def test_dia_object_aggregates_match_an_independent_recomputation(written: dict[str, Any]) -> None:
    checked = 0
    for r in written["records"]:
        obj = r["diaObject"]
        if obj is None:
            continue
        want = _recompute(r["prvDiaSources"] + [r["diaSource"]], r["prvDiaForcedSources"])
        for k, v in want.items():
            if v is None:
                assert obj[k] is None, k
            else:
                assert obj[k] == pytest.approx(v, rel=2e-6, abs=1e-9), (k, obj[k], v)
        assert obj["validityStartMjdTai"] == r["diaSource"]["timeProcessedMjdTai"]
        checked += obj["nDiaSources"] > 3
    assert checked >= 10  # objects with real histories were checked, not only one-source ones


def test_solar_system_only_alerts(written: dict[str, Any]) -> None:
    by_id = {r["diaSourceId"]: r for r in written["records"]}
    ss_ids = written["containers"].ss_alerts
    assert ss_ids
    for i in ss_ids:
        r = by_id[i]
        s = r["diaSource"]
        assert s["diaObjectId"] is None and r["diaObject"] is None and s["ssObjectId"] > 2**53
        assert r["ssSource"]["diaSourceId"] == i and r["ssSource"]["ssObjectId"] == s["ssObjectId"]
        assert -90 <= r["ssSource"]["eclBeta"] <= 90 and 0 <= r["ssSource"]["galLon"] < 360
        orbit = r["mpc_orbits"]
        assert orbit["designation"] == r["ssSource"]["designation"]
        packed = orbit["packed_primary_provisional_designation"].encode().ljust(8, b"\0")
        assert int.from_bytes(packed, "big") == s["ssObjectId"]
    assert not any(r["ssSource"] for r in written["records"] if r["diaSourceId"] not in set(ss_ids))


def _matched_peak(img: np.ndarray, sign: float) -> tuple[int, int]:
    """Brightest pixel (of sign) of the image smoothed by a 3x3 box: where the PSF is, noise mostly averaged."""
    a = sign * img
    sm = sum(np.roll(np.roll(a, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    y, x = np.unravel_index(np.argmax(sm[2:-2, 2:-2]), (img.shape[0] - 4, img.shape[1] - 4))
    return int(y) + 2, int(x) + 2


def test_fits_stamps_open_with_a_wcs_and_the_psf_at_the_centre(written: dict[str, Any]) -> None:
    centre = synth_lsst.STAMP // 2
    strong = 0
    for r in written["records"]:
        s = r["diaSource"]
        hdus = {k: fits.open(io.BytesIO(r[k])) for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference")}
        for h in hdus.values():
            head = h[0].header
            assert h[0].data.shape == (31, 31) and h[0].data.dtype.kind == "f"
            assert (head["CTYPE1"], head["CTYPE2"], head["CRVAL1"], head["CRVAL2"]) == \
                ("RA---TAN", "DEC--TAN", s["ra"], s["dec"])
            assert head["CD2_2"] * 3600 == pytest.approx(0.2)
        diff = hdus["cutoutDifference"][0].data.astype(float)
        sci = hdus["cutoutScience"][0].data.astype(float)
        tmpl = hdus["cutoutTemplate"][0].data.astype(float)
        assert np.allclose(sci - tmpl, diff, atol=1e-3 * max(1.0, np.abs(sci).max()))
        if s["snr"] >= 15:
            strong += 1
            sign = 1.0 if s["psfFlux"] > 0 else -1.0
            assert max(abs(a - centre) for a in _matched_peak(diff, sign)) <= 1
            if s["psfFlux"] > 0 and s["templateFlux"] < 0.5 * s["psfFlux"]:
                assert max(abs(a - centre) for a in _matched_peak(sci, 1.0)) <= 1
    assert strong >= 20


def test_also_at_places_objects_where_asked(written: dict[str, Any]) -> None:
    truth = written["containers"]
    assert len(truth.also_at) == len(ALSO_AT)
    last = {r["diaObject"]["diaObjectId"]: r for r in written["records"] if r["diaObject"]}
    for oid, (ra, dec) in zip(truth.also_at, ALSO_AT):
        obj = last[oid]["diaObject"]
        dra = ((obj["ra"] - ra + 180) % 360 - 180) * math.cos(math.radians(dec))
        assert math.hypot(dra, obj["dec"] - dec) * 3600 < 0.3


def test_lsst_tables_take_every_record(written: dict[str, Any]) -> None:
    records = written["records"]
    meta = {"source_bucket": "b", "source_key": "k", "source_etag": "e", "source_member": None, "part": 0,
            "schema_version": "11.1", "schema_id": 1101}
    tables = lsst_tables(records, meta)
    assert tables.rejected == []
    assert tables.alerts.num_rows == N and tables.cutouts.num_rows == 3 * N
    assert tables.alerts["diaSourceId"].to_pylist() == [r["diaSourceId"] for r in records]
    assert tables.alerts["night"].to_pylist() == [synth_lsst.DEFAULT_NIGHT] * N


@pytest.mark.parametrize("version", ["8.0", "9.0", "10.0", "11.0"])
def test_older_versions(tmp_path: Path, version: str) -> None:
    sid = schemas.schema_id_of("lsst.v" + version.replace(".", "_") + ".alert")
    truth = synth_lsst.write_frames(tmp_path, 30, 3, version=version)
    assert truth.schema_id == sid
    parsed = schemas.schema(sid).parsed
    records = [decode_lsst(p.read_bytes()).records[0] for p, _ in truth.files]
    for rec in records:
        assert validate(rec, parsed, raise_errors=True)
    meta = {"schema_version": version, "schema_id": sid}
    assert lsst_tables(records, meta).rejected == []


def test_version_below_8_is_refused() -> None:
    with pytest.raises(ValueError, match="8.0"):
        next(synth_lsst.generate_alerts(1, version="7.4"))


def test_visit_burst_is_one_visit_across_detectors(tmp_path: Path) -> None:
    truth = synth_lsst.write_visit_burst(tmp_path, 300, seed=5)
    records = [decode_lsst(p.read_bytes()).records[0] for p, _ in truth.files]
    assert len(records) == 300
    assert len({r["diaSource"]["visit"] for r in records}) == 1
    assert len({r["diaSource"]["detector"] for r in records}) > 100
    assert len({r["diaSourceId"] for r in records}) == 300
