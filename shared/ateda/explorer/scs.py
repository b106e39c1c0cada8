"""IVOA Simple Cone Search 1.03 at ``/scs``: ``RA``, ``DEC`` (ICRS) and ``SR`` in degrees -> a VOTable of the gold
objects within the cone, nearest first (TOPCAT, pyvo's SCSService, astroquery). Served from the same HEALPix index
as ``/api/v1/cone``. As the standard asks, a bad request is answered with a VOTable holding ``INFO name="Error"``
(HTTP 200), never with an HTML or JSON page a VO client cannot read. SR is at most 1 degree; SR=0 returns the
table's columns and no row (the standard's metadata query).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from ateda.explorer import formats
from ateda.explorer.api import cone_rows, store_of
from ateda.explorer.store import MAX_CONE_ARCSEC, NoWarehouse

router = APIRouter()
MEDIA = "text/xml;content=x-votable"
# SCS 1.03 asks for exactly one column with each of these UCD1 (the ID, RA and Dec); units where they apply
UCDS = {"objectId": "ID_MAIN", "meanra": "POS_EQ_RA_MAIN", "meandec": "POS_EQ_DEC_MAIN", "dist_arcsec": "pos.angDistance"}
UNITS = {"meanra": "deg", "meandec": "deg", "dist_arcsec": "arcsec", "firstmjd": "d", "lastmjd": "d"}


@router.get("/scs", summary="IVOA Simple Cone Search 1.03 (RA, DEC, SR in degrees) -> VOTable",
            responses={200: {"content": {MEDIA: {}}}}, response_class=Response)
def simple_cone_search(request: Request,
                       ra: Annotated[str | None, Query(alias="RA", description="deg, ICRS")] = None,
                       dec: Annotated[str | None, Query(alias="DEC", description="deg, ICRS")] = None,
                       sr: Annotated[str | None, Query(alias="SR", description="search radius, deg (<= 1)")] = None,
                       ) -> Response:
    given = {k.upper(): v for k, v in request.query_params.items()}
    try:
        ra_deg = _number(given, "RA", ra, lambda x: True, "any finite value")
        dec_deg = _number(given, "DEC", dec, lambda x: -90 <= x <= 90, "within [-90, 90]")
        sr_deg = _number(given, "SR", sr, lambda x: 0 <= x <= MAX_CONE_ARCSEC / 3600, "within [0, 1]")
    except ValueError as exc:
        return _error(str(exc))
    try:
        if sr_deg == 0:  # metadata: the columns, no row
            columns, types, rows = cone_rows(store_of(request), ra_deg, dec_deg, 1e-9)
            rows = []
        else:
            columns, types, rows = cone_rows(store_of(request), ra_deg, dec_deg, sr_deg * 3600.0)
    except NoWarehouse as exc:
        return _error(str(exc))
    except HTTPException as exc:
        return _error(str(exc.detail))
    body = formats.votable_bytes(columns, types, rows, name="cone", ucds=UCDS, units=UNITS,
                                 description=f"gold objects within {sr_deg} deg of ({ra_deg}, {dec_deg})")
    return Response(body, media_type=MEDIA)


def _number(given: dict[str, str], name: str, value: str | None, ok, allowed: str) -> float:  # noqa: ANN001
    text = given.get(name, value)
    if text is None or not text.strip():
        raise ValueError(f"{name} is required (degrees)")
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number (degrees)") from None
    if not math.isfinite(x) or not ok(x):
        raise ValueError(f"{name}: {text!r} must be {allowed} (degrees)")
    return x


def _error(message: str) -> Response:
    return Response(formats.error_votable(message), media_type=MEDIA)
