"""An alert's stamps (``bronze.cutout``), read by candid or by object id (its latest alert with stamps), each with its
format told by its bytes: gzipped FITS (ZTF's own), plain FITS (Rubin's), JPEG or PNG (old 0.x alerts and some test
alerts). Both surveys share the table (``survey``): a Rubin object id is its diaObjectId's digits, a Rubin candid its
diaSourceId.

``Stamp.file_bytes`` is what ``ateda cutout`` writes (FITS gunzipped, JPEG and PNG as they are) under
``Stamp.extension``; ``Stamp.image`` is the 2-D array ``ateda plot`` draws.
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from pyiceberg.expressions import EqualTo

from ateda.config import Settings
from ateda.errors import BadInput
from ateda.lake.iceberg import ensure_tables, existing_lsst_table, load_catalog

KINDS = ("science", "template", "difference")  # bronze.cutout's kind, in the order an alert lists them
# format -> (the leading bytes that tell it, the extension `ateda cutout` writes it under)
FORMATS = {
    "fits.gz": (b"\x1f\x8b", ".fits"),  # gunzipped before writing: the FITS inside, as the alert's fileName says
    "fits": (b"SIMPLE  =", ".fits"),
    "jpeg": (b"\xff\xd8\xff", ".jpg"),
    "png": (b"\x89PNG\r\n\x1a\n", ".png"),
}


def stamp_format(data: bytes) -> str:
    """``fits.gz``, ``fits``, ``jpeg``, ``png`` from the leading bytes; ``unknown`` otherwise."""
    for name, (magic, _) in FORMATS.items():
        if data.startswith(magic):
            return name
    return "unknown"


@dataclass(frozen=True)
class Stamp:
    kind: str  # science, template, difference
    file_name: str  # as the alert names it (fileName), "" when absent
    data: bytes  # as stored in bronze (as in the alert)

    @property
    def format(self) -> str:
        return stamp_format(self.data)

    @property
    def extension(self) -> str:
        return FORMATS[self.format][1] if self.format in FORMATS else ".bin"

    def file_bytes(self) -> bytes:
        """The stamp as a file of its own: gzipped FITS gunzipped, every other format byte for byte."""
        return gzip.decompress(self.data) if self.format == "fits.gz" else self.data

    def image(self) -> np.ndarray:
        """The stamp's pixels as a 2-D float array, row 0 at the bottom as FITS has it (JPEG/PNG rows are flipped
        to match; colour images are averaged to one channel). NaN where FITS says nothing. ValueError if the bytes
        are no image this module knows."""
        if self.format in ("fits.gz", "fits"):
            from astropy.io import fits  # optional and heavy (astropy): only when a stamp is drawn

            with warnings.catch_warnings():  # ZTF stamps' SIMPLE card is not quite standard: harmless
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                with fits.open(io.BytesIO(self.file_bytes())) as hdul:
                    return _image_hdu(hdul)
        if self.format in ("jpeg", "png"):
            from PIL import Image  # optional and heavy (Pillow, matplotlib's): only when a stamp is drawn

            with Image.open(io.BytesIO(self.data)) as im:
                pixels = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im, dtype=float)
            return pixels[::-1]
        raise ValueError(f"{self.kind} stamp {self.file_name or ''!r}: not FITS, JPEG or PNG "
                         f"(starts with {self.data[:8]!r})")


def _image_hdu(hdul) -> np.ndarray:  # noqa: ANN001
    """The first 2-D image of a FITS file: ZTF's primary HDU; in a Rubin cutout with extensions, the image plane
    (its mask and variance planes are not what is drawn)."""
    for hdu in hdul:
        name = str(hdu.header.get("EXTNAME", "")).upper()
        if hdu.data is not None and np.ndim(hdu.data) == 2 and name not in ("MASK", "VARIANCE"):
            return np.asarray(hdu.data, dtype=float)
    raise ValueError("no 2-D image in the FITS stamp")


@dataclass
class AlertStamps:
    candid: int
    object_id: str
    jd: float | None
    stamps: dict[str, Stamp] = field(default_factory=dict)  # kind -> stamp; a kind the alert lacks is absent
    survey: str = "ztf"

    @property
    def mjd(self) -> float | None:
        return None if self.jd is None else self.jd - 2400000.5


def stamps_of(settings: Settings, candid: int, survey: str | None = None) -> AlertStamps | None:
    """The stamps of one alert (candid; a Rubin diaSourceId); None if bronze holds none for it. Copies of one alert
    ingested from several files carry the same stamps: the copy from the first source key (sorted) is taken. A number
    that is an alert of both surveys needs ``survey`` (BadInput otherwise)."""
    return _stamps(settings, ensure_tables(load_catalog(settings), settings), candid, survey)


def is_lsst_object(object_id: str) -> bool:
    """A Rubin object id (a diaObjectId's digits) rather than a ZTF one (ZTF...)."""
    return object_id.isascii() and object_id.isdigit()


def latest_stamps(settings: Settings, object_id: str) -> AlertStamps | None:
    """The stamps of the object's latest alert (largest time, then candid) that has any; None if it has none."""
    catalog = load_catalog(settings)
    tables = ensure_tables(catalog, settings)
    survey = "lsst" if is_lsst_object(object_id) else "ztf"
    cut = tables["cutout"].scan(row_filter=EqualTo("objectId", object_id),
                                selected_fields=("candid", "survey")).to_arrow().to_pylist()
    with_stamps = {r["candid"] for r in cut if (r.get("survey") or "ztf") == survey}
    if not with_stamps:
        return None
    times = _alert_times(settings, catalog, tables, survey, object_id=object_id)
    return _stamps(settings, tables, max(with_stamps, key=lambda c: (times.get(c) or float("-inf"), c)), survey)


def alerts_with_stamps(settings: Settings, object_id: str) -> list[tuple[int, set[str]]]:
    """(candid, the kinds of stamp bronze holds for it) of each of the object's alerts that has any, by candid: a
    scan of bronze.cutout's ids and kinds, never of the stamps' bytes."""
    survey = "lsst" if is_lsst_object(object_id) else "ztf"
    tables = ensure_tables(load_catalog(settings), settings)
    rows = tables["cutout"].scan(row_filter=EqualTo("objectId", object_id),
                                 selected_fields=("candid", "kind", "survey")).to_arrow().to_pylist()
    out: dict[int, set[str]] = {}
    for r in rows:
        if (r.get("survey") or "ztf") == survey:
            out.setdefault(r["candid"], set()).add(r["kind"])
    return sorted(out.items())


def _alert_times(settings: Settings, catalog, tables: dict, survey: str, object_id: str | None = None,  # noqa: ANN001
                 candid: int | None = None) -> dict[int, float]:
    """candid -> the alert's JD (Rubin: its diaSource's midpointMjdTai as a JD), for one object or one candid."""
    if survey == "ztf":
        flt = EqualTo("objectId", object_id) if object_id is not None else EqualTo("candid", candid)
        rows = tables["alert"].scan(row_filter=flt, selected_fields=("candid", "jd")).to_arrow().to_pylist()
        return {r["candid"]: r["jd"] for r in rows if r["jd"] is not None}
    lsst = existing_lsst_table(catalog, settings)
    if lsst is None:
        return {}
    flt = EqualTo("diaObjectId", int(object_id)) if object_id is not None else EqualTo("diaSourceId", candid)
    rows = lsst.scan(row_filter=flt, selected_fields=("diaSourceId", "midpointMjdTai")).to_arrow().to_pylist()
    return {r["diaSourceId"]: r["midpointMjdTai"] + 2400000.5 for r in rows if r["midpointMjdTai"] is not None}


def _stamps(settings: Settings, tables: dict, candid: int, survey: str | None) -> AlertStamps | None:
    rows = tables["cutout"].scan(row_filter=EqualTo("candid", candid), selected_fields=(
        "objectId", "kind", "file_name", "stamp_data", "source_key", "survey")).to_arrow().to_pylist()
    for r in rows:
        r["survey"] = r.get("survey") or "ztf"  # rows written before the column existed: ZTF's
    found = {r["survey"] for r in rows}
    if survey is None and len(found) > 1:
        raise BadInput("ambiguous_candid", f"{candid} is an alert of both surveys ({', '.join(sorted(found))}): "
                                           "say which with --survey")
    rows = sorted((r for r in rows if survey in (None, r["survey"])), key=lambda r: (r["source_key"] or "", r["kind"]))
    if not rows:
        return None
    jd = _alert_times(settings, load_catalog(settings), tables, rows[0]["survey"], candid=candid).get(candid)
    out = AlertStamps(candid, rows[0]["objectId"], jd, survey=rows[0]["survey"])
    for r in rows:
        if r["kind"] not in out.stamps and r["stamp_data"] is not None:
            out.stamps[r["kind"]] = Stamp(r["kind"], r["file_name"] or "", r["stamp_data"])
    return out
