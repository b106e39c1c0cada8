"""Synthetic Rubin (LSST) nights: alerts in an official ``lsst-alert-packet`` schema from a seeded numpy RNG.

A night (``dayObs``) is a set of LSST fields (3.5 deg across, dec < +30), each visited on tonight's night in pairs
of 30 s visits ~33 min apart in two different bands, and in pairs on ~12% of the previous 240 nights. LSSTCam is
modelled as 189 science detectors (21 rafts of 3x3 sensors, 4072x4000 pixels of 0.2"), each visit dithered by up
to 0.2 deg, so an object falls on a detector of each visit or in a gap. By alert count the night is ~75% real
objects (transients and variable stars with several diaSources over earlier nights, negative difference fluxes for
the variables, forced photometry), ~20% bogus (one diaSource, low reliability) and ~5% solar-system-only alerts
(``diaObject`` null, an ``ssSource`` and ``mpc_orbits``). Every alert has three raw FITS cutouts (31x31 float32).

Ids (all int64, most above 2**53): a visit is ``dayObs * 100000 + seqNum`` (LSSTCam's exposure id);
a ccd-visit is packed as ``((days since 2024-01-01) * 2**14 + seqNum) * 2**8 + detector``, and
``diaSourceId = ccdVisit * 2**24 + counter`` (counter < 2**23 per detector and visit: Rubin's shape, an exposure id
then a per-image counter, not its exact bit layout); ``diaForcedSourceId`` the same with counters from 2**23;
``diaObjectId`` is the diaSourceId of the object's first diaSource (as Rubin's association names a new object);
``ssObjectId`` is the MPC packed provisional designation's 8 ASCII bytes as a big-endian integer.

Units: ra/dec degrees, times MJD TAI (exposure midpoint; UTC + 37 s), fluxes nJy (AB: ``m = 31.4 - 2.5 log10 f``),
x/y and stamp pixels in pixels, seeing in arcsec. The ``diaObject`` aggregates are computed from the object's
diaSources up to and including the alert's (and its forced sources before it): the formulas are in
:func:`dia_object_aggregates` and docs/rubin.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import fastavro
import numpy as np
from astropy.io import fits

from ateda.lsst import schemas
from ateda.lsst.alerts import MJD_UNIX_EPOCH

__all__ = ["DEFAULT_NIGHT", "DEFAULT_VERSION", "LsstTruth", "ObjectTruth", "dia_object_aggregates", "frame",
           "generate_alerts", "write_containers", "write_frames", "write_visit_burst"]

DEFAULT_VERSION = "11.1"
DEFAULT_NIGHT = dt.date(2026, 11, 20)  # dayObs (the night of 20 to 21 November at Cerro Pachon)
BANDS = "ugrizy"
NJY_AB = 31.4  # AB magnitude of 1 nJy
M5 = {"u": 23.7, "g": 24.97, "r": 24.52, "i": 24.13, "z": 23.56, "y": 22.55}  # 30 s, 5-sigma point source, mag
SEEING = 0.83  # median delivered seeing, arcsec (M5 is for it)
EXPOSURE_S = 30.0
SLOT_S = 40.0  # one visit every 40 s (exposure, readout, slew): visit times sit on this grid
PAIR_SLOTS = 50  # a pair's second visit 50 slots (33 min) after its first
DARK_DAY = (0.02, 0.36)  # astronomical night at Cerro Pachon in November: 00:29 .. 08:38 UTC of dayObs + 1
TAI_UTC_S = 37.0
PIXEL_ARCSEC = 0.2
SENSOR_PX = (4072, 4000)
SENSOR_DEG = SENSOR_PX[0] * PIXEL_ARCSEC / 3600.0  # pitch of the 15x15 sensor grid (gaps ignored)
FIELD_RADIUS_DEG = 1.75
DITHER_DEG = 0.2
HISTORY_DAYS = 240  # earlier nights considered (all inside Rubin's 12-month prvDiaSources window)
WINDOW_DAYS = 365  # prvDiaSources / prvDiaForcedSources: the last 12 months
PRECOVERY_DAYS = 30  # forced photometry this long before a new object's first diaSource (from the next night on)
STAMP = 31
PAIRS = (("g", "r"), ("r", "i"), ("i", "z"), ("z", "y"), ("u", "g"), ("g", "i"), ("r", "z"))
_PACK_DAY0 = dt.date(2024, 1, 1)
_COUNTER_BITS = 24
_FORCED_COUNTER0 = 1 << 23
_RAFTS = [(r, c) for r in range(5) for c in range(5) if (r, c) not in ((0, 0), (0, 4), (4, 0), (4, 4))]
_RAFT_INDEX = {rc: i for i, rc in enumerate(_RAFTS)}
_GAL = np.array([[-0.0548755604, -0.8734370902, -0.4838350155],  # ICRS -> galactic rotation
                 [0.4941094279, -0.4448296300, 0.7469822445],
                 [-0.8676661490, -0.1980763734, 0.4559837762]])
_OBLIQUITY = math.radians(23.4392911)  # J2000 mean obliquity of the ecliptic
_SS_FRACTION, _BOGUS_FRACTION = 0.05, 0.20


# ---------------------------------------------------------------- the schema: field layouts and old names

# A field an older version names differently (or types as a timestamp): its value comes from the 11.1 name.
_ALIASES = {
    "time_processed": "timeProcessedMjdTai", "validityStart": "validityStartMjdTai",
    "eclipticLambda": "eclLambda", "eclipticBeta": "eclBeta", "galacticL": "galLon", "galacticB": "galLat",
    "heliocentricDist": "helioRange", "topocentricDist": "topoRange", "predictedVMagnitude": "ephVmag",
    "topocentricX": "topo_x", "topocentricY": "topo_y", "topocentricZ": "topo_z",
    "mpcDesignation": "designation", "mpcH": "h", "epoch": "epoch_mjd", "M": "mean_anomaly", "peri": "argperi",
    "incl": "i", "t_p": "peri_time",
}
_DEFAULTS = {"int": 0, "long": 0, "float": 0.0, "double": 0.0, "string": "", "boolean": False}


def _version_id(version: str | int) -> int:
    sid = int(version) if isinstance(version, int) else schemas.schema_id_of(
        "lsst.v" + str(version).replace(".", "_") + ".alert")
    if sid is None or sid < 800 or schemas.schema(sid) is None:
        shipped = ", ".join(v for i, v in schemas.known_schemas() if i >= 800)
        raise ValueError(f"version {version!r}: the generator writes a shipped version >= 8.0 ({shipped})")
    return sid


@functools.cache
def _layout(sid: int, record: str) -> tuple[tuple[str, str, bool], ...]:
    """(field, kind, nullable) of a record type of schema ``sid`` ("alert", "diaSource", ...): kind is the Avro
    primitive, "timestamp" for a timestamp-micros long, "record"/"array" otherwise."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                found.setdefault(node["name"].rsplit(".", 1)[-1], node)
                for f in node["fields"]:
                    walk(f["type"])
            elif node.get("type") == "array":
                walk(node["items"])
            elif isinstance(node.get("type"), (dict, list)):
                walk(node["type"])

    walk(schemas.schema(sid).expanded)  # type: ignore[union-attr]
    out = []
    for f in found[record]["fields"]:
        t = f["type"]
        alts = [x for x in t if x != "null"] if isinstance(t, list) else [t]
        base = alts[0]
        if isinstance(base, dict):
            kind = "timestamp" if base.get("logicalType") == "timestamp-micros" else str(base.get("type"))
        else:
            kind = base
        out.append((f["name"], kind, isinstance(t, list) and "null" in t))
    return tuple(out)


