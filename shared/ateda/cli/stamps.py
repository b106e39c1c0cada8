"""``ateda cutout``, ``ateda plot``: an alert's stamps as files, an object's light curve beside its stamps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ateda.cli.options import positive_int
from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.lake.cutouts import KINDS, latest_stamps, stamps_of
from ateda.warehouse.plots import plot_object

ZTF_OBJECT_ID = re.compile(r"ztf(\d\d)([a-z]{7})", re.IGNORECASE)


def object_id(text: str) -> str:
    """A ZTF object id as ZTF writes it ("ZTF" + two digits + seven lower-case letters), whatever case it was typed
    in; anything else as given."""
    m = ZTF_OBJECT_ID.fullmatch(text.strip())
    return f"ZTF{m[1]}{m[2].lower()}" if m else text.strip()


def register(sub) -> None:  # noqa: ANN001
    cut = sub.add_parser("cutout", help="write an alert's stamps as files, each in its own format (FITS, JPEG, PNG)")
    cut.add_argument("alert", metavar="CANDID|OBJECT_ID",
                     help="an alert's candid, or an object id (then its latest alert that has stamps)")
    cut.add_argument("-o", "--out", type=Path, default=Path("."), help="folder to write into (default: here)")
    cut.set_defaults(func=cmd_cutout)
    p = sub.add_parser("plot", help="light curve per band beside the latest alert's cutouts, as a PNG/PDF/SVG")
    p.add_argument("object_id", metavar="OBJECT_ID", help="a ZTF object id, e.g. ZTF18aauqcsv (any case)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output file; its suffix (.png, .pdf, .svg) picks the format (default OBJECT_ID.png)")
    p.add_argument("--dpi", type=positive_int, default=200, help="resolution of a PNG, in dots per inch (default 200)")
    p.set_defaults(func=cmd_plot)


def cmd_cutout(args, settings: Settings) -> int:  # noqa: ANN001
    """Each stamp under ``CANDID_KIND.EXT``: FITS gunzipped (ZTF ships it gzipped), JPEG and PNG byte for byte."""
    text = args.alert.strip()
    if re.fullmatch(r"-?\d+", text):
        found, what = stamps_of(settings, int(text)), f"candid {text}"
    else:
        found, what = latest_stamps(settings, object_id(text)), f"object {object_id(text)}"
    if found is None or not found.stamps:
        print(f"ateda cutout: no stamps for {what} in bronze (check the id with `ateda query \"select objectId, "
              f"candid from bronze.cutout limit 5\"`, or ingest its alert first)", file=sys.stderr)
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
    oid = object_id(args.object_id)
    out = args.out or Path(f"{oid}.png")
    try:
        plot_object(settings, oid, out, dpi=args.dpi)
    except AtedaError as exc:
        print(f"ateda plot: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
