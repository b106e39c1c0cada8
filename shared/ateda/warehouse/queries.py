"""Queries over the local warehouse (DuckDB, ``$ATEDA_HOME/warehouse/ateda.duckdb``, read-only) for the science
commands: an object's summary, its latest cutouts, a cone search, the demo's richest object. Unqualified table names
resolve in gold, then silver, then bronze (``select * from object`` is ``gold.object``), and every connection has
the SQL function ``great_circle_arcsec(ra1, dec1, ra2, dec2)`` (degrees in, arcseconds out).

The warehouse read is the last *published* one (:mod:`ateda.warehouse.build`): a refresh running meanwhile never
makes a query fail or see half of its work.
"""

from __future__ import annotations

import math
import re

from pyiceberg.expressions import EqualTo

from ateda.config import Settings
from ateda.errors import AtedaError, BadInput
from ateda.lake.iceberg import ensure_tables, existing_lsst_table, load_catalog
from ateda.warehouse.build import connect, freshness

SEARCH_PATH = "gold,silver,bronze"
# Vincenty's formula (the great-circle distance that stays exact at 0 and at 180 degrees, as astropy's separation):
# atan2(|cross|, dot) of the two unit vectors, in arcseconds
GREAT_CIRCLE_MACRO = """
create or replace temp macro great_circle_arcsec(ra1, dec1, ra2, dec2) as 3600.0 * degrees(atan2(
    sqrt(pow(cos(radians(dec2)) * sin(radians(ra2 - ra1)), 2)
         + pow(cos(radians(dec1)) * sin(radians(dec2))
               - sin(radians(dec1)) * cos(radians(dec2)) * cos(radians(ra2 - ra1)), 2)),
    sin(radians(dec1)) * sin(radians(dec2)) + cos(radians(dec1)) * cos(radians(dec2)) * cos(radians(ra2 - ra1))))
"""
# a ZTF object id: "ZTF", two digits of the year, seven lower-case letters (its case carries no meaning)
_ZTF_ID = re.compile(r"ztf(\d{2})([a-z]{7})", re.IGNORECASE)


class ScienceError(AtedaError):
    """The object or the query cannot be answered from the warehouse."""


class UnknownObject(ScienceError):
    """No such object in gold (the message says whether bronze has it and whether a refresh would help)."""


def install_functions(con) -> None:  # noqa: ANN001
    """The SQL functions every science connection has (temporary: a read-only warehouse takes them)."""
    con.execute(GREAT_CIRCLE_MACRO)


def connect_science(settings: Settings):  # noqa: ANN201
    """A read-only connection to the published warehouse whose search path is gold, silver, bronze, with
    :func:`install_functions`."""
    con = connect(settings, read_only=True)
    con.execute(f"set search_path = '{SEARCH_PATH}'")
    install_functions(con)
    return con


def normalise_object_id(object_id: str) -> str:
    """A ZTF object id in its canonical case (``ztf18AAUQCSV`` -> ``ZTF18aauqcsv``); anything else unchanged."""
    text = object_id.strip()
    m = _ZTF_ID.fullmatch(text)
    return f"ZTF{m.group(1)}{m.group(2).lower()}" if m else text


def records(con, sql: str, params: list) -> list[dict]:  # noqa: ANN001
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def object_info(settings: Settings, object_id: str) -> dict:
    """gold.object's row, gold.magstats per band, the nearest PS1/Gaia matches, the user catalogs' nearest sources
    and the transient verdict."""
    with connect_science(settings) as con:
        return object_info_on(con, settings, object_id)


