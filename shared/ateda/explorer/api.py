"""The explorer's HTTP API (mounted under ``/api/v1``; docs/explorer.md is its contract).

Tables come back as JSON by default (``{"total": n, "rows": [...]}`` or ``{"rows": [...]}``; 64-bit ids as strings,
:mod:`ateda.explorer.formats`), or as CSV or VOTable with ``?format=``. The SQL every route issues names its schema
and stays within what DuckDB and StarRocks both read (the tests transpile each statement to StarRocks).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ateda.explorer import formats, sql as safe_sql
from ateda.explorer.store import MAX_CONE_ARCSEC, Store
from ateda.lake.cutouts import KINDS, alerts_with_stamps, is_lsst_object, stamps_of
from ateda.warehouse.plots import stamp_png
from ateda.warehouse.queries import UnknownObject, normalise_object_id, object_info_on, unknown_object_message

router = APIRouter()

# the listing's columns: what /objects returns and may sort by
LISTING = ("objectId", "survey", "meanra", "meandec", "firstmjd", "lastmjd", "ndet", "n_alerts",
           "n_non_detections", "n_forced_photometry", "is_stellar", "last_candid", "last_rb", "last_drb",
           "min_ssdist_arcsec")
LIGHTCURVE_UNITS = {"mjd": "d (MJD, UTC)", "mag": "AB mag (upper_limit: the 5-sigma limiting magnitude)",
                    "e_mag": "mag", "mag_corr": "AB mag", "e_mag_corr": "mag", "diffmaglim": "AB mag",
                    "flux": "nJy", "flux_err": "nJy"}
CONE_UCDS = {"objectId": "meta.id;meta.main", "meanra": "pos.eq.ra;meta.main", "meandec": "pos.eq.dec;meta.main",
             "dist_arcsec": "pos.angDistance"}
CONE_UNITS = {"meanra": "deg", "meandec": "deg", "dist_arcsec": "arcsec", "firstmjd": "d", "lastmjd": "d"}


class TableFormat(str, Enum):
    json = "json"
    csv = "csv"
    votable = "votable"


class Survey(str, Enum):
    ztf = "ztf"
    lsst = "lsst"


class Order(str, Enum):
    asc = "asc"
    desc = "desc"


class StampKind(str, Enum):
    science = "science"
    template = "template"
    difference = "difference"


class StampFormat(str, Enum):
    png = "png"
    fits = "fits"


class Stretch(str, Enum):
    zscale = "zscale"
    asinh = "asinh"


SortColumn = Enum("SortColumn", {c: c for c in LISTING}, type=str)  # the sort whitelist, as the spec shows it
Format = Annotated[TableFormat, Query(description="json (default), csv or votable")]
ObjectId = Annotated[str, Path(description="a ZTF object id (ZTF18aauqcsv, any case) or a Rubin diaObjectId's "
                                           "digits", min_length=1, max_length=40)]
MJD = Query(allow_inf_nan=False, description="MJD (days)")


def store_of(request: Request) -> Store:
    return request.app.state.store


# ---------------------------------------------------------------- tables out

def table(fmt: TableFormat, columns: list[str], types: list[str], rows: list[tuple], name: str,
          extra: dict[str, Any] | None = None, ucds: dict[str, str] | None = None,
          units: dict[str, str] | None = None) -> Response:
    """The rows as JSON (``{**extra, "rows": [...]}``), CSV or VOTable."""
    if fmt is TableFormat.csv:
        return PlainTextResponse(formats.csv_text(columns, rows), media_type="text/csv",
                                 headers={"content-disposition": f'attachment; filename="{name}.csv"',
                                          **_count_header(extra)})
    if fmt is TableFormat.votable:
        return Response(formats.votable_bytes(columns, types, rows, name=name, ucds=ucds, units=units),
                        media_type="application/x-votable+xml", headers=_count_header(extra))
    return JSONResponse({**(extra or {}), "rows": formats.json_rows(columns, rows)})


def _count_header(extra: dict[str, Any] | None) -> dict[str, str]:
    return {"x-total-count": str(extra["total"])} if extra and "total" in extra else {}


# ---------------------------------------------------------------- routes

@router.get("/health", summary="Is the app up, and which warehouse does it read")
def health(request: Request) -> dict:
    published = store_of(request).published_at()
    return {"status": "ok", "warehouse": published.isoformat() if published else None}


@router.get("/objects", summary="gold.object rows: filter, sort, paginate")
def objects(request: Request,
            survey: Survey | None = None,
            min_ndet: Annotated[int | None, Query(ge=0)] = None,
            max_ndet: Annotated[int | None, Query(ge=0)] = None,
            since: Annotated[float | None, MJD] = None,
            until: Annotated[float | None, MJD] = None,
            candidate: Annotated[bool | None, Query(description="only (true) or never (false) objects of "
                                                                "gold.transient_candidates")] = None,
            sort: SortColumn = SortColumn.lastmjd,  # type: ignore[valid-type, attr-defined]
            order: Order = Order.desc,
            limit: Annotated[int, Query(ge=1, le=1000)] = 50,
            offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
            format: Format = TableFormat.json) -> Response:  # noqa: A002
    where, params = [], []
    if survey is not None:
        where.append("o.survey = ?")
        params.append(survey.value)
    if min_ndet is not None:
        where.append("o.ndet >= ?")
        params.append(min_ndet)
    if max_ndet is not None:
        where.append("o.ndet <= ?")
        params.append(max_ndet)
    if since is not None:
        where.append("o.lastmjd >= ?")
        params.append(since)
    if until is not None:
        where.append("o.firstmjd <= ?")
        params.append(until)
    if candidate:  # a semi join DuckDB plans ~30 % cheaper than the equivalent exists (docs/performance.md)
        where.append("o.objectId in (select t.objectId from gold.transient_candidates t)")
    elif candidate is not None:  # not exists, never not in: a NULL on the right would empty a not in
        where.append("not exists (select 1 from gold.transient_candidates t where t.objectId = o.objectId)")
    cond = (" where " + " and ".join(where)) if where else ""
    column = sort.value
    with store_of(request).connect() as con:
        total = con.memo(("objects", cond, tuple(params)),  # the published file is immutable: count it once
                         lambda: con.execute(f"select count(*) from gold.object o{cond}", params).fetchone()[0])
        columns, types, rows = con.records(
            f"select {', '.join('o.' + c for c in LISTING)} from gold.object o{cond} "
            f"order by o.{column} {order.value}{' nulls last' if order is Order.desc else ''}, o.objectId "
            f"limit {limit} offset {offset}", params)
    return table(format, columns, types, rows, "objects", {"total": total, "limit": limit, "offset": offset})


@router.get("/objects/{object_id}", summary="One object: summary, per-band statistics, crossmatches, survey matches")
def object_detail(request: Request, object_id: ObjectId) -> Response:
    store = store_of(request)
    with store.connect() as con:
        try:
            info = object_info_on(con, store.settings, object_id)
        except UnknownObject as exc:
            raise HTTPException(404, str(exc)) from None
    return JSONResponse(formats.jsonable(info))


@router.get("/objects/{object_id}/lightcurve", summary="gold.lightcurve: detections, upper limits, forced photometry")
def lightcurve(request: Request, object_id: ObjectId, format: Format = TableFormat.json) -> Response:  # noqa: A002
    store = store_of(request)
    oid = normalise_object_id(object_id)
    with store.connect() as con:
        _known(con, store, oid)
        columns, types, rows = con.records(
            "select * from gold.lightcurve where objectId = ? order by mjd, point_kind, fid, point_id", [oid])
    return table(format, columns, types, rows, "lightcurve", {"objectId": oid, "units": LIGHTCURVE_UNITS},
                 units={k: v.split(" ")[0] if k != "mjd" else "d" for k, v in LIGHTCURVE_UNITS.items()})


@router.get("/objects/{object_id}/cutouts", summary="The object's alerts that have stamps, with their stamps' URLs")
def object_cutouts(request: Request, object_id: ObjectId) -> list[dict]:
    store = store_of(request)
    oid = normalise_object_id(object_id)
    with store.connect() as con:
        _known(con, store, oid)
        points = {r[0]: (r[1], r[2]) for r in con.execute(
            "select point_id, mjd, band from gold.lightcurve where objectId = ? and point_kind = 'detection'",
            [oid]).fetchall()}
    survey = "lsst" if is_lsst_object(oid) else "ztf"
    out = []
    for candid, kinds in alerts_with_stamps(store.settings, oid):
        mjd, band = points.get(candid, (None, None))
        out.append({"alert_id": str(candid), "survey": survey, "mjd": mjd, "band": band, "stamps": {
            k: request.app.url_path_for("cutout", survey=survey, alert_id=str(candid), kind=k)
            for k in KINDS if k in kinds}})
    out.sort(key=lambda a: (a["mjd"] is None, a["mjd"] or 0.0, int(a["alert_id"])))
    return out


@router.get("/cutouts/{survey}/{alert_id}/{kind}", name="cutout", summary="One stamp: FITS as stored, or a PNG",
            responses={200: {"content": {"image/png": {}, "application/fits": {}}}})
def cutout(request: Request, survey: Survey,
           alert_id: Annotated[str, Path(pattern=r"^\d{1,19}$", description="candid (ZTF) or diaSourceId (Rubin)")],
           kind: StampKind,
           format: StampFormat = StampFormat.png,  # noqa: A002
           stretch: Stretch = Stretch.zscale,
           cmap: Annotated[str, Query(pattern=r"^[A-Za-z0-9_]{1,40}$",
                                      description="a matplotlib colour map (gray, viridis, RdBu_r...)")] = "gray"
           ) -> Response:
    candid = int(alert_id)
    if candid >= 2 ** 63:
        raise HTTPException(404, f"no alert {alert_id}: not a 64-bit id")
    found = stamps_of(store_of(request).settings, candid, survey.value)
    stamp = found.stamps.get(kind.value) if found else None
    if stamp is None:
        what = f"no {kind.value} stamp" if found else "no stamps"
        raise HTTPException(404, f"{what} for {survey.value} alert {alert_id} in bronze")
    if format is StampFormat.fits:
        if stamp.format not in ("fits", "fits.gz"):
            raise HTTPException(404, f"the {kind.value} stamp of alert {alert_id} is {stamp.format}, not FITS: "
                                     "ask for format=png")
        return Response(stamp.file_bytes(), media_type="application/fits", headers={
            "content-disposition": f'attachment; filename="{survey.value}_{alert_id}_{kind.value}.fits"'})
    try:
        png = stamp_png(stamp, stretch=stretch.value, cmap=cmap)
    except KeyError:
        raise HTTPException(422, f"cmap: {cmap!r} is not a matplotlib colour map") from None
    except ValueError as exc:
        raise HTTPException(404, f"the {kind.value} stamp of alert {alert_id} cannot be drawn: {exc}") from None
    return Response(png, media_type="image/png", headers={"cache-control": "max-age=3600"})


@router.get("/cone", summary="Objects within a radius, nearest first (HEALPix index, exact distance)")
def cone(request: Request,
         ra: Annotated[float, Query(allow_inf_nan=False, description="right ascension of the centre, deg")],
         dec: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="declination, deg")],
         radius_arcsec: Annotated[float, Query(gt=0, le=MAX_CONE_ARCSEC, allow_inf_nan=False)],
         since: Annotated[float | None, MJD] = None,
         until: Annotated[float | None, MJD] = None,
         format: Format = TableFormat.json) -> Response:  # noqa: A002
    columns, types, rows = cone_rows(store_of(request), ra, dec, radius_arcsec, since, until)
    return table(format, columns, types, rows, "cone", {"total": len(rows)}, ucds=CONE_UCDS, units=CONE_UNITS)


def cone_rows(store: Store, ra: float, dec: float, radius_arcsec: float, since: float | None = None,
              until: float | None = None) -> tuple[list[str], list[str], list[tuple]]:
    """The cone search behind /cone and /scs: (columns, types, rows nearest first, dist_arcsec last)."""
    if since is not None and until is not None and since > until:
        raise HTTPException(422, f"since: {since} is after until {until}")
    found = store.cone(ra, dec, radius_arcsec)
    cols = ["objectId", "survey", "meanra", "meandec", "ndet", "firstmjd", "lastmjd", "is_stellar"]
    if not found:
        return [*cols, "dist_arcsec"], ["VARCHAR", "VARCHAR", "DOUBLE", "DOUBLE", "BIGINT", "DOUBLE", "DOUBLE",
                                        "BOOLEAN", "DOUBLE"], []
    dist = dict(found)
    ids = list(dist)
    where, params = [f"o.objectId in ({', '.join('?' * len(ids))})"], list(ids)
    window = []
    if since is not None:
        window.append("l.mjd >= ?")
        params.append(since)
    if until is not None:
        window.append("l.mjd <= ?")
        params.append(until)
    if window:  # the cone's ids inside the subquery too: DuckDB filters the light-curve scan by them (~20 % less)
        where.append(f"o.objectId in (select l.objectId from gold.lightcurve l where l.objectId in "
                     f"({', '.join('?' * len(ids))}) and l.point_kind = 'detection' and " + " and ".join(window) + ")")
        params[len(ids):len(ids)] = ids
    with store.connect() as con:
        columns, types, rows = con.records(
            f"select {', '.join('o.' + c for c in cols)} from gold.object o where {' and '.join(where)}", params)
    rows = sorted((r + (dist[r[0]],) for r in rows), key=lambda r: (r[-1], r[0]))
    return [*columns, "dist_arcsec"], [*types, "DOUBLE"], rows


@router.get("/nights", summary="gold.nightly_summary: per survey, night and band")
def nights(request: Request, survey: Survey | None = None, format: Format = TableFormat.json) -> Response:  # noqa: A002
    with store_of(request).connect() as con:
        cond, params = ("where survey = ? ", [survey.value]) if survey else ("", [])
        columns, types, rows = con.records(
            f"select * from gold.nightly_summary {cond}order by night desc, survey, fid", params)
    return table(format, columns, types, rows, "nights")


SqlText = Annotated[str, Query(min_length=1, max_length=safe_sql.MAX_SQL_CHARS,
                               description="one SELECT (or WITH ... SELECT) statement")]
SqlLimit = Annotated[int, Query(ge=1, le=safe_sql.MAX_LIMIT, description="rows returned at most")]


@router.get("/sql", summary="One read-only SQL statement (SELECT/WITH), row and time limits")
def sql_get(request: Request, sql: SqlText, limit: SqlLimit = safe_sql.DEFAULT_LIMIT,
            format: Format = TableFormat.json) -> Response:  # noqa: A002
    return _sql(request, sql, limit, format)


@router.post("/sql", summary="One read-only SQL statement (SELECT/WITH) in the body, row and time limits")
def sql_post(request: Request,
             sql: Annotated[str, Body(embed=True, min_length=1, max_length=safe_sql.MAX_SQL_CHARS)],
             limit: Annotated[int, Body(embed=True, ge=1, le=safe_sql.MAX_LIMIT)] = safe_sql.DEFAULT_LIMIT,
             format: Format = TableFormat.json) -> Response:  # noqa: A002
    return _sql(request, sql, limit, format)


def _sql(request: Request, text: str, limit: int, fmt: TableFormat) -> Response:
    store = store_of(request)
    try:
        columns, types, rows, truncated = safe_sql.run(store, text, limit, store.settings.explorer.sql_timeout_s)
    except (safe_sql.SqlRefused, safe_sql.SqlFailed) as exc:
        raise HTTPException(400, str(exc)) from None
    except safe_sql.SqlTimeout as exc:
        raise HTTPException(408, str(exc)) from None
    return table(fmt, columns, types, rows, "query", {"columns": columns, "truncated": truncated, "limit": limit})


def _known(con, store: Store, object_id: str) -> None:  # noqa: ANN001
    """404 (with why) unless gold.object has the object (the generation's id set answers, else the warehouse)."""
    if con.has_object(object_id):
        return
    if not con.execute("select count(*) from gold.object where objectId = ?", [object_id]).fetchone()[0]:
        raise HTTPException(404, unknown_object_message(store.settings, object_id))

