"""``ateda catalog add|list``: the reference catalogs the crossmatch matches against."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ateda.backfill import BackfillFailed, run_backfill
from ateda.config import Settings
from ateda.steps.crossmatch import CHUNK_ALERTS, NSIDE, CrossmatchError, add_reference_catalog, list_reference_catalogs


def register(sub) -> None:
    """``ateda catalog add|list``."""
    c = sub.add_parser("catalog", help="reference catalogs for the crossmatch (HEALPix-partitioned in the lake)")
    csub = c.add_subparsers(required=True, metavar="ACTION")
    a = csub.add_parser("add", help="register NAME from a Parquet/CSV file with ra, dec (deg) and id columns, then "
                                    "match it against every alert already in bronze and refresh silver/gold")
    a.add_argument("name", help="catalog name: lower-case letters, digits, '-' and '_'")
    a.add_argument("file", type=Path, help="Parquet or CSV (.csv, .csv.gz) file with ra, dec (degrees, ICRS), id")
    a.add_argument("--radius-arcsec", type=float, required=True, metavar="ARCSEC", help="match radius (arcsec)")
    a.add_argument("--nside", type=int, default=NSIDE, metavar="NSIDE",
                   help=f"HEALPix partitioning of the catalog (nested; a power of two, default {NSIDE}: "
                        "~55 arcmin cells)")
    a.add_argument("--no-backfill", action="store_true",
                   help="only register: alerts already in bronze are not matched (new ones are)")
    a.add_argument("--chunk-alerts", type=int, default=CHUNK_ALERTS, metavar="N",
                   help=f"the most alerts one backfill chunk event holds (alerts, default {CHUNK_ALERTS})")
    a.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="how long to wait for the backfill and the refresh (seconds, default 3600)")
    a.set_defaults(func=cmd_catalog_add)
    ls = csub.add_parser("list", help="registered catalogs")
    ls.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    ls.set_defaults(func=cmd_catalog_list)


def cmd_catalog_add(args, settings: Settings) -> int:
    if args.chunk_alerts < 1:
        print("ateda catalog: --chunk-alerts must be at least 1", file=sys.stderr)
        return 2
    try:
        info = add_reference_catalog(settings, args.name, args.file, args.radius_arcsec, args.nside)
    except CrossmatchError as exc:  # the user's file: one line, no traceback
        print(f"ateda catalog: {exc}", file=sys.stderr)
        return 2
    print(f"catalog {info.name}: {info.rows} rows in {len(info.cells)} HEALPix cells (nside {info.nside}), "
          f"radius {info.radius_arcsec}\", version {info.version}")
    if args.no_backfill:
        print("no backfill: alerts already in bronze are not matched against it (new alerts are)")
        return 0
    try:
        done = run_backfill(settings, info, args.chunk_alerts, args.timeout)
    except (BackfillFailed, TimeoutError) as exc:
        print(f"ateda catalog: backfill of {info.name}: {exc}", file=sys.stderr)
        return 1
    if not done.run:
        print("no alerts in bronze yet: alerts are matched against it as they are ingested", file=sys.stderr)
    elif done.superseded:
        print(f"backfill skipped: a newer version of {info.name} was registered meanwhile")
    else:
        print(f"backfill: {done.matched_alerts} of the {done.alerts_in_bronze} past alerts matched {info.name} "
              f"({done.matches} matches, {done.appended} new) in {done.chunks} chunk(s), {done.seconds:.1f} s; "
              + ("nothing to refresh" if not done.matches else "silver and gold refreshed" if done.refreshed
                 else "the dbt refresh follows (cluster target)"))
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