@functools.cache
def _conform_plan(sid: int, record: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str, bool], ...]]:
    """(every field, the float fields, the fields needing care: an older name or required) of a record type."""
    layout = _layout(sid, record)
    return (tuple(n for n, _, _ in layout), tuple(n for n, k, _ in layout if k == "float"),
            tuple(f for f in layout if f[0] in _ALIASES or not f[2]))


def _conform(sid: int, record: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (11.1 names) as a record of schema ``sid``: its fields in order, older names filled from the 11.1
    ones, floats rounded to float32 (so a value survives Avro unchanged), absent nullable fields null and absent
    required ones zero."""
    names, floats, special = _conform_plan(sid, record)
    get = values.get
    out = {n: get(n) for n in names}
    for name, kind, nullable in special:
        if out[name] is None and name in _ALIASES:
            v = get(_ALIASES[name])
            out[name] = _mjd_datetime(v) if v is not None and kind == "timestamp" else v
        if out[name] is None and not nullable:
            out[name] = _DEFAULTS.get(kind)
    present = [k for k in floats if out[k] is not None]
    if present:
        out.update(zip(present, np.array([out[k] for k in present], dtype=np.float32).tolist()))
    return out


def _mjd_datetime(mjd: float) -> dt.datetime:
    """An MJD as a UTC datetime to the microsecond (8.0's timestamp fields; TAI-UTC not applied)."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        microseconds=round((mjd - MJD_UNIX_EPOCH) * 86400e6))


# ---------------------------------------------------------------- ids


def _ccd_visit(night: dt.date, seq: int, detector: int) -> int:
    return (((night - _PACK_DAY0).days << 14) + seq << 8) + detector


def _mjd_of(night: dt.date) -> float:
    """MJD at 00:00 UTC of a date."""
    return MJD_UNIX_EPOCH + (night - dt.date(1970, 1, 1)).days


def _packed_designation(year: int, half_month: str, letter: str, cycle: int) -> tuple[str, str]:
    """(unpacked, packed) MPC provisional designation, e.g. ("2026 WA12", "K26W12A"); cycle < 100."""
    unpacked = f"{year} {half_month}{letter}{cycle if cycle else ''}"
    return unpacked, f"{chr(ord('A') + year // 100 - 10)}{year % 100:02d}{half_month}{cycle:02d}{letter}"


def _ss_object_id(packed: str) -> int:
    return int.from_bytes(packed.encode("ascii").ljust(8, b"\0"), "big")


# ---------------------------------------------------------------- the survey: fields, visits, detectors


@dataclass(slots=True)
class _Visit:
    """One 30 s exposure: ids, midpoint MJD (TAI), band, seeing (arcsec), 5-sigma depth (mag), dither (deg)."""

    night: dt.date
    seq: int
    visit: int
    mjd: float
    band: str
    fwhm: float
    m5: float
    dx: float
    dy: float

    @property
    def err0(self) -> float:
        """PSF flux error (nJy) of a faint source: a fifth of the 5-sigma flux."""
        return 10 ** (-0.4 * (self.m5 - NJY_AB)) / 5.0


@dataclass(slots=True)
class _Field:
    """A pointing: centre ra/dec (deg), its visits in time order, the index of tonight's first visit."""

    ra: float
    dec: float
    visits: list[_Visit]
    first_tonight: int


def _gnomonic(ra0: float, dec0: float, xi: float, eta: float) -> tuple[float, float]:
    """ra/dec (deg) of the tangent-plane offset xi (east), eta (north) in degrees from ra0/dec0."""
    a0, d0 = math.radians(ra0), math.radians(dec0)
    x, y = math.radians(xi), math.radians(eta)
    den = math.cos(d0) - y * math.sin(d0)
    ra = a0 + math.atan2(x, den)
    dec = math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, den))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def _tangent(ra0: float, dec0: float, ra: float, dec: float) -> tuple[float, float]:
    """Tangent-plane offset (xi, eta) in degrees of ra/dec from the centre ra0/dec0."""
    a, d, a0, d0 = map(math.radians, (ra, dec, ra0, dec0))
    c = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    xi = math.cos(d) * math.sin(a - a0) / c
    eta = (math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / c
    return math.degrees(xi), math.degrees(eta)


def _on_detector(xi: float, eta: float, v: _Visit) -> tuple[int, float, float] | None:
    """(detector, x, y) where the offset (deg) falls in visit ``v``, None in a corner raft or off the camera."""
    u, w = (xi - v.dx) / SENSOR_DEG + 7.5, (eta - v.dy) / SENSOR_DEG + 7.5
    col, row = math.floor(u), math.floor(w)
    if not (0 <= col < 15 and 0 <= row < 15):
        return None
    raft = _RAFT_INDEX.get((row // 3, col // 3))
    if raft is None:
        return None
    return raft * 9 + (row % 3) * 3 + col % 3, (u - col) * SENSOR_PX[0], (w - row) * SENSOR_PX[1]


class _Night:
    """The survey's state while one night is generated: rng, schema, visits taken, id counters."""

    def __init__(self, rng: np.random.Generator, night: dt.date, sid: int) -> None:
        self.rng, self.night, self.sid = rng, night, sid
        self.used: dict[dt.date, set[int]] = {}
        self.counters: dict[tuple[int, int], int] = {}
        self.n_slots = int((DARK_DAY[1] - DARK_DAY[0]) * 86400 / SLOT_S)

    def visit(self, night: dt.date, slot: int, band: str) -> _Visit:
        z, u = self.rng.standard_normal(3).tolist(), float(self.rng.random())
        fwhm = max(0.5, SEEING * math.exp(0.2 * z[0]))
        mjd = _mjd_of(night) + 1.0 + DARK_DAY[0] + (slot * SLOT_S + EXPOSURE_S / 2 + TAI_UTC_S) / 86400.0
        seq = slot + 1
        m5 = M5[band] - 2.5 * math.log10(fwhm / SEEING) - 0.3 * u
        return _Visit(night, seq, int(f"{night:%Y%m%d}") * 100000 + seq, mjd, band, fwhm, m5,
                      DITHER_DEG * z[1], DITHER_DEG * z[2])

    def pair(self, night: dt.date, n_visits: int = 2) -> list[_Visit]:
        """A pair of visits 33 min apart in two bands (or one visit), on free slots of that night."""
        taken = self.used.setdefault(night, set())
        bands = PAIRS[int(self.rng.integers(len(PAIRS)))]
        while True:
            s = int(self.rng.integers(0, self.n_slots - PAIR_SLOTS - 2))
            slots = [s, s + PAIR_SLOTS + int(self.rng.integers(-2, 3))][:n_visits]
            if not taken.intersection(slots):
                taken.update(slots)
                return [self.visit(night, sl, b) for sl, b in zip(slots, bands)]

    def field_at(self, ra: float, dec: float, one_visit: bool = False) -> _Field:
        past: list[_Visit] = []
        for back in np.flatnonzero(self.rng.random(HISTORY_DAYS) < 0.12)[::-1].tolist():
            past += self.pair(self.night - dt.timedelta(days=back + 1))
        if one_visit:
            tonight = self.pair(self.night, 1)
        else:
            tonight = self.pair(self.night) + (self.pair(self.night) if self.rng.random() < 0.35 else [])
        tonight.sort(key=lambda v: v.mjd)
        return _Field(ra, dec, past + tonight, len(past))

    def random_field(self, one_visit: bool = False) -> _Field:
        u = self.rng.random(2).tolist()
        lo, hi = math.sin(math.radians(-80.0)), math.sin(math.radians(28.0))
        return self.field_at(360.0 * u[0], math.degrees(math.asin(lo + (hi - lo) * u[1])), one_visit)

    def source_id(self, v: _Visit, detector: int, forced: bool = False) -> int:
        key = (v.visit, detector + (1000 if forced else 0))
        n = self.counters.get(key, 0)
        self.counters[key] = n + 1
        return (_ccd_visit(v.night, v.seq, detector) << _COUNTER_BITS) + (_FORCED_COUNTER0 if forced else 0) + n


# ---------------------------------------------------------------- objects and their light curves


@dataclass
class ObjectTruth:
    """What was generated for one diaObject: kind ("sn", "var", "bogus"), true position (deg), alerts written,
    and in its last alert the number of diaSources (``nDiaSources``) and of prvDiaForcedSources."""

    kind: str
    ra: float
    dec: float
    n_alerts: int = 0
    n_dia_sources: int = 0
    n_forced: int = 0


@dataclass
class LsstTruth:
    """What a writer wrote: the schema, every file with the diaSourceIds in it (in order), the objects by
    diaObjectId, the diaSourceIds of solar-system-only alerts, the diaObjectIds placed at ``also_at`` (in order)."""

    version: str
    schema_id: int
    files: list[tuple[Path, list[int]]] = field(default_factory=list)
    objects: dict[int, ObjectTruth] = field(default_factory=dict)
    ss_alerts: list[int] = field(default_factory=list)
    also_at: list[int] = field(default_factory=list)

    @property
    def n_alerts(self) -> int:
        return sum(len(ids) for _, ids in self.files)


@dataclass(slots=True)
class _Object:
    kind: str
    fld: _Field
    ra: float
    dec: float
    xi: float
    eta: float
    params: dict[str, float]
    template: dict[str, float]  # template flux (nJy) at the position, per band
    sources: list[dict] = field(default_factory=list)
    object_id: int | None = None


def _diff_flux(obj: _Object, mjd: float, band: str) -> float:
    """The true difference-image flux (nJy) of the object at ``mjd`` in ``band``."""
    p = obj.params
    if obj.kind == "sn":
        peak = 10 ** (-0.4 * (p["mag"] + p["c_" + band] - NJY_AB))
        dt_ = mjd - p["t_peak"]
        if dt_ < -3 * p["rise"]:
            return 0.0
        decline = p["decline"] * (0.7 if band in "ug" else 1.0)
        return peak * (math.exp(-dt_ * dt_ / (2 * p["rise"] ** 2)) if dt_ < 0 else math.exp(-dt_ / decline))
    if obj.kind == "var":
        return obj.template[band] * (10 ** (-0.4 * p["amp"] * math.sin(2 * math.pi * mjd / p["period"] + p["phase"]))
                                     - 1.0)
    return 0.0


def _make_object(nt: _Night, kind: str, fld: _Field, at: tuple[float, float] | None = None) -> _Object:
    rng = nt.rng
    if at is None:
        r, th = FIELD_RADIUS_DEG * math.sqrt(float(rng.random())), 2 * math.pi * float(rng.random())
        xi, eta = r * math.cos(th), r * math.sin(th)
        ra, dec = _gnomonic(fld.ra, fld.dec, xi, eta)
    else:
        ra, dec = at
        xi, eta = _tangent(fld.ra, fld.dec, ra, dec)
    u = rng.random(8).tolist()
    tonight = fld.visits[fld.first_tonight].mjd
    colour = {b: c for b, c in zip(BANDS, (0.9, 0.25, 0.0, 0.1, 0.25, 0.45))}
    if kind == "sn":
        params = {"mag": 19.0 + 4.0 * u[0], "t_peak": tonight - 30.0 + 40.0 * u[1], "rise": 3.0 + 6.0 * u[2],
                  "decline": 15.0 + 30.0 * u[3], **{"c_" + b: (0.6 * u[4]) * c for b, c in colour.items()}}
        host = 10 ** (-0.4 * (20.5 + 3.5 * u[5] - NJY_AB)) * (0.2 + 0.3 * u[6]) if u[7] < 0.8 else 0.0
        template = {b: host * 10 ** (-0.4 * colour[b] * 0.8) for b in BANDS}
        off = rng.uniform(-3.0, 3.0, 2).round(1).tolist()  # host centre off the transient, pixels
        params.update(host_dx=off[0], host_dy=off[1])
    elif kind == "var":
        params = {"amp": 0.1 + 0.5 * u[0], "period": 0.3 + 30.0 * u[1] ** 2, "phase": 2 * math.pi * u[2]}
        star = 10 ** (-0.4 * (17.0 + 4.5 * u[3] - NJY_AB))
        template = {b: star * 10 ** (-0.4 * (colour[b] - 0.3) * (0.5 + u[4])) for b in BANDS}
    elif kind == "ss":
        params, template = {}, dict.fromkeys(BANDS, 0.0)
    else:
        params = {}
        template = {b: 10 ** (-0.4 * (21.0 + 4.0 * u[5] - NJY_AB)) if u[6] < 0.5 else 0.0 for b in BANDS}
    return _Object(kind, fld, round(ra, 9), round(dec, 9), xi, eta, params, template)


# ---------------------------------------------------------------- measurements


def _measure(nt: _Night, obj: _Object, v: _Visit, det: tuple[int, float, float], forced_snr: bool,
             ra: float | None = None, dec: float | None = None) -> dict[str, Any]:
    """One diaSource of ``obj`` on visit ``v`` (11.1 names, before float32 rounding). ``forced_snr``: a detection the
    plan needs (an alert): its difference flux is held at >= 5.2 sigma."""
    rng = nt.rng
    z = rng.standard_normal(8).tolist()
    u = rng.random(8).tolist()
    band, t = v.band, obj.template[v.band]
    true = _diff_flux(obj, v.mjd, band)
    err = v.err0 * math.sqrt(1.0 + max(t + true, 0.0) / (100.0 * v.err0))
    flux = true + err * z[0]
    if obj.kind == "bogus":  # an artefact just above threshold, either sign
        flux = (5.2 + 3.0 * u[0]) * err * (-1.0 if u[1] < 0.4 else 1.0)
    elif obj.kind == "ss":
        flux = 10 ** (-0.4 * (obj.params["mag"] - NJY_AB)) + err * z[0]
    if forced_snr and abs(flux) < 5.2 * err:
        flux = math.copysign((5.2 + abs(z[1])) * err, flux if flux else 1.0)
    snr = abs(flux) / err
    sci_err = math.sqrt(err * err + 0.25 * v.err0 * v.err0)
    pos = max(0.005, 0.6 * v.fwhm / snr)  # centroid error, arcsec
    ra0, dec0 = (obj.ra, obj.dec) if ra is None else (ra, dec)
    cosd = max(0.05, math.cos(math.radians(dec0)))
    sigma = v.fwhm / 2.355 / PIXEL_ARCSEC  # PSF sigma, pixels
    bogus = obj.kind == "bogus"
    bbox = int(15 + 4 * sigma + (10 * u[2] if bogus else 0))
    source_id = nt.source_id(v, det[0])
    d = {
        "diaSourceId": source_id, "visit": v.visit, "detector": det[0],
        "diaObjectId": obj.object_id if obj.kind != "ss" else None,
        "ssObjectId": obj.params.get("ss_object_id"), "parentDiaSourceId": None,
        "midpointMjdTai": v.mjd, "exposureTime": EXPOSURE_S,
        "ra": round((ra0 + pos / 3600.0 * z[2] / cosd) % 360.0, 9), "raErr": pos / 3600.0 / cosd,
        "dec": round(dec0 + pos / 3600.0 * z[3], 9), "decErr": pos / 3600.0, "ra_dec_Cov": 0.0,
        "x": min(max(det[1] + pos / PIXEL_ARCSEC * z[2], 0.0), SENSOR_PX[0] - 0.01), "xErr": pos / PIXEL_ARCSEC,
        "y": min(max(det[2] + pos / PIXEL_ARCSEC * z[3], 0.0), SENSOR_PX[1] - 0.01), "yErr": pos / PIXEL_ARCSEC,
        "centroid_flag": False,
        "apFlux": flux * (1.02 + 0.03 * z[4]), "apFluxErr": 1.15 * err, "apFlux_flag": False,
        "apFlux_flag_apertureTruncated": False, "isNegative": flux < 0, "snr": snr,
        "psfFlux": flux, "psfFluxErr": err, "psfLnL": -0.5 * bbox * bbox * (1.0 + 0.1 * u[3]),
        "psfChi2": bbox * bbox * (1.0 + (0.8 if bogus else 0.1) * u[3]), "psfNdata": bbox * bbox,
        "psfFlux_flag": False, "psfFlux_flag_edge": False, "psfFlux_flag_noGoodPixels": False,
        "trailNdata": 0, "dipoleNdata": 0,
        "scienceFlux": t + flux + 0.5 * v.err0 * z[5], "scienceFluxErr": sci_err,
        "forced_PsfFlux_flag": False, "forced_PsfFlux_flag_edge": False, "forced_PsfFlux_flag_noGoodPixels": False,
        "templateFlux": t + 0.5 * v.err0 * z[6], "templateFluxErr": 0.5 * v.err0,
        "ixx": sigma * sigma * (1.0 + (1.5 * u[4] if bogus else 0.05 * z[7])), "iyy": sigma * sigma,
        "ixy": 0.02 * sigma * sigma * z[7], "ixxPSF": sigma * sigma, "iyyPSF": sigma * sigma, "ixyPSF": 0.0,
        "shape_flag": False, "shape_flag_no_pixels": False, "shape_flag_not_contained": False,
        "shape_flag_parent_source": False,
        "extendedness": (0.5 + 0.5 * u[5]) if bogus else 0.1 * u[5],
        "reliability": 0.35 * u[6] if bogus else 0.97 - 0.35 * u[6] ** 3, "reliabilityVersion": "synthetic-1",
        "band": band, "isDipole": bogus and u[7] < 0.3, "dipoleFitAttempted": True,
        "timeProcessedMjdTai": v.mjd + (EXPOSURE_S / 2 + 55.0 + 30.0 * u[7]) / 86400.0,
        "timeWithdrawnMjdTai": None, "bboxSize": bbox,
        "pixelFlags": bogus and u[7] < 0.2, "pixelFlags_cr": bogus and u[7] < 0.2, "glint_trail": False,
        **{f: False for f in _PIXEL_FLAGS},
    }
    return _conform(nt.sid, "diaSource", d)


_PIXEL_FLAGS = ("pixelFlags_bad", "pixelFlags_crCenter", "pixelFlags_edge", "pixelFlags_nodata",
                "pixelFlags_nodataCenter", "pixelFlags_interpolated", "pixelFlags_interpolatedCenter",
                "pixelFlags_offimage", "pixelFlags_saturated", "pixelFlags_saturatedCenter", "pixelFlags_suspect",
                "pixelFlags_suspectCenter", "pixelFlags_streak", "pixelFlags_streakCenter", "pixelFlags_injected",
                "pixelFlags_injectedCenter", "pixelFlags_injected_template", "pixelFlags_injected_templateCenter")


def _forced(nt: _Night, obj: _Object, v: _Visit, det: tuple[int, float, float],
            source: dict | None) -> dict[str, Any]:
    """Forced PSF photometry of ``obj`` on the difference image of ``v`` (and on the science image)."""
    z = nt.rng.standard_normal(3).tolist()
    t = obj.template[v.band]
    true = _diff_flux(obj, v.mjd, v.band)
    err = v.err0 * math.sqrt(1.0 + max(t + true, 0.0) / (100.0 * v.err0))
    flux = source["psfFlux"] + 0.1 * err * z[0] if source is not None else true + err * z[0]
    d = {"diaForcedSourceId": nt.source_id(v, det[0], forced=True), "diaObjectId": obj.object_id,
         "ra": obj.ra, "dec": obj.dec, "visit": v.visit, "detector": det[0], "psfFlux": flux, "psfFluxErr": err,
         "midpointMjdTai": v.mjd, "scienceFlux": t + flux + 0.5 * v.err0 * z[1],
         "scienceFluxErr": math.sqrt(err * err + 0.25 * v.err0 * v.err0), "band": v.band,
         "timeProcessedMjdTai": v.mjd + (EXPOSURE_S / 2 + 70.0 + 20.0 * abs(z[2])) / 86400.0,
         "timeWithdrawnMjdTai": None}
    return _conform(nt.sid, "diaForcedSource", d)


# ---------------------------------------------------------------- diaObject aggregates


def _wmean(values: list[float], errors: list[float]) -> tuple[float, float] | None:
    """Inverse-variance weighted mean and its error, ``sum(w f) / sum(w)`` and ``1 / sqrt(sum(w))``, w = 1/err²."""
    pairs = [(f, e) for f, e in zip(values, errors) if f is not None and e is not None and e > 0]
    if not pairs:
        return None
    w = [1.0 / (e * e) for _, e in pairs]
    sw = math.fsum(w)
    return math.fsum(wi * f for wi, (f, _) in zip(w, pairs)) / sw, 1.0 / math.sqrt(sw)


def dia_object_aggregates(sources: list[dict], forced: list[dict]) -> dict[str, Any]:
    """The diaObject fields computed from the object's diaSources (the alert's and every earlier one, as decoded)
    and its forced sources before the alert (the alert's ``prvDiaForcedSources``), per band b:

    * ``b_psfFluxMean``, ``b_psfFluxMeanErr``: inverse-variance weighted mean of ``psfFlux`` (w = 1/psfFluxErr²)
      and ``1/sqrt(sum w)``; ``b_psfFluxSigma``: sample standard deviation (n-1) of ``psfFlux`` (null below 2);
      ``b_psfFluxNdata``: how many diaSources; ``b_psfFluxMin``/``Max``; ``b_psfFluxErrMean``: mean ``psfFluxErr``;
      ``b_psfFluxMaxSlope``: the largest ``(f[k+1]-f[k]) / (t[k+1]-t[k])`` over time-ordered diaSources (nJy/day,
      null below 2);
    * ``b_scienceFluxMean``/``Err``: the same weighted mean of the diaSources' ``scienceFlux``;
    * ``b_fpFluxMean``/``Err``: the same weighted mean of the forced sources' ``psfFlux``;

    and ``ra``/``dec`` the mean of the diaSources' (ra about the first one's, so it never wraps wrong),
    ``firstDiaSourceMjdTai``/``lastDiaSourceMjdTai`` and ``nDiaSources``. A band without data has its means null and
    its ``Ndata`` 0. Floats in float64 here; the record rounds them to float32. raErr/decErr/ra_dec_Cov are null.
    """
    out: dict[str, Any] = {}
    ra0 = sources[0]["ra"]
    out["ra"] = (ra0 + math.fsum(((s["ra"] - ra0 + 180.0) % 360.0) - 180.0 for s in sources) / len(sources)) % 360.0
    out["dec"] = math.fsum(s["dec"] for s in sources) / len(sources)
    times = [s["midpointMjdTai"] for s in sources]
    out.update(firstDiaSourceMjdTai=min(times), lastDiaSourceMjdTai=max(times), nDiaSources=len(sources))
    for b in BANDS:
        ss = sorted((s for s in sources if s["band"] == b), key=lambda s: s["midpointMjdTai"])
        fs = [s for s in forced if s["band"] == b]
        flux = [s["psfFlux"] for s in ss]
        errs = [s["psfFluxErr"] for s in ss]
        out[b + "_psfFluxNdata"] = len(ss)
        for prefix, got in (("psfFlux", _wmean(flux, errs)),
                            ("scienceFlux", _wmean([s["scienceFlux"] for s in ss], [s["scienceFluxErr"] for s in ss])),
                            ("fpFlux", _wmean([s["psfFlux"] for s in fs], [s["psfFluxErr"] for s in fs]))):
            if got is not None:
                out[f"{b}_{prefix}Mean"], out[f"{b}_{prefix}MeanErr"] = got
        if ss:
            out[b + "_psfFluxMin"], out[b + "_psfFluxMax"] = min(flux), max(flux)
            out[b + "_psfFluxErrMean"] = math.fsum(errs) / len(errs)
        if len(ss) >= 2:
            mean = math.fsum(flux) / len(flux)
            out[b + "_psfFluxSigma"] = math.sqrt(math.fsum((f - mean) ** 2 for f in flux) / (len(flux) - 1))
            out[b + "_psfFluxMaxSlope"] = max((flux[k + 1] - flux[k]) / (ss[k + 1]["midpointMjdTai"]
                                                                         - ss[k]["midpointMjdTai"])
                                              for k in range(len(ss) - 1))
    return out


# ---------------------------------------------------------------- solar system


def _ecliptic_galactic(ra: float, dec: float) -> tuple[float, float, float, float]:
    a, d = math.radians(ra), math.radians(dec)
    v = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    g = _GAL @ v
    ce, se = math.cos(_OBLIQUITY), math.sin(_OBLIQUITY)
    ex, ey, ez = v[0], ce * v[1] + se * v[2], -se * v[1] + ce * v[2]
    lam, beta = math.degrees(math.atan2(ey, ex)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, ez))))
    glon, glat = math.degrees(math.atan2(g[1], g[0])) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, g[2]))))
    return lam, beta, glon, glat


