"""``ateda cutout``, ``ateda plot``: an alert's stamps as files, an object's light curve beside its stamps."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.status import cutouts_of
from ateda.warehouse.plots import plot_object


def register(sub) -> None:  # noqa: ANN001
    cut = sub.add_parser("cutout", help="write an alert's three stamps as FITS files")
    cut.add_argument("candid", type=int)
    cut.add_argument("-o", "--out", type=Path, default=Path("."))
    cut.set_defaults(func=cmd_cutout)
    p = sub.add_parser("plot", help="light curve per band beside the latest alert's cutouts, as a PNG/PDF")
    p.add_argument("object_id", metavar="OBJECT_ID")
    p.add_argument("-o", "--out", type=Path, default=None, help="default OBJECT_ID.png")
    p.add_argument("--dpi", type=int, default=200)
    p.set_defaults(func=cmd_plot)


def cmd_cutout(args, settings: Settings) -> int:  # noqa: ANN001
    rows = cutouts_of(settings, args.candid)
    if not rows:
        print(f"no cutouts for candid {args.candid}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for kind, data in rows.items():
        path = args.out / f"{args.candid}_{kind}.fits"
        path.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        print(path)
    return 0


def cmd_plot(args, settings: Settings) -> int:  # noqa: ANN001
    out = args.out or Path(f"{args.object_id}.png")
    try:
        plot_object(settings, args.object_id, out, dpi=args.dpi)
    except AtedaError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(out)
    return 0
