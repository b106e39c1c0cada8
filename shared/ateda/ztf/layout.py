"""The project's own description of the ZTF alert packet layout, schema version 4.02.

Each record is a compact table, one ``name type`` per line. A trailing ``?`` marks a nullable field
(written as ``["null", T]`` with default ``null``); ``[]`` marks an array of the named record.
Tables are parsed on first use and cached; nothing is built at import time.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, NamedTuple
import fastavro


SCHEMA_VERSION = "4.02"
NAMESPACE = "ztf"
SUB_NAMESPACE = "ztf.alert"
PRIMITIVES = frozenset({"int", "long", "float", "double", "string", "boolean", "bytes"})

# Record order matters: a named type is defined where it is first used and referenced by full name after that.
RECORD_NAMES = ("alert", "candidate", "prv_candidate", "fp_hist", "cutout")

_ALERT = """
schemavsn string
publisher string
objectId string
candid long
candidate candidate
prv_candidates prv_candidate[]?
fp_hists fp_hist[]?
cutoutScience cutout?
cutoutTemplate cutout?
cutoutDifference cutout?
"""

# Fields shared verbatim (name and type) by candidate and prv_candidate, in the order they first appear.
_CAND_HEAD = """
jd double
fid int
pid long
diffmaglim float?
pdiffimfilename string?
programpi string?
programid int
"""

_CAND_MEASURE = """
tblid long?
nid int?
rcid int?
field int?
xpos float?
ypos float?
"""

_CAND_SHAPE = """
chipsf float?
magap float?
sigmagap float?
distnr float?
magnr float?
sigmagnr float?
chinr float?
sharpnr float?
sky float?
magdiff float?
fwhm float?
classtar float?
mindtoedge float?
magfromlim float?
seeratio float?
aimage float?
bimage float?
aimagerat float?
bimagerat float?
elong float?
nneg int?
nbad int?
rb float?
ssdistnr float?
ssmagnr float?
ssnamenr string?
sumrat float?
magapbig float?
sigmagapbig float?
"""

_CANDIDATE = (
    _CAND_HEAD
    + "candid long\nisdiffpos string\n"
    + _CAND_MEASURE
    + "ra double\ndec double\nmagpsf float\nsigmapsf float\n"
    + _CAND_SHAPE
    + """
ranr double
decnr double
sgmag1 float?
srmag1 float?
simag1 float?
szmag1 float?
sgscore1 float?
distpsnr1 float?
ndethist int
ncovhist int
jdstarthist double?
jdendhist double?
scorr double?
tooflag int?
objectidps1 long?
objectidps2 long?
sgmag2 float?
srmag2 float?
simag2 float?
szmag2 float?
sgscore2 float?
distpsnr2 float?
objectidps3 long?
sgmag3 float?
srmag3 float?
simag3 float?
szmag3 float?
sgscore3 float?
distpsnr3 float?
nmtchps int
rfid long
jdstartref double
jdendref double
nframesref int
rbversion string
dsnrms float?
ssnrms float?
dsdiff float?
magzpsci float?
magzpsciunc float?
magzpscirms float?
nmatches int
clrcoeff float?
clrcounc float?
zpclrcov float?
zpmed float?
clrmed float?
clrrms float?
neargaia float?
neargaiabright float?
maggaia float?
maggaiabright float?
exptime float?
drb float?
drbversion string
"""
)

_PRV_CANDIDATE = (
    _CAND_HEAD
    + "candid long?\nisdiffpos string?\n"
    + _CAND_MEASURE
    + "ra double?\ndec double?\nmagpsf float?\nsigmapsf float?\n"
    + _CAND_SHAPE
    + """
