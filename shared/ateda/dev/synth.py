"""Synthetic ZTF nights: realistic 4.02 alert packets from a seeded numpy RNG (same seed, same bytes).

A night is a set of survey fields, each visited a few times (g/r, sometimes i) between evening and morning twilight
and on some of the previous 30 nights. Objects sit in a field's readout quadrant (``rcid``) and alert on some of
tonight's visits. By alert count the night is about 70% real sources (transients and variable stars with several
alerts, detections and upper limits in ``prv_candidates``, forced photometry in ``fp_hists``), 10% known asteroids
(one alert each, only upper limits before it) and 20% bogus (low ``rb``/``drb``, one alert each).

Units: ra/dec and their offsets in degrees, distances (distnr, distpsnr*, neargaia*, ssdistnr) in arcsec,
jd in days (Julian Date), magnitudes in AB mag, fluxes in DN (relative to ``magzpsci``), xpos/ypos/fwhm in pixels.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import io
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from astropy.io import fits
import fastavro

from ateda.ztf.layout import SCHEMA_VERSION, canonical_field_types, field_names, parsed_alert_schema

__all__ = ["generate_alerts", "write_single_files", "write_container", "write_tarball", "tarball_name", "night_jd",
           "PUBLISHER"]

PUBLISHER = "ZTF (www.ztf.caltech.edu)"
JD_UNIX_EPOCH = 2440587.5  # JD at 1970-01-01T00:00 UT
NID_EPOCH_JD = 2457754.5  # ZTF night id (nid) counts UT days from 2017-01-01
NONE = -999.0  # "no match" value ZTF uses in catalogue cross-match fields
FP_NONE = -99999.0  # forced-photometry failure sentinel
STAMP = 63  # cutout side in pixels
PIXEL_DEG = 1.01 / 3600.0  # ZTF pixel scale, degrees
FIELD_HALF_DEG = 3.5  # half the side of a ZTF field, degrees
FILTERS = {1: "zg", 2: "zr", 3: "zi"}
_DEPTH = {1: 20.6, 2: 20.4, 3: 19.9}  # median 5-sigma limiting magnitude per filter
_ZP = {1: 26.3, 2: 26.2, 3: 25.7}  # median photometric zero point per filter
_CLR = {1: -0.04, 2: 0.09, 3: 0.0}  # median colour coefficient per filter
_DARK = (0.11, 0.52)  # dark-sky window at Palomar in November, as fraction of the UT day
_REAL = frozenset({"sn", "var"})


@dataclass(slots=True)
class _Visit:
    """One exposure of a field: jd in days, fwhm in arcsec, maglim/zp in mag, bkg/sigpix in DN."""

    jd: float
    fid: int
    nid: int
    fwhm: float
    maglim: float
    zp: float
    zpunc: float
    zprms: float
    clrcoeff: float
    clrcounc: float
    bkg: float
    sigpix: float


@dataclass(slots=True)
class _Field:
    """A survey field: centre ra/dec in degrees, tonight's and earlier visits, objects per readout quadrant."""

    field: int
    ra: float
    dec: float
    tonight: list[_Visit]
    past: list[_Visit]
    nobj: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Object:
    """An astrophysical (or bogus) source: position in degrees, light curve, and its history so far."""

    oid: str
    kind: str
    fld: _Field
    rcid: int
    ra: float
    dec: float
    xpos: float
    ypos: float
    tblid: int
    static: dict[str, Any]
    lc: tuple[float, ...]
    prv: list[dict[str, Any]] = field(default_factory=list)
    fp: list[dict[str, Any]] = field(default_factory=list)
    next_visit: int = 0
    ndet: int = 0
    ncov: int = 0
    jdstart: float | None = None


# ---------------------------------------------------------------- schema helpers


@functools.cache
def _floats(record: str) -> tuple[str, ...]:
    return tuple(k for k, t in canonical_field_types()[record].items() if t == "float")


@functools.cache
def _prv_names() -> tuple[str, ...]:
    return field_names("prv_candidate")


def _round_f32(d: dict[str, Any], record: str) -> dict[str, Any]:
    """Round the record's Avro ``float`` fields to float32 so values survive an Avro round trip unchanged."""
    keys = [k for k in _floats(record) if d.get(k) is not None]
    d.update(zip(keys, np.array([d[k] for k in keys], dtype=np.float32).tolist()))
    return d


def night_jd(night: dt.date) -> float:
    """Julian Date (days) at 00:00 UT of ``night``."""
    return JD_UNIX_EPOCH + (night - dt.date(1970, 1, 1)).days


def _pid(visit: _Visit, rcid: int) -> int:
    """Processing id of one readout quadrant of one exposure: nid, time of day (1e-5 day), rcid."""
    frac = int((visit.jd - (NID_EPOCH_JD + visit.nid)) * 1e5)
    return visit.nid * 10**9 + frac * 10**4 + rcid * 100 + 15


def _rfid(fld: int, fid: int, rcid: int) -> int:
    return fld * 10**6 + 100000 + fid * 10000 + 200 + rcid


