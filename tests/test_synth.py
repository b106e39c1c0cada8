"""The synthetic ZTF night: layout matches the official 4.02 schema, alerts validate, files read back, FITS stamps."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any, Sequence

import fastavro
import pytest
from fastavro.validation import validate

from ateda.dev import synth

from ateda.ztf import layout as ztf_layout
from conftest import ZTF

OFFICIAL = ZTF / "schema" / "4.02"  # the official schema files beside the checkout (../shared)
RECORDS = ("alert", "candidate", "prv_candidate", "fp_hist", "cutout")
NIGHT = dt.date(2026, 11, 20)


def _official_json() -> dict[str, dict[str, Any]]:
    if not all((OFFICIAL / f"{r}.avsc").is_file() for r in RECORDS):
        pytest.skip(f"official ZTF 4.02 schema not found in {OFFICIAL}")
    return {r: json.loads((OFFICIAL / f"{r}.avsc").read_text()) for r in RECORDS}


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    """The official alert schema parsed by fastavro, its named types registered from the sibling .avsc files."""
    docs = _official_json()
    named: dict[str, Any] = {}
    for r in ("cutout", "candidate", "prv_candidate", "fp_hist"):
        fastavro.parse_schema(docs[r], named_schemas=named)
    return fastavro.parse_schema(docs["alert"], named_schemas=named)


@pytest.fixture(scope="module")
def night() -> list[dict[str, Any]]:
    return list(synth.generate_alerts(400, seed=11, unique_cutouts=False))


def _norm(t: Any, records: dict[str, list], namespace: str) -> Any:
    """Comparable form of an Avro type: a record (inline or named) becomes its full name; fields go to ``records``."""
    if isinstance(t, list):
        return [_norm(x, records, namespace) for x in t]
    if isinstance(t, dict) and t["type"] == "array":
        return {"array": _norm(t["items"], records, namespace)}
    if isinstance(t, dict) and t["type"] == "record":
        ns = t.get("namespace", namespace)
        full = t["name"] if "." in t["name"] else f"{ns}.{t['name']}"
        records[full] = [(f["name"], _norm(f["type"], records, ns)) for f in t["fields"]]
        return full
    if isinstance(t, dict):
        return _norm(t["type"], records, namespace)
    return t if t in ztf_layout.PRIMITIVES or "." in t else f"{namespace}.{t}"


def _records(schema: dict[str, Any], extra: Sequence[dict[str, Any]] = ()) -> dict[str, list]:
    records: dict[str, list] = {}
    for doc in (*extra, schema):
        _norm(doc, records, "")
    return records


def test_layout_matches_official_schema() -> None:
    docs = _official_json()
    theirs = _records(docs["alert"], [docs[r] for r in ("cutout", "candidate", "prv_candidate", "fp_hist")])
    ours = _records(ztf_layout.alert_schema())
    assert set(ours) == {"ztf.alert", "ztf.alert.candidate", "ztf.alert.prv_candidate", "ztf.alert.fp_hist",
                         "ztf.alert.cutout"}
    for name in theirs:
        assert [f for f, _ in ours[name]] == [f for f, _ in theirs[name]], name
        assert ours[name] == theirs[name], name
    assert ztf_layout.alert_schema()["version"] == "4.02"
    fastavro.parse_schema(ztf_layout.alert_schema())
    canonical = ztf_layout.canonical_field_types()
    for r in ("candidate", "prv_candidate", "fp_hist"):
        expected = {f["name"]: f["type"][1] if isinstance(f["type"], list) else f["type"] for f in docs[r]["fields"]}
        assert canonical[r] == expected, r


def test_alerts_validate_against_official_schema(official: dict[str, Any], night: list[dict[str, Any]]) -> None:
    assert len(night) == 400
    for alert in night:
        assert validate(alert, official, raise_errors=True, strict=True)
    unique = list(synth.generate_alerts(5, seed=2))
    assert all(validate(a, official, raise_errors=True, strict=True) for a in unique)


def test_alert_values_are_plausible(night: list[dict[str, Any]]) -> None:
    jd0 = synth.night_jd(NIGHT)
    jds = [a["candidate"]["jd"] for a in night]
    assert jds == sorted(jds) and jd0 < jds[0] and jds[-1] < jd0 + 1
    assert len({a["candid"] for a in night}) == len(night)
    for a in night:
        c = a["candidate"]
        assert re.fullmatch(r"ZTF\d{2}[a-z]{7}", a["objectId"])
        assert a["candid"] == c["candid"] and len(str(c["candid"])) in (18, 19)
        assert a["schemavsn"] == "4.02" and a["publisher"] == "ZTF (www.ztf.caltech.edu)"
        assert -30 < c["dec"] <= 90 and 0 <= c["ra"] < 360 and c["fid"] in (1, 2, 3)
        assert 15 <= c["magpsf"] <= 21 and 0 <= c["rb"] <= 1 and 0 <= c["drb"] <= 1
        assert c["isdiffpos"] in ("t", "f") and c["programid"] == 1 and c["tooflag"] == 0


def test_generation_is_deterministic() -> None:
    assert list(synth.generate_alerts(30, seed=4)) == list(synth.generate_alerts(30, seed=4))
    assert [a["candid"] for a in synth.generate_alerts(30, seed=5)] != [a["candid"] for a in synth.generate_alerts(30)]


def test_single_files_tarball_and_container_read_back(tmp_path: Path) -> None:
    expected = list(synth.generate_alerts(12, seed=3, unique_cutouts=False))
    candids = [a["candid"] for a in expected]
    paths = synth.write_single_files(tmp_path / "single", 12, seed=3, unique_cutouts=False)
    assert [p.name for p in paths] == [f"{c}.avro" for c in candids]
    for path, alert in zip(paths, expected):
        with path.open("rb") as fh:
            assert list(fastavro.reader(fh)) == [alert]  # float fields are float32-exact, so records match
    tarball = synth.write_tarball(tmp_path, 12, seed=3, unique_cutouts=False)
    assert tarball.name == "ztf_public_20261120.tar.gz"
    read = []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            assert re.fullmatch(r"\d{18,19}\.avro", member.name)
            read += [r["candid"] for r in fastavro.reader(tar.extractfile(member))]
    assert read == candids
    again = synth.write_tarball(tmp_path / "again.tar.gz", 12, seed=3, unique_cutouts=False)
    assert again.read_bytes() == tarball.read_bytes()
    container = synth.write_container(tmp_path / "night.avro", 12, seed=3, unique_cutouts=False)
    with container.open("rb") as fh:
        assert [r["candid"] for r in fastavro.reader(fh)] == candids


def test_night_contents(night: list[dict[str, Any]]) -> None:
    per_object: dict[str, int] = {}
    for a in night:
        per_object[a["objectId"]] = per_object.get(a["objectId"], 0) + 1
    assert sum(n >= 2 for n in per_object.values()) >= 20
    prv = [p for a in night for p in a["prv_candidates"] or []]
    limits = [p for p in prv if p["candid"] is None]
    assert limits and all(p["magpsf"] is None and p["diffmaglim"] is not None for p in limits)
    assert any(p["candid"] is not None and p["magpsf"] is not None for p in prv)
    fps = [f for a in night for f in a["fp_hists"] or []]
    assert fps and any(f["forcediffimflux"] == -99999.0 for f in fps)
    assert any(f["forcediffimflux"] != -99999.0 and f["forcediffimfluxunc"] > 0 for f in fps)
    asteroids = [a for a in night if a["candidate"]["ssnamenr"] not in (None, "null")]
    assert 20 <= len(asteroids) <= 60
    assert all(0 <= a["candidate"]["ssdistnr"] < 5 and per_object[a["objectId"]] == 1 for a in asteroids)
    bogus = [a for a in night if a["candidate"]["rb"] < 0.3]
    assert 50 <= len(bogus) <= 110
    others = [a["candidate"] for a in night if a not in asteroids]
    assert all(c["ssdistnr"] == -999.0 and c["ssnamenr"] == "null" for c in others)


def _fits_header(stamp: bytes) -> Any:
    from astropy.io import fits

    return fits.getheader(io.BytesIO(gzip.decompress(stamp)))


def _check_stamps(alert: dict[str, Any]) -> None:
    from astropy.io import fits

    candid, pid = alert["candid"], alert["candidate"]["pid"]
    names = {"cutoutScience": f"candid{candid}_pid{pid}_targ_sci.fits.gz",
             "cutoutTemplate": f"candid{candid}_ref.fits.gz",
             "cutoutDifference": f"candid{candid}_pid{pid}_targ_scimref.fits.gz"}
    for key, name in names.items():
        cutout = alert[key]
        assert cutout["fileName"] == name
        with fits.open(io.BytesIO(gzip.decompress(cutout["stampData"]))) as hdul:
            hdul.verify("exception")
            assert hdul[0].data.shape == (63, 63)
            assert hdul[0].header["BUNIT"] == "DN"


def test_cutouts_are_gzipped_63x63_fits(night: list[dict[str, Any]]) -> None:
    for alert in night[:10]:
        _check_stamps(alert)
    for alert in synth.generate_alerts(4, seed=9, unique_cutouts=True):
        _check_stamps(alert)
        assert "CRVAL1" in _fits_header(alert["cutoutScience"]["stampData"])


@pytest.mark.slow
def test_candids_are_unique_over_a_big_night():
    """A bench-sized night: every alert has its own candid (file names and bronze rows depend on it)."""
    candids = [a["candid"] for a in synth.generate_alerts(20_000, seed=7, unique_cutouts=False)]
    assert len(set(candids)) == len(candids)