ranr double?
decnr double?
scorr double?
magzpsci float?
magzpsciunc float?
magzpscirms float?
clrcoeff float?
clrcounc float?
rbversion string
"""
)

_FP_HIST = """
field int?
rcid int?
fid int
pid long
rfid long
sciinpseeing float?
scibckgnd float?
scisigpix float?
magzpsci float?
magzpsciunc float?
magzpscirms float?
clrcoeff float?
clrcounc float?
exptime float?
adpctdif1 float?
adpctdif2 float?
diffmaglim float?
programid int
jd double
forcediffimflux float?
forcediffimfluxunc float?
procstatus string?
distnr float?
ranr double
decnr double
magnr float?
sigmagnr float?
chinr float?
sharpnr float?
"""

_CUTOUT = """
fileName string
stampData bytes
"""

_TABLES = {
    "alert": _ALERT,
    "candidate": _CANDIDATE,
    "prv_candidate": _PRV_CANDIDATE,
    "fp_hist": _FP_HIST,
    "cutout": _CUTOUT,
}


class Field(NamedTuple):
    """One field of a record: name, Avro type token (primitive, record name or ``record[]``), nullability."""

    name: str
    type: str
    nullable: bool


def _parse(table: str) -> tuple[Field, ...]:
    """Parse a ``name type[?]`` table into fields."""
    out = []
    for line in table.splitlines():
        if not line.strip():
            continue
        name, token = line.split()
        nullable = token.endswith("?")
        out.append(Field(name, token.rstrip("?"), nullable))
    return tuple(out)


@functools.cache
def record_fields(record: str) -> tuple[Field, ...]:
    """Ordered ``(name, type, nullable)`` fields of one record (one of :data:`RECORD_NAMES`)."""
    return _parse(_TABLES[record])


def field_names(record: str) -> tuple[str, ...]:
    """Ordered field names of one record."""
    return tuple(f.name for f in record_fields(record))


def _full_name(record: str) -> str:
    return NAMESPACE + "." + record if record == "alert" else SUB_NAMESPACE + "." + record


def _avro_type(token: str, defined: set[str]) -> Any:
    """Avro type for a token; a record is defined inline the first time and referenced by full name after."""
    if token in PRIMITIVES:
        return token
    if token.endswith("[]"):
        return {"type": "array", "items": _avro_type(token[:-2], defined)}
    if token in defined:
        return _full_name(token)
    defined.add(token)
    return _record_schema(token, defined)


def _record_schema(record: str, defined: set[str]) -> dict[str, Any]:
    fields = []
    for f in record_fields(record):
        t = _avro_type(f.type, defined)
        if f.nullable:
            fields.append({"name": f.name, "type": ["null", t], "default": None})
        else:
            fields.append({"name": f.name, "type": t})
    namespace = NAMESPACE if record == "alert" else SUB_NAMESPACE
    return {"type": "record", "name": record, "namespace": namespace, "version": SCHEMA_VERSION, "fields": fields}


@functools.cache
def _alert_schema() -> dict[str, Any]:
    return _record_schema("alert", {"alert"})


def alert_schema() -> dict[str, Any]:
    """Complete ZTF 4.02 alert schema as an Avro schema dict (a fresh copy; usable with ``fastavro.parse_schema``)."""
    return copy.deepcopy(_alert_schema())


@functools.cache
def parsed_alert_schema() -> Any:
    """The alert schema parsed once by fastavro (shared; do not mutate)."""

    return fastavro.parse_schema(alert_schema())


@functools.cache
def _canonical() -> dict[str, dict[str, str]]:
    return {r: {f.name: f.type for f in record_fields(r)} for r in ("candidate", "prv_candidate", "fp_hist")}


def canonical_field_types() -> dict[str, dict[str, str]]:
    """Per record ("candidate", "prv_candidate", "fp_hist"): field name -> Avro primitive type, in schema order."""
    return {r: dict(types) for r, types in _canonical().items()}


# ---------------------------------------------------------------- physical ranges
# A value outside these is corruption (a bit flip, a zeroed block), not science: the alert is rejected as bad_value.

# 2016-01-01 00:00 UTC. ZTF's first light was in November 2017, but the project's own sample alerts (schemas 0.x-1.x,
# built from pre-survey test data) carry mid-2016 dates, and so do their prv_candidates.
FIRST_JD = 2457388.5
RA_DEG = (0.0, 360.0)  # [0, 360)
DEC_DEG = (-90.0, 90.0)  # [-90, 90]


def range_problem(values: dict, last_jd: float) -> str | None:
    """What is out of range in one candidate / prv_candidate / fp_hist record, or None. ``jd`` must lie in
    [FIRST_JD, last_jd] (the caller passes now + 1 day), ``ra`` in [0, 360), ``dec`` in [-90, 90]; null values (an
    upper limit has no position) are not checked, NaN is out of every range."""
    jd, ra, dec = values.get("jd"), values.get("ra"), values.get("dec")
    if isinstance(jd, (int, float)) and not FIRST_JD <= jd <= last_jd:
        return f"jd {jd!r} outside ZTF's lifetime [{FIRST_JD}, {last_jd:.1f}]"
    if isinstance(ra, (int, float)) and not RA_DEG[0] <= ra < RA_DEG[1]:
        return f"ra {ra!r} outside [0, 360) deg"
    if isinstance(dec, (int, float)) and not DEC_DEG[0] <= dec <= DEC_DEG[1]:
        return f"dec {dec!r} outside [-90, 90] deg"
    return None
