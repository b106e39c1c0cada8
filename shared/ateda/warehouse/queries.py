"""Queries over the local warehouse (DuckDB, ``$ATEDA_HOME/warehouse/ateda.duckdb``, read-only) for the science
commands: an object's summary, its latest cutouts, the demo's richest object. Unqualified table names resolve in
gold, then silver, then bronze (``select * from object`` is ``gold.object``).
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.warehouse.build import connect

SEARCH_PATH = "gold,silver,bronze"


class ScienceError(AtedaError):
    """The object or the query cannot be answered from the warehouse."""


def connect_science(settings: Settings):  # noqa: ANN201
    """A read-only connection whose search path is gold, silver, bronze."""
    con = connect(settings, read_only=True)
    con.execute(f"set search_path = '{SEARCH_PATH}'")
    return con


def records(con, sql: str, params: list) -> list[dict]:  # noqa: ANN001
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def object_info(settings: Settings, object_id: str) -> dict:
    """gold.object's row, gold.magstats per band, the nearest PS1/Gaia matches, the user catalogs' nearest sources
    and the transient verdict."""
    with connect_science(settings) as con:
        obj = records(con, "select * from gold.object where objectId = ?", [object_id])
        if not obj:
            raise ScienceError(f"no object {object_id} in the warehouse (run `ateda refresh` after ingesting)")
        info = {"object": obj[0]}
        info["magstats"] = records(con, "select * from gold.magstats where objectId = ? order by fid", [object_id])
        last = obj[0]["last_candid"]
        info["ps1"] = records(con, "select match_rank, ps1_objid, dist_arcsec, sgscore, rmag from "
                                    "silver.crossmatch_ps1 where candid = ? order by match_rank", [last])
        info["gaia"] = records(con, "select match_kind, dist_arcsec, gaia_mag from silver.crossmatch_gaia "
                                     "where candid = ? order by match_kind desc", [last])
        info["solar_system"] = records(con, "select candid, ss_name, dist_arcsec, ss_mag from silver.crossmatch_ss "
                                             "where objectId = ? order by candid", [object_id])
        info["catalogs"] = records(con, "select catalog, catalog_version, match_id, dist_arcsec, n_sources, "
                                         "n_alerts_matched from gold.object_catalog_match where objectId = ? "
                                         "order by catalog", [object_id])
        info["is_transient_candidate"] = bool(con.execute(
            "select count(*) from gold.transient_candidates where objectId = ?", [object_id]).fetchone()[0])
    return info



def richest_object(settings: Settings, key_prefix: str) -> str | None:
    """Among the objects whose alerts came from bucket keys under ``key_prefix``, the one with the most detections
    (the light curve an astronomer would look at first)."""
    with connect(settings) as con:
        row = con.execute(
            "select o.objectId from gold.object o where o.objectId in "
            "(select objectId from silver.ztf_alert where starts_with(src_key, ?)) "
            "order by o.ndet desc, o.objectId limit 1", [key_prefix]).fetchone()
    return None if row is None else row[0]


@dataclass
class Cutouts:
    candid: int
    mjd: float
    images: dict[str, Any]  # kind -> 2-D array
    names: dict[str, str]  # kind -> the stamp's file name


def latest_cutouts(con, object_id: str) -> Cutouts | None:  # noqa: ANN001
    """The three stamps of the object's latest alert that has them."""
    row = con.execute(
        "select a.candid, a.mjd from silver.ztf_alert a where a.objectId = ? "
        "and a.candid in (select candid from bronze.cutout where objectId = ?) "
        "order by a.jd desc, a.candid desc limit 1", [object_id, object_id]).fetchone()
    if row is None:
        return None
    candid, mjd = row
    images, names = {}, {}
    for kind, name, data in con.execute(
            "select kind, file_name, stamp_data from bronze.cutout where candid = ?", [candid]).fetchall():
        names[kind] = name or ""
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with warnings.catch_warnings():  # ZTF stamps' SIMPLE card is not quite standard: harmless
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with fits.open(io.BytesIO(raw)) as hdul:
                images[kind] = np.asarray(hdul[0].data, dtype=float)
    return Cutouts(candid, mjd, images, names)