def object_info_on(con, settings: Settings, object_id: str) -> dict:  # noqa: ANN001
    """:func:`object_info` on an open connection to the warehouse (the explorer's, :mod:`ateda.explorer.store`).
    Every statement names its schema and is plain SQL (no DuckDB-only function): the explorer runs them as they
    are."""
    object_id = normalise_object_id(object_id)
    obj = records(con, "select * from gold.object where objectId = ?", [object_id])
    if not obj:
        raise UnknownObject(unknown_object_message(settings, object_id))
    info = {"object": obj[0]}
    info["survey_match"] = records(
        con, "select case when ztf_objectId = ? then lsst_objectId else ztf_objectId end as other, dist_arcsec "
             "from gold.survey_match where ztf_objectId = ? or lsst_objectId = ? order by dist_arcsec",
        [object_id, object_id, object_id])
    # the user catalogs (`ateda catalog add`) match both surveys' alerts
    info["catalogs"] = records(con, "select catalog, catalog_version, match_id, dist_arcsec, n_sources, "
                                     "n_alerts_matched from gold.object_catalog_match where objectId = ? "
                                     "order by catalog", [object_id])
    if obj[0].get("survey") == "lsst":  # Rubin: flux statistics; the ZTF crossmatches (PS1, Gaia, asteroids) do not
        info["fluxstats"] = records(con, "select * from gold.lsst_fluxstats where objectId = ? order by "
                                         "position(band in 'ugrizy')", [object_id])
        info.update(magstats=[], ps1=[], gaia=[], solar_system=[], is_transient_candidate=False)
        return info
    info["magstats"] = records(con, "select * from gold.magstats where objectId = ? order by fid", [object_id])
    last = obj[0]["last_candid"]
    info["ps1"] = records(con, "select match_rank, ps1_objid, dist_arcsec, sgscore, rmag from "
                                "silver.crossmatch_ps1 where candid = ? order by match_rank", [last])
    info["gaia"] = records(con, "select match_kind, dist_arcsec, gaia_mag from silver.crossmatch_gaia "
                                 "where candid = ? order by match_kind desc", [last])
    info["solar_system"] = records(con, "select candid, ss_name, dist_arcsec, ss_mag from silver.crossmatch_ss "
                                         "where objectId = ? order by candid", [object_id])
    info["is_transient_candidate"] = bool(con.execute(
        "select count(*) from gold.transient_candidates where objectId = ?", [object_id]).fetchone()[0])
    return info


def bronze_alerts_of(settings: Settings, object_id: str) -> int:
    """How many alerts of ``object_id`` bronze holds now (an Iceberg scan of one column: the unknown-id path only);
    a Rubin id (digits) is looked up in bronze.lsst_alert."""
    catalog = load_catalog(settings)
    if object_id.isascii() and object_id.isdigit():
        lsst = existing_lsst_table(catalog, settings)
        if lsst is None:
            return 0
        return lsst.scan(row_filter=EqualTo("diaObjectId", int(object_id)),
                         selected_fields=("diaObjectId",)).to_arrow().num_rows
    table = ensure_tables(catalog, settings)["alert"]
    return table.scan(row_filter=EqualTo("objectId", object_id), selected_fields=("objectId",)).to_arrow().num_rows


def unknown_object_message(settings: Settings, object_id: str) -> str:
    """Why ``object_id`` is not in gold: bronze does not have it either, or it does and gold is behind (refresh),
    or it does and gold is up to date (its detections are filtered out of gold)."""
    try:
        n = bronze_alerts_of(settings, object_id)
    except Exception:  # noqa: BLE001 - the catalog is down: say what is known
        return f"no object {object_id} in gold (bronze could not be checked)"
    if not n:
        return f"no object {object_id}: neither gold nor bronze has an alert of it"
    if gold_is_stale(settings):
        return (f"no object {object_id} in gold yet: bronze has {n} alert(s) of it and gold is behind bronze "
                "(run `ateda refresh`, or wait for the running refresh)")
    return f"no object {object_id} in gold although bronze has {n} alert(s) of it (none kept as a detection)"


def gold_is_stale(settings: Settings) -> bool:
    """Whether bronze holds rows the last successful refresh did not read, or requests are pending."""
    return bool(freshness(settings).get("behind"))


