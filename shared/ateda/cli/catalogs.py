"""``ateda catalog add|list``: the reference catalogs the crossmatch matches against."""

from __future__ import annotations

import json
from pathlib import Path

from ateda.config import Settings
from ateda.steps.crossmatch import NSIDE, add_reference_catalog, list_reference_catalogs


def register(sub) -> None:
    """``ateda catalog add|list``."""
    c = sub.add_parser("catalog", help="reference catalogs for the crossmatch (HEALPix-partitioned in the lake)")
    csub = c.add_subparsers(required=True, metavar="ACTION")
    a = csub.add_parser("add", help="register NAME from a Parquet/CSV file with ra, dec (deg) and id columns")
    a.add_argument("name")
    a.add_argument("file", type=Path)
    a.add_argument("--radius-arcsec", type=float, required=True, help="match radius")
    a.add_argument("--nside", type=int, default=NSIDE, help="HEALPix partitioning (nested), default 64")
    a.set_defaults(func=cmd_catalog_add)
    ls = csub.add_parser("list", help="registered catalogs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_catalog_list)


def cmd_catalog_add(args, settings: Settings) -> int:
    info = add_reference_catalog(settings, args.name, args.file, args.radius_arcsec, args.nside)
    print(f"catalog {info.name}: {info.rows} rows in {len(info.cells)} HEALPix cells (nside {info.nside}), "
          f"radius {info.radius_arcsec}\", version {info.version}")
    return 0


def cmd_catalog_list(args, settings: Settings) -> int:
    cats = list_reference_catalogs(settings)
    if args.json:
        print(json.dumps([{k: v for k, v in c.as_dict().items() if k != "cells"} | {"n_cells": len(c.cells)}
                          for c in cats], indent=1))
        return 0
    for c in cats:
        print(f"{c.name}\t{c.rows} rows\t{len(c.cells)} cells\tradius {c.radius_arcsec}\"\tversion {c.version}")
    return 0