def _ps1_objid(ra: float, dec: float) -> int:
    """A Pan-STARRS1-style object id for ra/dec in degrees (declination zone then ra)."""
    return int((dec + 90.0) * 120.0) * 10**13 + int(ra * 1e10)


# ---------------------------------------------------------------- the survey: fields and visits


def _visit(rng: np.random.Generator, jd: float, fid: int, nid: int) -> _Visit:
    """Exposure conditions for a visit at ``jd`` (days) in filter ``fid``."""
    z = rng.standard_normal(4).tolist()
    u = rng.random(4).tolist()
    fwhm = 1.6 + 1.6 * u[0]  # arcsec
    maglim = min(21.3, max(19.3, _DEPTH[fid] - 0.6 * (fwhm - 2.0) + 0.15 * z[0]))
    vals = [fwhm, maglim, _ZP[fid] + 0.05 * z[1], 5e-6 * (1 + u[1]), 0.02 + 0.03 * u[2],
            _CLR[fid] + 0.008 * z[2], 1e-5 * (1 + u[3]), 180.0 + 40.0 * abs(z[3]), 6.0 + 8.0 * u[1]]
    v = np.array(vals, dtype=np.float32).tolist()
    return _Visit(jd, fid, nid, *v)


def _night_visits(rng: np.random.Generator, day_jd: float, nid: int, count: int, fids: list[int]) -> list[_Visit]:
    """``count`` visits of one field during the night starting at ``day_jd`` (00:00 UT, days), jd increasing."""
    gap = 0.02 + 0.02 * float(rng.random())
    latest = _DARK[1] - (count - 1) * gap - 0.005
    start = day_jd + _DARK[0] + (latest - _DARK[0]) * float(rng.random())
    jitter = (rng.random(count) * 0.004).tolist()
    return [_visit(rng, round(start + i * gap + jitter[i], 7), fids[i % len(fids)], nid) for i in range(count)]


def _make_field(rng: np.random.Generator, number: int, jd0: float) -> _Field:
    """A field centred at a random position of the ZTF sky (dec > -25 deg) with tonight's and past visits."""
    u = rng.random(3).tolist()
    lo, hi = math.sin(math.radians(-25.0)), math.sin(math.radians(86.0))
    ra, dec = 360.0 * u[0], math.degrees(math.asin(lo + (hi - lo) * u[1]))
    nid0 = int(jd0 - NID_EPOCH_JD)
    fids = [2, 1] if u[2] < 0.85 else [2, 1, 3]
    tonight = _night_visits(rng, jd0, nid0, int(rng.integers(3, 9)), fids)
    past: list[_Visit] = []
    for back in np.flatnonzero(rng.random(29) < 0.3)[::-1].tolist():
        days = back + 1
        past += _night_visits(rng, jd0 - days, nid0 - days, 2, [1, 2])
    return _Field(number, ra, dec, tonight, past)


def _make_fields(rng: np.random.Generator, jd0: float, count: int) -> list[_Field]:
    numbers = rng.choice(np.arange(245, 882), size=count, replace=False).tolist()
    return [_make_field(rng, f, jd0) for f in numbers]


# ---------------------------------------------------------------- planning the night


def _plan(rng: np.random.Generator, n: int, fields: list[_Field]) -> list[tuple[str, int, list[int]]]:
    """Objects as (kind, field index, indices of tonight's visits where it alerts); alert counts sum to ``n``."""
    n_ast, n_bogus = round(0.1 * n), round(0.2 * n)
    n_real = n - n_ast - n_bogus
    specs: list[tuple[str, int, list[int]]] = []
    while n_real > 0:
        f = int(rng.integers(len(fields)))
        nv = len(fields[f].tonight)
        k = min(n_real, nv, 2 + int(rng.poisson(1.5)))
        visits = sorted(rng.choice(nv, size=k, replace=False).tolist())
        specs.append(("sn" if rng.random() < 0.55 else "var", f, visits))
        n_real -= k
    for kind, count in (("ast", n_ast), ("bogus", n_bogus)):
        fs = rng.integers(len(fields), size=count).tolist()
        us = rng.random(count).tolist()
        specs += [(kind, f, [int(u * len(fields[f].tonight))]) for f, u in zip(fs, us)]
    order = rng.permutation(len(specs)).tolist()
    return [specs[i] for i in order]


def _alert_order(specs: list[tuple[str, int, list[int]]], fields: list[_Field]) -> list[tuple[float, int, int]]:
    """(jd, object index, visit index) for every alert, in time order."""
    order = [(fields[f].tonight[v].jd, i, v) for i, (_, f, visits) in enumerate(specs) for v in visits]
    order.sort()
    return order


