"""``ateda cutout``, ``ateda plot``: an alert's stamps as files, an object's light curve beside its stamps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ateda.cli.options import positive_int
from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.lake.cutouts import KINDS, is_lsst_object, latest_stamps, stamps_of
from ateda.warehouse.plots import PLOT_SUFFIXES, plot_object
from ateda.warehouse.queries import normalise_object_id

def register(sub) -> None:  # noqa: ANN001
    cut = sub.add_parser("cutout", help="write an alert's stamps as files, each in its own format (FITS, JPEG, PNG)")
    cut.add_argument("alert", metavar="CANDID|OBJECT_ID",
                     help="an alert's candid (Rubin: diaSourceId), or an object id (ZTF..., or a Rubin diaObjectId: "
                          "then its latest alert that has stamps)")
    cut.add_argument("--survey", choices=("ztf", "lsst"), default=None,
                     help="the survey of a number that is an alert of both (ztf, lsst)")
    cut.add_argument("-o", "--out", type=Path, default=Path("."), help="folder to write into (default: here)")
    cut.set_defaults(func=cmd_cutout)
    p = sub.add_parser("plot", help="light curve per band beside the latest alert's cutouts, as a PNG/PDF/SVG")
    p.add_argument("object_id", metavar="OBJECT_ID",
                   help="a ZTF object id, e.g. ZTF18aauqcsv (any case), or a Rubin diaObjectId")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output file; its suffix (.png, .pdf, .svg) picks the format (default OBJECT_ID.png)")
    p.add_argument("--dpi", type=positive_int, default=200, help="resolution of a PNG, in dots per inch (default 200)")
    p.set_defaults(func=cmd_plot)


def cmd_cutout(args, settings: Settings) -> int:  # noqa: ANN001
    """Each stamp under ``CANDID_KIND.EXT``: FITS gunzipped (ZTF ships it gzipped), JPEG and PNG byte for byte."""
    text = args.alert.strip()
    if re.fullmatch(r"-?\d+", text):
        found, what = stamps_of(settings, int(text), args.survey), f"candid {text}"
        if found is None and args.survey != "ztf" and is_lsst_object(text):  # not an alert: a Rubin diaObjectId?
            found, what = latest_stamps(settings, text), f"alert or Rubin object {text}"
    else:
        found, what = latest_stamps(settings, normalise_object_id(text)), f"object {normalise_object_id(text)}"
    if found is None or not found.stamps:
        print(f"ateda cutout: no stamps for {what} in bronze (its alerts carry none, or it is not ingested: "
              f"`ateda query \"select objectId, candid from bronze.cutout limit 5\"` lists some that have stamps)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        stamp = found.stamps.get(kind)
        if stamp is None:
            print(f"ateda cutout: candid {found.candid} has no {kind} stamp", file=sys.stderr)
            continue
        path = args.out / f"{found.candid}_{kind}{stamp.extension}"
        path.write_bytes(stamp.file_bytes())
        print(path)
    return 0


def cmd_plot(args, settings: Settings) -> int:  # noqa: ANN001
    oid = normalise_object_id(args.object_id)
    out = args.out or Path(f"{oid}.png")
    if out.suffix.lower() not in PLOT_SUFFIXES:
        print(f"ateda plot: cannot tell the format from {out.name!r}: end -o with one of "
              f"{', '.join(PLOT_SUFFIXES)}", file=sys.stderr)
        return 2
    try:
        plot_object(settings, oid, out, dpi=args.dpi)
    except AtedaError as exc:
        print(f"ateda plot: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