def _ss_params(nt: _Night, number: int) -> dict[str, Any]:
    u = nt.rng.random(8).tolist()
    half = "ABCDEFGHJKLMNOPQRSTUVWXY"[(nt.night.month - 1) * 2 + (nt.night.day > 15)]
    unpacked, packed = _packed_designation(nt.night.year, half, "ABCDEFGHJKLMNOPQRSTUVWXYZ"[number % 25],
                                           (number // 25) % 100)
    a = 2.1 + 1.3 * u[0]
    return {"ss_object_id": _ss_object_id(packed), "designation": unpacked, "packed": packed, "mag": 19.5 + 3.0 * u[1],
            "rate_ra": -0.15 - 0.2 * u[2], "rate_dec": 0.1 * (u[3] - 0.5), "a": a, "e": 0.25 * u[4],
            "i": 20.0 * u[5] ** 2, "node": 360.0 * u[6], "argperi": 360.0 * u[7], "h": 14.0 + 4.0 * u[1],
            "number": number}


def _ss_records(nt: _Night, obj: _Object, src: dict, v: _Visit) -> tuple[dict, dict | None]:
    p = obj.params
    lam, beta, glon, glat = _ecliptic_galactic(src["ra"], src["dec"])
    u = nt.rng.random(3).tolist()
    r = p["a"] * (1 - p["e"] * math.cos(2 * math.pi * u[0]))
    delta = max(0.05, r - 0.95)  # near opposition
    cosd, a, d = math.cos(math.radians(src["dec"])), math.radians(src["ra"]), math.radians(src["dec"])
    eph_ra = src["ra"] - (0.2 + 0.3 * u[1]) / 3600.0 / max(0.05, cosd)
    eph_dec = src["dec"] + 0.1 * (u[2] - 0.5) / 3600.0
    ss = {"diaSourceId": src["diaSourceId"], "ssObjectId": p["ss_object_id"], "designation": p["designation"],
          "eclLambda": lam, "eclBeta": beta, "galLon": glon, "galLat": glat, "elongation": 150.0 + 25.0 * u[0],
          "phaseAngle": 2.0 + 10.0 * u[1], "topoRange": delta, "helioRange": r, "ephRa": eph_ra, "ephDec": eph_dec,
          "ephVmag": p["mag"] + 0.1, "ephRate": math.hypot(p["rate_ra"], p["rate_dec"]),
          "ephRateRa": p["rate_ra"], "ephRateDec": p["rate_dec"],
          "ephOffsetRa": (src["ra"] - eph_ra) * cosd * 3600.0, "ephOffsetDec": (src["dec"] - eph_dec) * 3600.0,
          "topo_x": delta * math.cos(d) * math.cos(a), "topo_y": delta * math.cos(d) * math.sin(a),
          "topo_z": delta * math.sin(d), "diaDistanceRank": 1}
    ss["ephOffset"] = math.hypot(ss["ephOffsetRa"], ss["ephOffsetDec"])
    created = dt.datetime(nt.night.year, nt.night.month, 1, tzinfo=dt.timezone.utc)
    orbit = {"id": 1_000_000 + p["number"], "designation": p["designation"],
             "packed_primary_provisional_designation": p["packed"],
             "unpacked_primary_provisional_designation": p["designation"], "created_at": created,
             "updated_at": created + dt.timedelta(days=3), "a": p["a"], "e": p["e"], "q": p["a"] * (1 - p["e"]),
             "i": p["i"], "node": p["node"], "argperi": p["argperi"], "epoch_mjd": _mjd_of(created.date()),
             "h": p["h"], "g": 0.15, "ssObjectId": p["ss_object_id"]}
    return ss, orbit


# ---------------------------------------------------------------- cutouts


@functools.cache
def _psf(sigma: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Unit-flux Gaussian PSF (sigma in pixels) centred dx, dy pixels off the stamp centre."""
    x = np.arange(STAMP, dtype=np.float64) - STAMP // 2
    gx, gy = np.exp(-((x - dx) ** 2) / (2 * sigma**2)), np.exp(-((x - dy) ** 2) / (2 * sigma**2))
    return np.outer(gy, gx) / (2 * math.pi * sigma**2)


@functools.cache
def _fixed_cards() -> tuple[str, str]:
    """Header card images (made by astropy) before and after CRVAL1/CRVAL2."""
    scale = PIXEL_ARCSEC / 3600.0
    before = [("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", -32, "IEEE single precision"),
              ("NAXIS", 2, ""), ("NAXIS1", STAMP, ""), ("NAXIS2", STAMP, ""), ("BUNIT", "nJy", "pixel unit"),
              ("RADESYS", "ICRS", ""), ("CTYPE1", "RA---TAN", ""), ("CTYPE2", "DEC--TAN", ""),
              ("CUNIT1", "deg", ""), ("CUNIT2", "deg", ""), ("CRPIX1", STAMP // 2 + 1.0, "the source"),
              ("CRPIX2", STAMP // 2 + 1.0, "the source")]
    after = [("CD1_1", -scale, "0.2 arcsec/pixel"), ("CD1_2", 0.0, ""), ("CD2_1", 0.0, ""),
             ("CD2_2", scale, "0.2 arcsec/pixel"), ("ORIGIN", "ateda synthetic Rubin", "not real data")]
    return (
        "".join(fits.Card(*c).image for c in before),
        "".join(fits.Card(*c).image for c in after) + "END".ljust(80),
    )


def _fits_header(ra: float, dec: float) -> bytes:
    """The header block of a stamp with a TAN WCS centred on ra/dec (deg): astropy's cards (the fixed ones
    cached), padded to 2880 bytes as FITS requires."""
    before, after = _fixed_cards()
    header = before + fits.Card("CRVAL1", ra, "deg").image + fits.Card("CRVAL2", dec, "deg").image + after
    return (header + " " * (-len(header) % 2880)).encode("ascii")


def _fits(image: np.ndarray, header: bytes) -> bytes:
    """One-HDU FITS file (raw, not gzipped): ``header`` then the image as big-endian float32, padded."""
    data = image.astype(">f4").tobytes()
    return header + data + b"\0" * (-len(data) % 2880)


def _cutouts(rng: np.random.Generator, obj: _Object, src: dict, fwhm: float) -> dict[str, bytes]:
    """Science, template and difference stamps of a diaSource: the transient (psfFlux, nJy) at the centre of science
    and difference, the template's static source (templateFlux: a host galaxy off centre, a star at the centre) in
    science and template; difference = science - template, pixel noise matching psfFluxErr."""
    sigma = round(fwhm / 2.355 / PIXEL_ARCSEC, 1)
    noise = (src["psfFluxErr"] or 1.0) / (math.sqrt(4 * math.pi) * sigma)
    static = obj.template.get(src["band"] or "r", 0.0)
    if obj.kind == "sn" and static > 0:
        host = _psf(round(2.0 * sigma, 1), obj.params["host_dx"], obj.params["host_dy"])
    else:
        host = _psf(sigma)
    z = rng.standard_normal((2, STAMP, STAMP))
    template = static * host + 0.5 * noise * z[0]
    science = static * host + (src["psfFlux"] or 0.0) * _psf(sigma) + noise * z[1]
    difference = science - template
    header = _fits_header(src["ra"], src["dec"])
    return {"cutoutDifference": _fits(difference, header), "cutoutScience": _fits(science, header),
            "cutoutTemplate": _fits(template, header)}


# ---------------------------------------------------------------- planning and the alerts


@dataclass(slots=True)
class _Pending:
    """An alert waiting for its time slot: everything but its cutouts."""

    mjd: float
    detector: int
    record: dict
    obj: _Object
    fwhm: float


def _history(nt: _Night, obj: _Object, alert_visits: list[int], truth: LsstTruth | None) -> list[_Pending]:
    """Observe the object on every visit of its field up to its last alert: diaSources (earlier nights: when
    >= 5 sigma; tonight: on the planned alert visits), forced sources once it exists; one alert per planned visit."""
    fld, out = obj.fld, []
    forced: list[tuple[_Visit, dict]] = []
    precovery: list[tuple[float, _Visit, tuple[int, float, float]]] = []
    first_night: dt.date | None = None
    wanted = set(alert_visits)
    for j in range(0, max(alert_visits) + 1):
        v = fld.visits[j]
        det = _on_detector(obj.xi, obj.eta, v)
        if det is None:
            continue
        source = None
        if j in wanted or (j < fld.first_tonight and obj.kind in ("sn", "var")):
            if obj.kind == "sn" and j not in wanted and _diff_flux(obj, v.mjd, v.band) == 0.0:
                pass  # before the explosion: nothing to detect
            else:
                s = _measure(nt, obj, v, det, forced_snr=j in wanted)
                if j in wanted or s["snr"] >= 5.0:
                    source = s
        if source is not None and obj.object_id is None:
            obj.object_id = source["diaSourceId"]  # a new diaObject takes its first diaSource's id
            source["diaObjectId"] = obj.object_id
            first_night = v.night
            for _, pv, pdet in precovery:
                if pv.mjd >= v.mjd - PRECOVERY_DAYS:
                    forced.append((pv, _forced(nt, obj, pv, pdet, None)))
        if j in wanted:
            out.append(_alert(nt, obj, v, det, source, forced, first_night, truth))  # type: ignore[arg-type]
        if source is not None:
            obj.sources.append(source)
        if obj.object_id is None:
            precovery.append((v.mjd, v, det))
        else:
            forced.append((v, _forced(nt, obj, v, det, source)))
    return out


def _alert(nt: _Night, obj: _Object, v: _Visit, det: tuple[int, float, float], source: dict,
           forced: list[tuple[_Visit, dict]], first_night: dt.date | None, truth: LsstTruth | None) -> _Pending:
    lo = v.mjd - WINDOW_DAYS
    prv = [s for s in obj.sources if s["midpointMjdTai"] > lo]
    # forced photometry before the first diaSource (precovery) is run the day after: not in that night's alerts
    prv_forced = [f for fv, f in forced if fv.mjd > lo and (first_night != v.night or fv.mjd >= _first_mjd(obj))]
    record = {"diaSourceId": source["diaSourceId"], "observation_reason": None, "target_name": None,
              "diaSource": source, "prvDiaSources": prv, "prvDiaForcedSources": prv_forced,
              "diaObject": None, "ssSource": None, "mpc_orbits": None}
    agg = dia_object_aggregates(prv + [source], prv_forced)
    record["diaObject"] = _conform(nt.sid, "diaObject", {
        "diaObjectId": obj.object_id, "validityStartMjdTai": _processed_mjd(source), **agg})
    if truth is not None:
        t = truth.objects.setdefault(obj.object_id, ObjectTruth(obj.kind, obj.ra, obj.dec))  # type: ignore[arg-type]
        t.n_alerts += 1
        t.n_dia_sources, t.n_forced = agg["nDiaSources"], len(prv_forced)
    return _Pending(v.mjd, det[0], record, obj, v.fwhm)


def _processed_mjd(source: dict) -> float:
    """A diaSource's processing time as MJD (8.0 holds it as a timestamp, ``time_processed``)."""
    if source.get("timeProcessedMjdTai") is not None:
        return source["timeProcessedMjdTai"]
    since = source["time_processed"] - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return MJD_UNIX_EPOCH + since / dt.timedelta(days=1)


def _first_mjd(obj: _Object) -> float:
    return obj.sources[0]["midpointMjdTai"] if obj.sources else math.inf


def _ss_alerts(nt: _Night, obj: _Object, visits: list[int], truth: LsstTruth | None) -> list[_Pending]:
    out = []
    p, t0 = obj.params, obj.fld.visits[obj.fld.first_tonight].mjd
    for j in visits:
        v = obj.fld.visits[j]
        cosd = max(0.05, math.cos(math.radians(obj.dec)))
        ra = (obj.ra + p["rate_ra"] * (v.mjd - t0) / cosd) % 360.0
        dec = obj.dec + p["rate_dec"] * (v.mjd - t0)
        xi, eta = _tangent(obj.fld.ra, obj.fld.dec, ra, dec)
        det = _on_detector(xi, eta, v)
        if det is None:
            continue
        src = _measure(nt, obj, v, det, forced_snr=True, ra=ra, dec=dec)
        ss, orbit = _ss_records(nt, obj, src, v)
        orbit_field = "mpc_orbits" if any(f[0] == "mpc_orbits" for f in _layout(nt.sid, "alert")) else "MPCORB"
        record = {"diaSourceId": src["diaSourceId"], "observation_reason": None, "target_name": None,
                  "diaSource": src, "prvDiaSources": None, "prvDiaForcedSources": None, "diaObject": None,
                  "ssSource": _conform(nt.sid, "ssSource", ss),
                  orbit_field: _conform(nt.sid, "mpc_orbits" if orbit_field == "mpc_orbits" else "MPCORB", orbit)}
        if truth is not None:
            truth.ss_alerts.append(src["diaSourceId"])
        out.append(_Pending(v.mjd, det[0], record, obj, v.fwhm))
    return out


def _tonight_on(obj: _Object) -> list[int]:
    fld = obj.fld
    return [j for j in range(fld.first_tonight, len(fld.visits)) if _on_detector(obj.xi, obj.eta, fld.visits[j])]


def _plan(nt: _Night, n: int, also_at: Sequence[tuple[float, float]], one_visit: bool,
          truth: LsstTruth | None) -> list[_Pending]:
    """Fields, objects and every alert of the night (without cutouts), ``n`` in all."""
    rng = nt.rng
    n_fields = 1 if one_visit else max(2, min(40, n // 400 + 2))
    fields = [nt.random_field(one_visit) for _ in range(n_fields)]
    n_ss, n_bogus = round(_SS_FRACTION * n), round(_BOGUS_FRACTION * n)
    budget = n - n_ss - n_bogus
    if budget < len(also_at):
        raise ValueError(f"{n} alerts leave room for {budget} real objects: fewer than the {len(also_at)} "
                         f"positions of also_at")
    pending: list[_Pending] = []
    for i, (ra, dec) in enumerate(also_at):
        left = len(also_at) - 1 - i  # positions still to place after this one: each needs an alert
        on: list[int] = []
        while not on:  # a field centred 0.3 deg south of the position, until a visit tonight covers it
            fld = nt.field_at(float(ra) % 360.0, max(-89.0, min(89.0, float(dec) - 0.3)), one_visit)
            obj = _make_object(nt, "sn", fld, (float(ra) % 360.0, float(dec)))
            on = _tonight_on(obj)
        got = _history(nt, obj, on[:min(2, budget - left)], truth)
        pending += got
        budget -= len(got)
        if truth is not None:
            truth.also_at.append(obj.object_id)  # type: ignore[arg-type]
    ss_number = 0
    for kind, count in (("real", budget), ("bogus", n_bogus), ("ss", n_ss)):
        while count > 0:
            fld = fields[int(rng.integers(len(fields)))]
            k_kind = kind if kind != "real" else ("sn" if rng.random() < 0.6 else "var")
            obj = _make_object(nt, k_kind, fld)
            on = _tonight_on(obj)
            if not on:
                continue
            if kind == "real":
                k = min(count, len(on), 1 + int(rng.binomial(len(on) - 1, 0.7)) if len(on) > 1 else 1)
                visits = sorted(rng.choice(on, size=k, replace=False).tolist())
                got = _history(nt, obj, visits, truth)
            elif kind == "bogus":
                got = _history(nt, obj, [on[int(rng.integers(len(on)))]], truth)
            else:
                obj.params.update(_ss_params(nt, ss_number))
                ss_number += 1
                got = _ss_alerts(nt, obj, on[:min(count, 2)], truth)
            pending += got
            count -= len(got)
    return pending


def generate_alerts(n: int, seed: int = 0, *, night: dt.date = DEFAULT_NIGHT, version: str | int = DEFAULT_VERSION,
                    also_at: Sequence[tuple[float, float]] = (), one_visit: bool = False,
                    truth: LsstTruth | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` Rubin alerts of one synthetic night (``night`` is the dayObs) in the schema ``version`` (>= 8.0;
    default 11.1), in time order (midpointMjdTai, then detector, then diaSourceId). Deterministic for a seed.

    ``also_at``: (ra, dec) in degrees; one transient diaObject is put at each (exactly there; its diaSources scatter
    by their centroid error, ~0.01-0.1"), alerting on tonight's visits (counted in ``n``). ``one_visit``: the whole
    night is one visit of one field (a burst across the 189 detectors), each object alerting once. ``truth``, if
    given, is filled with the objects, solar-system alerts and ``also_at`` ids (not the files)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    sid = _version_id(version)
    nt = _Night(np.random.default_rng(seed), night, sid)
    pending = _plan(nt, n, list(also_at), one_visit, truth)
    pending.sort(key=lambda p: (p.mjd, p.detector, p.record["diaSourceId"]))
    for p in pending:
        p.record.update(_cutouts(nt.rng, p.obj, p.record["diaSource"], p.fwhm))
        yield _conform(sid, "alert", p.record)
        p.record = {}  # let the stamps go


# ---------------------------------------------------------------- writers


def frame(alert: dict[str, Any], version: str | int = DEFAULT_VERSION) -> bytes:
    """One alert as Rubin's Kafka message: byte 0 = 0, the schema id (4 bytes, big-endian), schemaless Avro."""
    sid = _version_id(version)
    buf = io.BytesIO()
    buf.write(b"\0" + sid.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, schemas.schema(sid).parsed, alert)  # type: ignore[union-attr]
    return buf.getvalue()


def _sync_marker(key: str) -> bytes:
    """A 16-byte Avro sync marker derived from ``key``, so written files are byte-for-byte reproducible."""
    return hashlib.md5(f"ateda.synth_lsst:{key}".encode()).digest()


def write_containers(out_dir: str | Path, n_alerts: int, seed: int = 0, per_file: int = 1000,
                     **kw: Any) -> LsstTruth:
    """Write the night as Avro containers (deflate) of ``per_file`` alerts each, ``lsst-<dayObs>-<part>.avro``
    (the writer schema in each header); return what was written (files with their diaSourceIds) and the truth."""
    if per_file < 1:
        raise ValueError("per_file must be >= 1")
    sid = _version_id(kw.pop("version", DEFAULT_VERSION))
    night = kw.get("night", DEFAULT_NIGHT)
    truth = LsstTruth(schemas.version_of_id(sid), sid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunk: list[dict] = []

    def flush() -> None:
        path = out / f"lsst-{night:%Y%m%d}-{len(truth.files):04d}.avro"
        with path.open("wb") as fh:
            fastavro.writer(fh, schemas.schema(sid).parsed, chunk, codec="deflate",  # type: ignore[union-attr]
                            sync_marker=_sync_marker(f"{seed}:{n_alerts}:{path.name}"))
        truth.files.append((path, [a["diaSourceId"] for a in chunk]))
        chunk.clear()

    for alert in generate_alerts(n_alerts, seed, version=sid, truth=truth, **kw):
        chunk.append(alert)
        if len(chunk) == per_file:
            flush()
    if chunk:
        flush()
    return truth


def write_frames(out_dir: str | Path, n_alerts: int, seed: int = 0, **kw: Any) -> LsstTruth:
    """Write one Confluent-framed alert per file, ``<diaSourceId>.bin`` (Rubin's Kafka form); return the truth."""
    sid = _version_id(kw.pop("version", DEFAULT_VERSION))
    truth = LsstTruth(schemas.version_of_id(sid), sid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for alert in generate_alerts(n_alerts, seed, version=sid, truth=truth, **kw):
        path = out / f"{alert['diaSourceId']}.bin"
        path.write_bytes(frame(alert, sid))
        truth.files.append((path, [alert["diaSourceId"]]))
    return truth


def write_visit_burst(out_dir: str | Path, n: int = 10_000, seed: int = 0, **kw: Any) -> LsstTruth:
    """One visit's worth of alerts (``n``, across the 189 detectors of one field's single visit tonight) as
    Confluent frames, one per file: what Rubin's stream delivers within a minute of one shutter close."""
    return write_frames(out_dir, n, seed, one_visit=True, **kw)