def cone(settings: Settings, ra: float, dec: float, radius_arcsec: float, since: float | None = None,
         until: float | None = None, detections: bool = False) -> tuple[list[str], list[str], list[tuple]]:
    """Cone search: gold objects whose mean position is within ``radius_arcsec`` of (``ra``, ``dec``), in degrees,
    nearest first; with ``since``/``until`` (MJD, inclusive) only objects detected in that window. With
    ``detections=True``: the detections (silver.detection) within the cone and window instead. Returns (columns,
    their DuckDB types, rows)."""
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise BadInput(f"RA {ra} / Dec {dec}: Dec must be within [-90, 90] degrees (RA any finite value)")
    if not (math.isfinite(radius_arcsec) and 0 < radius_arcsec <= 180 * 3600):
        raise BadInput(f"--radius-arcsec {radius_arcsec}: must be > 0 and at most 648000 (180 degrees)")
    if since is not None and until is not None and since > until:
        raise BadInput(f"--since {since} is after --until {until}")
    ra = ra % 360.0
    ra_col, dec_col = ("ra", "dec") if detections else ("meanra", "meandec")
    where, params = _cone_box(ra, dec, radius_arcsec / 3600.0, ra_col, dec_col)
    window = []
    if since is not None:
        window.append(("mjd >= ?", since))
    if until is not None:
        window.append(("mjd <= ?", until))
    if detections:
        where += [w for w, _ in window]
        params += [v for _, v in window]
        sql = (f"select candid, objectId, mjd, band, magpsf, sigmapsf, ra, dec, "
               f"great_circle_arcsec(?, ?, ra, dec) as dist_arcsec from silver.detection where {' and '.join(where)}")
    else:
        if window:
            where.append("objectId in (select objectId from silver.detection where "
                         + " and ".join(w for w, _ in window) + ")")
            params += [v for _, v in window]
        sql = (f"select objectId, meanra, meandec, great_circle_arcsec(?, ?, meanra, meandec) as dist_arcsec, ndet, "
               f"firstmjd, lastmjd, is_stellar from gold.object where {' and '.join(where)}")
    order = "dist_arcsec, candid" if detections else "dist_arcsec, objectId"
    full = f"select * from ({sql}) where dist_arcsec <= ? order by {order}"
    with connect_science(settings) as con:
        rel = con.sql(full, params=[ra, dec, *params, radius_arcsec])
        return rel.columns, [str(t) for t in rel.types], rel.fetchall()


def _cone_box(ra: float, dec: float, r: float, ra_col: str, dec_col: str) -> tuple[list[str], list]:
    """A bounding box (degrees) holding the whole cone, for the filter before the exact distance: a Dec band, and
    the RA range of the cone (wrapped at 0/360) unless the cone holds a pole."""
    where, params = [f"{dec_col} between ? and ?"], [dec - r, dec + r]
    if abs(dec) + r >= 90.0 or r >= 90.0:
        return where, params
    half = math.degrees(math.asin(min(1.0, math.sin(math.radians(r)) / math.cos(math.radians(dec)))))
    half = min(180.0, half * (1 + 1e-9) + 1e-9)  # a hair wider: the box only pre-selects
    lo, hi = ra - half, ra + half
    if half >= 180.0:
        return where, params
    if lo < 0:
        where.append(f"({ra_col} >= ? or {ra_col} <= ?)")
        params += [lo + 360.0, hi]
    elif hi >= 360.0:
        where.append(f"({ra_col} >= ? or {ra_col} <= ?)")
        params += [lo, hi - 360.0]
    else:
        where.append(f"{ra_col} between ? and ?")
        params += [lo, hi]
    return where, params


def richest_object(settings: Settings, key_prefix: str) -> str | None:
    """Among the objects whose alerts came from bucket keys under ``key_prefix``, the transient candidate
    (gold.transient_candidates: real, not stellar, not a known asteroid, enough detections) with the most detections:
    the light curve an astronomer would show (a bright star has more alerts, but shows nothing). When none there
    passes the transient filter: the non-stellar object with the most detections, else any object. None when no
    object came from there."""
    with connect(settings) as con:
        row = con.execute(
            "select o.objectId from gold.object o left join gold.transient_candidates t using (objectId) "
            "where o.objectId in (select objectId from silver.ztf_alert where starts_with(src_key, ?)) "
            "order by (t.objectId is not null) desc, coalesce(o.is_stellar, false), o.ndet desc, o.objectId "
            "limit 1", [key_prefix]).fetchone()
    return None if row is None else row[0]