def _letters(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct 7-letter ZTF name suffixes ("a" then six lowercase letters)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        codes = rng.integers(0, 26, size=(count - len(out), 6))
        for row in codes.tolist():
            s = "a" + "".join(chr(97 + c) for c in row)
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


# ---------------------------------------------------------------- objects


def _place(rng: np.random.Generator, fld: _Field) -> tuple[float, float, int, float, float]:
    """Random position in a field: ra, dec (degrees), rcid (0-63) and xpos, ypos (pixels) in that quadrant."""
    off = (rng.uniform(-FIELD_HALF_DEG + 0.01, FIELD_HALF_DEG - 0.01, 2)).tolist()
    dec = min(89.9, max(-29.5, fld.dec + off[1]))
    ra = (fld.ra + off[0] / max(0.05, math.cos(math.radians(dec)))) % 360.0
    gx, gy = [(o + FIELD_HALF_DEG) / (2 * FIELD_HALF_DEG) * 8 for o in off]
    ix, iy = min(7, int(gx)), min(7, int(gy))
    ccd, quad = (iy // 2) * 4 + ix // 2 + 1, (iy % 2) * 2 + ix % 2 + 1
    xpos, ypos = 4.0 + (gx - ix) * 3064.0, 4.0 + (gy - iy) * 3072.0
    return ra, dec, (ccd - 1) * 4 + quad - 1, xpos, ypos


def _offset(ra: float, dec: float, dist: float, angle: float) -> tuple[float, float]:
    """Position ``dist`` arcsec from ra/dec (degrees) at position angle ``angle`` (radians)."""
    d = dist / 3600.0
    dec2 = dec + d * math.cos(angle)
    return (ra + d * math.sin(angle) / max(0.05, math.cos(math.radians(dec)))) % 360.0, dec2


def _reference(rng: np.random.Generator, kind: str, ra: float, dec: float) -> dict[str, Any]:
    """Nearest source in the reference image (distnr arcsec, magnr mag) or the -999 no-match values."""
    u = rng.random(6).tolist()
    if kind == "var":
        dist, mag = 0.05 + 0.45 * u[1], 15.5 + 4.0 * u[2]
    elif kind == "sn" and u[0] < 0.8:
        dist, mag = 0.4 + 2.6 * u[1], 17.5 + 4.0 * u[2]
    elif kind == "bogus" and u[0] < 0.5:
        dist, mag = 0.3 + 2.7 * u[1], 11.0 + 3.5 * u[2]
    elif kind == "ast" and u[0] < 0.3:
        dist, mag = 4.0 + 8.0 * u[1], 19.0 + 4.0 * u[2]
    else:
        return dict.fromkeys(("distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "ranr", "decnr"), NONE)
    ranr, decnr = _offset(ra, dec, dist, 2 * math.pi * u[3])
    sig = min(0.3, 0.01 + 0.05 * 10 ** (0.4 * (mag - 20.0)))
    return {"distnr": dist, "magnr": mag, "sigmagnr": sig, "chinr": 0.5 + 2.5 * u[4],
            "sharpnr": 0.1 * (u[5] - 0.5), "ranr": round(ranr, 7), "decnr": round(decnr, 7)}


def _ps1(rng: np.random.Generator, kind: str, ra: float, dec: float, ref: dict[str, Any]) -> dict[str, Any]:
    """The three nearest Pan-STARRS1 sources: distances (arcsec), grizy mags, star/galaxy scores."""
    u = rng.random(18).tolist()
    near = ref["distnr"] > 0 and ref["distnr"] < 3.5
    d1 = ref["distnr"] + 0.1 * u[0] if near else 2.0 + 23.0 * u[0]
    dists = [d1, d1 + 1.0 + 9.0 * u[1], d1 + 10.0 + 15.0 * u[2]]
    star1 = {"var": 0.9 + 0.1 * u[3], "sn": 0.3 * u[3] if near else u[3], "bogus": 0.95 + 0.05 * u[3]}.get(kind, u[3])
    out: dict[str, Any] = {"nmtchps": 1 + int(19 * u[4])}
    for i, dist in enumerate(dists, start=1):
        r = ref["magnr"] if (i == 1 and near) else 17.0 + 5.0 * u[4 + i]
        g, ip = r + 0.2 + 0.8 * u[7 + i], r - 0.4 * u[10 + i]
        mags = [g, r, ip, ip - 0.3 * u[13 + i]]
        if u[16] < 0.1:
            mags[0] = NONE
        for band, m in zip("griz", mags):
            out[f"s{band}mag{i}"] = m
        out[f"sgscore{i}"] = star1 if i == 1 else u[12 + i]
        out[f"distpsnr{i}"] = dist
        out[f"objectidps{i}"] = _ps1_objid(*_offset(ra, dec, dist, 2 * math.pi * u[i]))
    return out


def _gaia(rng: np.random.Generator, ref: dict[str, Any]) -> dict[str, Any]:
    """Nearest Gaia source and nearest bright (G < 12) Gaia source: distance (arcsec), G mag, or -999."""
    u = rng.random(5).tolist()
    if 0 < ref["distnr"] < 1.0 and ref["magnr"] < 20.0:
        near, mag = ref["distnr"] + 0.05 * u[0], ref["magnr"] + 0.1 * (u[1] - 0.5)
    elif u[0] < 0.8:
        near, mag = 2.0 + 58.0 * u[1], 14.0 + 6.5 * u[2]
    else:
        near, mag = NONE, NONE
    bright = (20.0 + 180.0 * u[3], 8.0 + 4.0 * u[4]) if u[2] < 0.3 else (NONE, NONE)
    return {"neargaia": near, "maggaia": mag, "neargaiabright": bright[0], "maggaiabright": bright[1]}


def _asteroid_name(rng: np.random.Generator, year: int) -> str:
    """A minor-planet name as ZTF reports it: a number, or a provisional designation."""
    u = rng.random(4).tolist()
    if u[0] < 0.75:
        return str(1000 + int(699000 * u[1]))
    half = "ABCDEFGHJKLMNOPQRSTUVWXY"[int(24 * u[2])]
    return f"{year - 1 - int(8 * u[3])}{half}{chr(65 + int(26 * u[1]))}{1 + int(199 * u[2])}"


def _light_curve(rng: np.random.Generator, kind: str, jd0: float, static: dict[str, Any]) -> tuple[float, ...]:
    """Light-curve parameters. sn: (t_peak jd, peak mag, rise days, decline mag/day, g-r, r-i);
    var: (reference mag, amplitude mag, period days, phase, g-r, r-i); ast/bogus: (tonight's mag offset,)."""
    u = rng.random(6).tolist()
    if kind == "sn":
        return (jd0 - 25.0 + 33.0 * u[0], 16.5 + 2.8 * u[1], 10.0 + 10.0 * u[2], 0.02 + 0.04 * u[3],
                -0.2 + 0.5 * u[4], 0.1 * u[5])
    if kind == "var":
        return (static["magnr"], 0.3 + 0.9 * u[0], 0.1 + 50.0 * u[1] ** 2, 2 * math.pi * u[2],
                0.2 + 0.8 * u[4], 0.1 + 0.3 * u[5])
    return (u[0],)


def _diff_flux(obj: _Object, jd: float, fid: int) -> float:
    """Difference-image flux at ``jd`` (days) in filter ``fid``, in units where magnitude m has flux 10**(-0.4 m)."""
    lc = obj.lc
    colour = {1: lc[4], 2: 0.0, 3: -lc[5]}[fid] if len(lc) > 1 else 0.0
    if obj.kind == "sn":
        dt_ = jd - lc[0]
        if dt_ < -1.5 * lc[2]:
            return 0.0
        mag = lc[1] + colour + (2.5 * (dt_ / lc[2]) ** 2 if dt_ < 0 else lc[3] * dt_)
        return 10 ** (-0.4 * mag)
    if obj.kind == "var":
        ref = 10 ** (-0.4 * (lc[0] + colour))
        return ref * (10 ** (-0.4 * lc[1] * math.sin(2 * math.pi * jd / lc[2] + lc[3])) - 1.0)
    return 0.0


def _make_object(rng: np.random.Generator, letters: str, spec: tuple[str, int, list[int]],
                 fields: list[_Field], jd0: float, year: int) -> _Object:
    """Create an object and its history from the previous 30 nights."""
    kind, f, _ = spec
    fld = fields[f]
    ra, dec, rcid, xpos, ypos = _place(rng, fld)
    # tblid counts objects per readout quadrant over every field: visits of two fields can share a pid's
    # time-of-day and rcid, and candid = pid * 1e6 + 1e4 + tblid must stay unique
    counter = fields[0].nobj
    counter[rcid] = tblid = counter.get(rcid, 0) + 1
    ref = _reference(rng, kind, ra, dec)
    static = {**ref, **_ps1(rng, kind, ra, dec, ref), **_gaia(rng, ref)}
    static.update(ssdistnr=NONE, ssmagnr=NONE, ssnamenr="null")
    if kind == "ast":
        static["ssnamenr"] = _asteroid_name(rng, year)
    _round_f32(static, "candidate")
    lc = _light_curve(rng, kind, jd0, static)
    obj = _Object("", kind, fld, rcid, round(ra, 7), round(dec, 7), xpos, ypos, tblid, static, lc)
    obj.ncov = int(rng.integers(150, 1200))
    if kind == "var":
        obj.ndet = int(rng.integers(20, 600))
        obj.jdstart = round(2458200.7 + (jd0 - 2458300.0) * float(rng.random()), 7)  # first seen since 2018
    first_year = year if obj.jdstart is None else dt.date.fromordinal(int(obj.jdstart - 1721424.5)).year
    obj.oid = f"ZTF{first_year % 100:02d}{letters}"
    for visit in fld.past:
        _observe(rng, obj, visit, alert=False)
    return obj


# ---------------------------------------------------------------- measurements


def _exposure(obj: _Object, visit: _Visit, archive: bool) -> dict[str, Any]:
    """Fields fixed by the exposure and quadrant; the difference-image name is a full archive path if ``archive``."""
    day = dt.date(2017, 1, 1) + dt.timedelta(days=visit.nid)
    frac = f"{int((visit.jd - (NID_EPOCH_JD + visit.nid)) * 1e6):06d}"
    ccd, quad = obj.rcid // 4 + 1, obj.rcid % 4 + 1
    name = f"ztf_{day:%Y%m%d}{frac}_{obj.fld.field:06d}_{FILTERS[visit.fid]}_c{ccd:02d}_o_q{quad}_scimrefdiffimg.fits"
    if archive:
        name = f"/ztf/archive/sci/{day:%Y}/{day:%m%d}/{frac}/{name}.fz"
    return {"jd": visit.jd, "fid": visit.fid, "pid": _pid(visit, obj.rcid), "diffmaglim": visit.maglim,
            "pdiffimfilename": name, "programpi": "Kulkarni", "programid": 1, "nid": visit.nid,
            "rcid": obj.rcid, "field": obj.fld.field, "magzpsci": visit.zp, "magzpsciunc": visit.zpunc,
            "magzpscirms": visit.zprms, "clrcoeff": visit.clrcoeff, "clrcounc": visit.clrcounc,
            "rbversion": "t17_f5_c3"}


def _reference_image(obj: _Object, fid: int) -> dict[str, Any]:
    """Reference-image fields (deterministic per field, filter and quadrant); jd in days."""
    h = (obj.fld.field * 7919 + fid * 104729 + obj.rcid * 1299709) % 1000
    start = round(2458150.6 + 0.25 * h, 6)
    return {"rfid": _rfid(obj.fld.field, fid, obj.rcid), "jdstartref": start,
            "jdendref": round(start + 60 + h % 150, 6), "nframesref": 15 + h % 26}


def _quality(obj: _Object, visit: _Visit, u: list[float]) -> dict[str, Any]:
    """Real/bogus scores and shape parameters; bogus detections are elongated with low rb/drb."""
    bogus = obj.kind == "bogus"
    fwhm = visit.fwhm / 1.01 * (0.6 + 0.5 * u[0]) * (1.8 if bogus else 1.0)  # pixels
    elong = 1.5 + 2.5 * u[1] if bogus else 1.0 + 0.3 * u[1]
    b = 0.3 * fwhm * (0.8 + 0.4 * u[2])
    rb = 0.28 * u[3] if bogus else 0.45 + 0.55 * u[3] ** 0.5
    drb = 0.1 * u[4] if bogus else 0.999 - 0.2 * u[4] ** 4
    return {"fwhm": fwhm, "elong": elong, "bimage": b, "aimage": b * elong, "bimagerat": b / fwhm,
            "aimagerat": b * elong / fwhm, "rb": rb, "drb": drb,
            "classtar": (0.3 + 0.5 * u[5]) if bogus else 0.95 + 0.05 * u[5],
            "nneg": 5 + int(15 * u[6]) if bogus else int(5 * u[6]), "nbad": int(5 * u[7]) if bogus else 0,
            "sumrat": 0.3 + 0.5 * u[8] if bogus else 0.9 + 0.1 * u[8], "seeratio": 0.8 + 1.2 * u[9]}


def _photometry(visit: _Visit, mag: float, z: list[float], u: list[float]) -> dict[str, Any]:
    """PSF and aperture photometry of a detection of magnitude ``mag`` (mag, errors in mag)."""
    snr = 5.0 * 10 ** (0.4 * (visit.maglim - mag))
    sig = max(0.01, 1.0857 / snr)
    magap = mag + sig * z[0]
    return {"magpsf": mag, "sigmapsf": sig, "chipsf": 0.5 + 9.5 * u[10] ** 2, "magap": magap, "sigmagap": 0.9 * sig,
            "magapbig": magap + 0.02 * z[1], "sigmagapbig": 1.1 * sig, "magdiff": magap - mag,
            "magfromlim": visit.maglim - magap, "sky": 0.5 * z[2], "scorr": round(snr * (0.8 + 0.4 * u[11]), 5),
            "dsnrms": 10.0 + 40.0 * u[12], "ssnrms": 30.0 + 70.0 * u[13]}


def _candidate(rng: np.random.Generator, obj: _Object, visit: _Visit, mag: float, positive: bool) -> dict[str, Any]:
    """A full ``candidate`` record for a detection of ``mag`` (mag) at ``visit``; position scatter ~0.1 arcsec."""
    z = rng.standard_normal(4).tolist()
    u = rng.random(16).tolist()
    pid = _pid(visit, obj.rcid)
    c = _exposure(obj, visit, archive=False)
    c.update(obj.static)
    for part in (_reference_image(obj, visit.fid), _quality(obj, visit, u), _photometry(visit, mag, z, u)):
        c.update(part)
    dra = 0.1 / 3600 * z[3] / max(0.05, math.cos(math.radians(obj.dec)))
    c.update(candid=pid * 10**6 + 10**4 + obj.tblid, isdiffpos="t" if positive else "f", tblid=obj.tblid,
             xpos=obj.xpos + 0.1 * z[3], ypos=obj.ypos + 0.1 * z[2], ra=round(obj.ra + dra, 7),
             dec=round(obj.dec + 0.1 / 3600 * z[1], 7), tooflag=0, nmatches=800 + int(1500 * u[14]),
             mindtoedge=min(obj.xpos, obj.ypos, 3072 - obj.xpos, 3080 - obj.ypos), exptime=30.0,
             zpclrcov=-1e-5 * (1 + u[15]), zpmed=visit.zp + 0.05, clrmed=0.5 + 0.2 * u[15], clrrms=0.2 + 0.1 * u[14],
             drbversion="d6_m7", ndethist=obj.ndet, ncovhist=obj.ncov, jdstarthist=obj.jdstart, jdendhist=visit.jd)
    if obj.static["distnr"] > 0:
        c["distnr"] = obj.static["distnr"] * (0.9 + 0.2 * u[13])
    c["dsdiff"] = c["dsnrms"] - c["ssnrms"]
    return _round_f32({k: c[k] for k in field_names("candidate")}, "candidate")


@functools.cache
def _empty_prv() -> dict[str, Any]:
    return dict.fromkeys(_prv_names())


def _to_prv(obj: _Object, visit: _Visit, cand: dict[str, Any] | None) -> dict[str, Any]:
    """A ``prv_candidate``: the detection ``cand`` projected, or an upper limit (candid None) if ``cand`` is None."""
    prv = dict(_empty_prv())
    if cand is not None:
        prv.update((k, cand[k]) for k in _prv_names())
        prv.update(ssdistnr=None, ssmagnr=None, ssnamenr=None)
    prv.update(_exposure(obj, visit, archive=True))
    return prv


def _forced_phot(rng: np.random.Generator, obj: _Object, visit: _Visit) -> dict[str, Any]:
    """An ``fp_hist`` entry: forced PSF photometry (DN, relative to magzpsci) at the object's position."""
    u = rng.random(4).tolist()
    exp = _exposure(obj, visit, archive=False)
    fp = {k: exp[k] for k in ("field", "rcid", "fid", "pid", "magzpsci", "magzpsciunc", "magzpscirms", "clrcoeff",
                              "clrcounc", "diffmaglim", "programid", "jd")}
    unc = 10 ** (-0.4 * (visit.maglim - visit.zp)) / 5.0
    flux = _diff_flux(obj, visit.jd, visit.fid) * 10 ** (0.4 * visit.zp) + unc * float(rng.standard_normal())
    ref = {k: obj.static[k] for k in ("distnr", "ranr", "decnr", "magnr", "sigmagnr", "chinr", "sharpnr")}
    fp.update(rfid=_rfid(obj.fld.field, visit.fid, obj.rcid), sciinpseeing=visit.fwhm, scibckgnd=visit.bkg,
              scisigpix=visit.sigpix, exptime=30.0, adpctdif1=0.05 + 0.1 * u[0], adpctdif2=0.05 + 0.1 * u[1],
              forcediffimflux=flux, forcediffimfluxunc=unc, procstatus="56" if u[3] < 0.02 else "0", **ref)
    if u[2] < 0.07:  # failed measurement: ZTF writes the sentinel into every measured field
        fp.update(dict.fromkeys(("forcediffimflux", "forcediffimfluxunc", *ref), FP_NONE), procstatus="61")
    return _round_f32({k: fp[k] for k in field_names("fp_hist")}, "fp_hist")


def _observe(rng: np.random.Generator, obj: _Object, visit: _Visit, alert: bool,
             can_detect: bool = True) -> dict[str, Any] | None:
    """Record one visit in the object's history; return the candidate if it is detected (always when ``alert``).

    An alert's visit is recorded in the history by :func:`_alert` after the packet is built. Tonight's visits
    without an alert pass ``can_detect=False`` and become upper limits.
    """
    obj.ncov += 1
    flux = _diff_flux(obj, visit.jd, visit.fid)
    cand = None
    if alert or (can_detect and abs(flux) > 10 ** (-0.4 * visit.maglim)):
        mag, positive = _alert_mag(rng, obj, visit, flux)
        obj.ndet += 1
        obj.jdstart = obj.jdstart if obj.jdstart is not None else visit.jd
        cand = _candidate(rng, obj, visit, mag, positive)
    if not alert:
        obj.prv.append(_to_prv(obj, visit, cand))
        if obj.kind in _REAL:
            obj.fp.append(_forced_phot(rng, obj, visit))
    return cand


def _alert_mag(rng: np.random.Generator, obj: _Object, visit: _Visit, flux: float) -> tuple[float, bool]:
    """Difference magnitude (15-21 mag, brighter than the limit) and sign of a detection."""
    faintest = min(21.0, visit.maglim - 0.15)
    if obj.kind in _REAL and flux != 0.0:
        mag, positive = -2.5 * math.log10(abs(flux)), flux > 0
    elif obj.kind == "ast":
        mag, positive = 17.0 + 4.0 * obj.lc[0], True
    else:
        mag, positive = visit.maglim - 0.1 - 1.2 * float(rng.random()), bool(rng.random() < 0.5)
    return min(faintest, max(15.0, mag)), positive


# ---------------------------------------------------------------- cutouts


def _psf(sigma: float, dx: float, dy: float) -> np.ndarray:
    """Unit-flux Gaussian PSF of width ``sigma`` (pixels) centred ``dx, dy`` pixels off the stamp centre."""
    x = np.arange(STAMP, dtype=np.float32) - (STAMP // 2)
    gx = np.exp(-((x - dx) ** 2) / (2 * sigma**2))
    gy = np.exp(-((x - dy) ** 2) / (2 * sigma**2))
    return np.outer(gy, gx) / (2 * math.pi * sigma**2)


def _images(rng: np.random.Generator, flux: float, ref_flux: float, ref_off: tuple[float, float], sigma: float,
            bkg: float, noise: float, positive: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Science, template and difference images (DN). The transient (``flux`` DN) is only in science and difference;
    the reference source (``ref_flux`` DN, ``ref_off`` pixels off centre) only in science and template."""
    dx, dy = (0.5 * rng.standard_normal(2)).tolist()
    star = _psf(sigma, dx, dy) * flux * (1 if positive else -1)
    host = _psf(1.3 * sigma, *ref_off) * ref_flux if ref_flux > 0 else np.zeros((STAMP, STAMP))
    shape = (STAMP, STAMP)
    template = bkg + host + rng.normal(0.0, 0.4 * noise, shape)
    science = bkg + host + star + rng.normal(0.0, noise, shape)
    difference = star + rng.normal(0.0, 1.1 * noise, shape)
    return science.astype(np.float32), template.astype(np.float32), difference.astype(np.float32)


def _fits_gz(data: np.ndarray, header: dict[str, Any]) -> bytes:
    """A gzip-compressed single-HDU FITS file holding ``data`` (big-endian float32) and ``header``."""

    hdu = fits.PrimaryHDU(data=data.astype(">f4"), header=fits.Header(list(header.items())))
    buf = io.BytesIO()
    hdu.writeto(buf)
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def _header(zp: float, fwhm: float, ra: float | None = None, dec: float | None = None) -> dict[str, Any]:
    """Stamp header: units, exposure (s), zero point (mag), seeing (arcsec), and a TAN WCS when ra/dec (deg) given."""
    h: dict[str, Any] = {"BUNIT": "DN", "EXPTIME": 30.0, "MAGZP": round(zp, 4), "SEEING": round(fwhm, 3)}
    if ra is not None and dec is not None:
        c = STAMP // 2 + 1.0
        h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": c, "CRPIX2": c, "CRVAL1": ra,
                  "CRVAL2": dec, "CD1_1": -PIXEL_DEG, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": PIXEL_DEG})
    return h


def _stamp_set(rng: np.random.Generator, mag: float, zp: float, fwhm: float, bkg: float, noise: float,
               positive: bool, ref_mag: float, ref_dist: float, wcs: tuple[float, float] | None) -> tuple[bytes, ...]:
    """Gzipped FITS science, template and difference stamps for a detection of ``mag`` (mag); fwhm in arcsec."""
    ang = 2 * math.pi * float(rng.random())
    off = (ref_dist / 1.01 * math.cos(ang), ref_dist / 1.01 * math.sin(ang))
    ref_flux = 10 ** (-0.4 * (ref_mag - zp)) if 0 < ref_mag < 25 and 0 <= ref_dist < 15 else 0.0
    images = _images(rng, 10 ** (-0.4 * (mag - zp)), ref_flux, off, fwhm / 1.01 / 2.355, bkg, noise, positive)
    header = _header(zp, fwhm, *(wcs or (None, None)))
    return tuple(_fits_gz(img, header) for img in images)


def _stamp_pool(rng: np.random.Generator, size: int = 32) -> list[tuple[bytes, ...]]:
    """``size`` generic stamp triplets, reused across alerts when cutouts need not be unique."""
    pool = []
    for _ in range(size):
        u = rng.random(6).tolist()
        pool.append(_stamp_set(rng, 16.0 + 4.5 * u[0], 26.2, 1.6 + 1.6 * u[1], 150.0 + 200.0 * u[2],
                               6.0 + 8.0 * u[3], u[4] < 0.85, 17.0 + 4.0 * u[5] if u[5] < 0.6 else NONE,
                               3.0 * u[5], None))
    return pool


def _cutouts(rng: np.random.Generator, obj: _Object, visit: _Visit, cand: dict[str, Any],
             pool: list[tuple[bytes, ...]] | None) -> dict[str, dict[str, Any]]:
    """The three cutout records of an alert, named like ZTF's stamp files."""
    if pool is not None:
        stamps = pool[int(rng.integers(len(pool)))]
    else:
        stamps = _stamp_set(rng, cand["magpsf"], visit.zp, visit.fwhm, visit.bkg, visit.sigpix,
                            cand["isdiffpos"] == "t", obj.static["magnr"], obj.static["distnr"],
                            (cand["ra"], cand["dec"]))
    candid, pid = cand["candid"], cand["pid"]
    names = (f"candid{candid}_pid{pid}_targ_sci.fits.gz", f"candid{candid}_ref.fits.gz",
             f"candid{candid}_pid{pid}_targ_scimref.fits.gz")
    keys = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
    return {k: {"fileName": name, "stampData": data} for k, name, data in zip(keys, names, stamps)}


# ---------------------------------------------------------------- alerts


def _alert(rng: np.random.Generator, obj: _Object, v: int, pool: list[tuple[bytes, ...]] | None) -> dict[str, Any]:
    """The alert packet for the object's detection at tonight's visit ``v``; then add it to the object's history."""
    tonight = obj.fld.tonight
    for i in range(obj.next_visit, v):
        _observe(rng, obj, tonight[i], alert=False, can_detect=False)
    visit = tonight[v]
    cand = _observe(rng, obj, visit, alert=True)
    assert cand is not None
    if obj.kind == "ast":
        cand.update(ssdistnr=round(4.0 * float(rng.random()), 1),
                    ssmagnr=round(cand["magpsf"] + 0.3 * float(rng.standard_normal()), 1))
        _round_f32(cand, "candidate")
    alert = {"schemavsn": SCHEMA_VERSION, "publisher": PUBLISHER, "objectId": obj.oid, "candid": cand["candid"],
             "candidate": cand, "prv_candidates": [dict(p) for p in obj.prv] or None,
             "fp_hists": [dict(f) for f in obj.fp] or None, **_cutouts(rng, obj, visit, cand, pool)}
    obj.prv.append(_to_prv(obj, visit, cand))
    if obj.kind in _REAL:
        obj.fp.append(_forced_phot(rng, obj, visit))
    obj.next_visit = v + 1
    return alert


def generate_alerts(n: int, seed: int = 0, night: dt.date = dt.date(2026, 11, 20),
                    unique_cutouts: bool = True) -> Iterator[dict[str, Any]]:
    """Yield ``n`` ZTF 4.02 alert packets of one synthetic night, in time order (jd in days, increasing).

    ``night`` is the UT date; alerts fall in its dark hours (jd = JD(night 00:00 UT) + 0.11..0.52).
    With ``unique_cutouts=False`` stamps come from a pool of 32 triplets built once (fast); otherwise each alert
    gets its own stamps, drawn from its magnitude, seeing and position. Deterministic for a given seed.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    jd0 = night_jd(night)
    fields = _make_fields(rng, jd0, max(2, min(400, n // 200 + 1)))
    specs = _plan(rng, n, fields)
    letters = _letters(rng, len(specs))
    pool = None if unique_cutouts else _stamp_pool(rng)
    left = [len(s[2]) for s in specs]
    live: dict[int, _Object] = {}
    for _, i, v in _alert_order(specs, fields):
        if i not in live:
            live[i] = _make_object(rng, letters[i], specs[i], fields, jd0, night.year)
        yield _alert(rng, live[i], v, pool)
        left[i] -= 1
        if not left[i]:
            del live[i]  # last alert of this object tonight: free its history


# ---------------------------------------------------------------- writers


def _sync_marker(key: str) -> bytes:
    """A 16-byte Avro sync marker derived from ``key``, so written files are byte-for-byte reproducible."""
    return hashlib.md5(f"ateda.synth:{key}".encode()).digest()


def _avro_bytes(alert: dict[str, Any]) -> bytes:
    """One alert as a single-record Avro container (null codec)."""

    buf = io.BytesIO()
    fastavro.writer(buf, parsed_alert_schema(), [alert], codec="null", sync_marker=_sync_marker(str(alert["candid"])))
    return buf.getvalue()


def write_single_files(out_dir: str | Path, n: int, seed: int = 0, **kw: Any) -> list[Path]:
    """Write one Avro container per alert, ``<out_dir>/<candid>.avro``; return the paths in time order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for alert in generate_alerts(n, seed=seed, **kw):
        path = out / f"{alert['candid']}.avro"
        path.write_bytes(_avro_bytes(alert))
        paths.append(path)
    return paths


def write_container(path: str | Path, n: int, seed: int = 0, **kw: Any) -> Path:
    """Write all ``n`` alerts as one multi-record Avro container (null codec), streamed; return its path."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        marker = _sync_marker(f"{n}:{seed}:{sorted(kw.items())}")
        alerts = generate_alerts(n, seed=seed, **kw)
        fastavro.writer(fh, parsed_alert_schema(), alerts, codec="null", sync_marker=marker)
    return path


def tarball_name(night: dt.date) -> str:
    """The name ZTF gives a night's public alert archive."""
    return f"ztf_public_{night:%Y%m%d}.tar.gz"


def write_tarball(path: str | Path, n: int, seed: int = 0, **kw: Any) -> Path:
    """Write a gzip tarball with one ``<candid>.avro`` member per alert, streamed one member at a time.

    If ``path`` is an existing directory the file is named ``ztf_public_YYYYMMDD.tar.gz`` inside it. The bytes are
    deterministic for a seed (member and gzip times are the night's date).
    """
    night = kw.get("night", dt.date(2026, 11, 20))
    path = Path(path)
    if path.is_dir():
        path = path / tarball_name(night)
    path.parent.mkdir(parents=True, exist_ok=True)
    mtime = int((night_jd(night) - JD_UNIX_EPOCH) * 86400)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for alert in generate_alerts(n, seed=seed, **kw):
            data = _avro_bytes(alert)
            info = tarfile.TarInfo(f"{alert['candid']}.avro")
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
