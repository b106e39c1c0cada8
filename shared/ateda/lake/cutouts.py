"""An alert's stamps (``bronze.cutout``), read by candid or by object id (its latest alert with stamps), each with its
format told by its bytes: gzipped FITS (ZTF's own), plain FITS, JPEG or PNG (old 0.x alerts and some test alerts).

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
from ateda.lake.iceberg import ensure_tables, load_catalog

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
                    return np.asarray(hdul[0].data, dtype=float)
        if self.format in ("jpeg", "png"):
            from PIL import Image  # optional and heavy (Pillow, matplotlib's): only when a stamp is drawn

            with Image.open(io.BytesIO(self.data)) as im:
                pixels = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im, dtype=float)
            return pixels[::-1]
        raise ValueError(f"{self.kind} stamp {self.file_name or ''!r}: not FITS, JPEG or PNG "
                         f"(starts with {self.data[:8]!r})")


@dataclass
class AlertStamps:
    candid: int
    object_id: str
    jd: float | None
    stamps: dict[str, Stamp] = field(default_factory=dict)  # kind -> stamp; a kind the alert lacks is absent

    @property
    def mjd(self) -> float | None:
        return None if self.jd is None else self.jd - 2400000.5


def stamps_of(settings: Settings, candid: int) -> AlertStamps | None:
    """The stamps of one alert (candid); None if bronze holds none for it. Copies of one alert ingested from several
    files carry the same stamps: the copy from the first source key (sorted) is taken."""
    return _stamps(ensure_tables(load_catalog(settings), settings), candid)


def latest_stamps(settings: Settings, object_id: str) -> AlertStamps | None:
    """The stamps of the object's latest alert (largest jd, then candid) that has any; None if it has none."""
    tables = ensure_tables(load_catalog(settings), settings)
    with_stamps = set(tables["cutout"].scan(row_filter=EqualTo("objectId", object_id),
                                            selected_fields=("candid",)).to_arrow()["candid"].to_pylist())
    if not with_stamps:
        return None
    alerts = tables["alert"].scan(row_filter=EqualTo("objectId", object_id),
                                  selected_fields=("candid", "jd")).to_arrow().to_pylist()
    jd = {a["candid"]: a["jd"] for a in alerts if a["candid"] in with_stamps}
    return _stamps(tables, max(with_stamps, key=lambda c: (jd.get(c) or float("-inf"), c)))


def _stamps(tables: dict, candid: int) -> AlertStamps | None:
    rows = tables["cutout"].scan(row_filter=EqualTo("candid", candid),
                                 selected_fields=("objectId", "kind", "file_name", "stamp_data", "source_key"))
    rows = sorted(rows.to_arrow().to_pylist(), key=lambda r: (r["source_key"] or "", r["kind"]))
    if not rows:
        return None
    alerts = tables["alert"].scan(row_filter=EqualTo("candid", candid), selected_fields=("jd",)).to_arrow()
    jds = [j for j in alerts["jd"].to_pylist() if j is not None]
    out = AlertStamps(candid, rows[0]["objectId"], jds[0] if jds else None)
    for r in rows:
        if r["kind"] not in out.stamps and r["stamp_data"] is not None:
            out.stamps[r["kind"]] = Stamp(r["kind"], r["file_name"] or "", r["stamp_data"])
    return out
