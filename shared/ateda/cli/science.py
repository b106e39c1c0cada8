"""``ateda query``, ``ateda object``, ``ateda cone``, ``ateda refresh``: the science layers, read-only (refresh
builds them from bronze with dbt, :mod:`ateda.warehouse.build`). Queries read the last published warehouse, so a
refresh running meanwhile never makes them fail.

Table output keeps every float at full precision (the shortest text that reads back to the same number: MJD to
1e-8 d, RA/Dec to 1e-10 deg) and cuts other cells wider than ``--max-width`` with an ellipsis; CSV and JSON are
exact and never cut."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ateda.config import Settings
from ateda.errors import AtedaError, BadInput
from ateda.warehouse.build import refresh_models
from ateda.warehouse.location import WarehouseError
from ateda.warehouse.plots import iso_minute, sexagesimal
from ateda.warehouse.queries import UnknownObject, cone, connect_science, object_info

MAX_WIDTH = 48  # characters of a text cell in table output (numbers are never cut)


def register(sub) -> None:  # noqa: ANN001
    """Add query/object/refresh to the ``ateda`` sub-command parser."""
    q = sub.add_parser("query", help="run SQL on the local warehouse (gold, silver, bronze; the SQL function "
                                     "great_circle_arcsec(ra1, dec1, ra2, dec2) takes degrees, gives arcseconds)")
    q.add_argument("sql", help="one SQL statement; unqualified tables resolve in gold, then silver, then bronze")
    _output_options(q)
    q.set_defaults(func=cmd_query)
    c = sub.add_parser("cone", help="cone search: gold objects whose mean position is within a radius, nearest "
                                    "first (--detections: silver detections instead)")
    c.add_argument("ra", type=float, metavar="RA", help="right ascension of the centre, degrees (ICRS)")
    c.add_argument("dec", type=float, metavar="DEC", help="declination of the centre, degrees (ICRS)")
    c.add_argument("--radius-arcsec", type=float, required=True, help="radius, arcseconds")
    c.add_argument("--since", type=float, default=None, metavar="MJD",
                   help="only objects (detections) detected at or after this time, MJD (days)")
    c.add_argument("--until", type=float, default=None, metavar="MJD",
                   help="only objects (detections) detected at or before this time, MJD (days)")
    c.add_argument("--detections", action="store_true",
                   help="list the detections (silver.detection) in the cone, not the objects")
    _output_options(c, parquet=False)
    c.set_defaults(func=cmd_cone)
    o = sub.add_parser("object", help="an object's summary and magnitude statistics per band")
    o.add_argument("object_id", metavar="OBJECT_ID", help="a ZTF object id, e.g. ZTF18aauqcsv (any case)")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    o.set_defaults(func=cmd_object)
    r = sub.add_parser("refresh", help="bring silver and gold up to date with bronze (dbt)")
    r.add_argument("--target", choices=("local", "cluster"), default="local",
                   help="local: DuckDB in ATEDA_HOME; cluster: StarRocks")
    r.add_argument("--full-refresh", action="store_true", help="rebuild every model from all of bronze")
    r.add_argument("--test", action="store_true", help="dbt build: run the models' tests too")
    r.add_argument("--select", default=None, help="dbt node selection")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(func=cmd_refresh)


def _output_options(p, parquet: bool = True) -> None:  # noqa: ANN001
    formats = ("table", "csv", "json", "parquet") if parquet else ("table", "csv", "json")
    p.add_argument("--format", choices=formats, default="table",
                   help=f"output format ({', '.join(formats[1:])} are exact; table keeps full precision for numbers)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="write here" + (" (required for parquet)" if parquet else ""))
    p.add_argument("--max-rows", type=int, default=50, help="table format: rows shown")
    p.add_argument("--max-width", type=int, default=MAX_WIDTH,
                   help=f"table format: characters of a text cell before it is cut with an ellipsis "
                        f"(default {MAX_WIDTH}; numbers are never cut)")


def cmd_query(args, settings: Settings) -> int:  # noqa: ANN001
    if args.format == "parquet" and args.out is None:
        print("--format parquet needs -o FILE", file=sys.stderr)
        return 2
    try:
        with connect_science(settings) as con:
            rel = con.sql(args.sql)
            if rel is None:
                print("ok")
                return 0
            if args.format == "parquet":
                rel.write_parquet(str(args.out))
                print(args.out)
                return 0
            columns, types, rows = rel.columns, [str(t) for t in rel.types], rel.fetchall()
    except AtedaError as exc:
        print(_one_line(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # duckdb's parser/binder/catalog errors: the user's SQL
        print(f"query failed: {_one_line(exc)}", file=sys.stderr)
        return 2
    return _write(args, format_rows(columns, rows, args.format, args.max_rows, types, args.max_width))


def cmd_cone(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        columns, types, rows = cone(settings, args.ra, args.dec, args.radius_arcsec, args.since, args.until,
                                    args.detections)
    except BadInput as exc:
        print(f"ateda cone: {exc}", file=sys.stderr)
        return 2
    except AtedaError as exc:
        print(_one_line(exc), file=sys.stderr)
        return 1
    return _write(args, format_rows(columns, rows, args.format, args.max_rows, types, args.max_width))


def _write(args, text: str) -> int:  # noqa: ANN001
    if args.out:
        args.out.write_text(text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def cmd_object(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        info = object_info(settings, args.object_id)
    except UnknownObject as exc:
        print(exc, file=sys.stderr)
        return 2
    except AtedaError as exc:
        print(_one_line(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=_json_default))
    else:
        sys.stdout.write(format_object(info))
    return 0


def cmd_refresh(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        result = refresh_models(settings, target=args.target, full_refresh=args.full_refresh, test=args.test,
                         select=args.select)
    except WarehouseError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    print(f"{result.target}: {len(result.models)} model(s) in {result.seconds:.1f} s, "
          f"{result.new_files} new bronze file(s)" + (f", {len(result.tests)} test(s) passed" if result.tests else ""))
    for name, n in result.rows.items():
        print(f"  {name:<32} {n:>10} rows")
    return 0


def format_rows(columns: list[str], rows: list[tuple], fmt: str, max_rows: int = 50, types: list[str] | None = None,
                max_width: int = MAX_WIDTH) -> str:
    """Rows as an aligned text table, CSV or JSON (one object per row). ``types``: the columns' DuckDB types (a
    ``FLOAT`` column is shown at single precision's full precision); ``max_width``: text cells longer than this are
    cut with an ellipsis (table only)."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], indent=1, default=_json_default) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        return buf.getvalue()
    types = list(types or [])
    kinds = [types[i] if i < len(types) else "" for i in range(len(columns))]
    shown = [[_cell(v, k, max_width) for v, k in zip(r, kinds)] for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    for r in shown:
        out.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)).rstrip())
    more = f" (showing {max_rows})" if len(rows) > max_rows else ""
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(out) + "\n"


def _cell(v: Any, kind: str = "", max_width: int = MAX_WIDTH) -> str:
    """One table cell: floats at full precision (never cut), other text cut to ``max_width`` with an ellipsis."""
    if v is None:
        return "NULL"
    if isinstance(v, float):
        # the shortest text that reads back to the same value; a FLOAT (REAL) column at single precision
        return str(np.float32(v)) if kind.upper() in ("FLOAT", "REAL", "FLOAT4") else repr(v)
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    text = f"<{len(v)} bytes>" if isinstance(v, bytes) else str(v)
    text = text.replace("\n", " ")
    if max_width > 0 and len(text) > max_width:
        return text[:max(1, max_width - 1)] + "…"
    return text


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)



def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_object(info: dict) -> str:
    o = info["object"]
    if o.get("survey") == "lsst":
        return _format_rubin_object(info)
    lines = [
        f"{o['objectId']}",
        f"  position      ra {o['meanra']:.8f}  dec {o['meandec']:+.8f} deg  ({sexagesimal(o['meanra'], o['meandec'])})"
        f"  sigma {_fmt(o['sigmara_arcsec'])}\" x {_fmt(o['sigmadec_arcsec'])}\"",
        f"  detections    {o['ndet']} ({o['ndubious']} dubious) in {o['n_alerts']} alert(s); "
        f"{o['n_non_detections']} upper limits; {o['n_forced_photometry']} forced photometry; "
        f"ndethist {o['ndethist'] if o['ndethist'] is not None else '-'}",
        f"  first / last  MJD {o['firstmjd']:.6f} ({iso_minute(o['firstmjd'])})  ->  MJD {o['lastmjd']:.6f} "
        f"({iso_minute(o['lastmjd'])}), {o['deltajd']:.2f} d",
        f"  flags         corrected {o['is_corrected']}  stellar {o['is_stellar']}  "
        f"transient candidate {info['is_transient_candidate']}",
        f"  real-bogus    rb {_fmt(o['last_rb'])}  drb {_fmt(o['last_drb'])} (latest alert {o['last_candid']})",
    ]
    if info["ps1"]:
        p = info["ps1"][0]
        lines.append(f"  PS1 nearest   {p['ps1_objid']} at {_fmt(p['dist_arcsec'], '.2f')}\"  sgscore "
                     f"{_fmt(p['sgscore'], '.2f')}  r {_fmt(p['rmag'], '.2f')}")
    for g in info["gaia"]:
        lines.append(f"  Gaia {g['match_kind']:<8} {_fmt(g['dist_arcsec'], '.2f')}\"  G {_fmt(g['gaia_mag'], '.2f')}")
    if info["solar_system"]:
        s = info["solar_system"][0]
        lines.append(f"  solar system  {s['ss_name']} at {_fmt(s['dist_arcsec'], '.1f')}\" "
                     f"({len(info['solar_system'])} alert(s))")
    for m in info.get("survey_match", []):
        lines.append(f"  also Rubin    diaObject {m['other']} at {_fmt(m['dist_arcsec'], '.2f')}\"")
    lines += _catalog_lines(info)
    lines.append("")
    cols = [("band", "band", "s"), ("ndet", "ndet", "d"), ("ndubious", "dub", "d"), ("magmean", "mean", ".3f"),
            ("magmedian", "median", ".3f"), ("magmin", "min", ".3f"), ("magmax", "max", ".3f"),
            ("magsigma", "sigma", ".3f"), ("magfirst", "first", ".3f"), ("maglast", "last", ".3f"),
            ("magmean_corr", "mean_corr", ".3f"), ("saturation_rate", "sat", ".2f"),
            ("dmdt_first", "dmdt_first", ".3f"), ("firstmjd", "firstmjd", ".6f")]
    header = "  ".join(f"{label:>10}" if label != "firstmjd" else f"{label:>12}" for _, label, _ in cols)
    lines += ["  magstats", "  " + header]
    for m in info["magstats"]:
        lines.append("  " + "  ".join(f"{_fmt(m[k], spec):>{12 if k == 'firstmjd' else 10}}" for k, _, spec in cols))
    return "\n".join(lines) + "\n"


def _catalog_lines(info: dict) -> list[str]:
    """The user catalogs' nearest sources (gold.object_catalog_match), one line each: the same for both surveys."""
    return [f"  catalog       {c['catalog']}: {c['match_id']} at {_fmt(c['dist_arcsec'], '.2f')}\" from the mean "
            f"position ({c['n_alerts_matched']} alert(s) matched, {c['n_sources']} source(s); "
            f"version {c['catalog_version']})" for c in info.get("catalogs", [])]


def _format_rubin_object(info: dict) -> str:
    """A Rubin diaObject: position, counts, the ZTF objects at the same place, flux statistics per band (nJy)."""
    o = info["object"]
    lines = [
        f"Rubin diaObject {o['objectId']}",
        f"  position      ra {o['meanra']:.8f}  dec {o['meandec']:+.8f} deg  ({sexagesimal(o['meanra'], o['meandec'])})",
        f"  detections    {o['ndet']} in {o['n_alerts']} alert(s); {o['n_forced_photometry']} forced photometry",
        f"  first / last  MJD {o['firstmjd']:.6f} ({iso_minute(o['firstmjd'])})  ->  MJD {o['lastmjd']:.6f} "
        f"({iso_minute(o['lastmjd'])}), {o['deltajd']:.2f} d (UTC)",
        f"  reliability   {_fmt(o['last_rb'])} (latest alert: diaSource {o['last_candid']})",
    ]
    for m in info.get("survey_match", []):
        lines.append(f"  also ZTF      {m['other']} at {_fmt(m['dist_arcsec'], '.2f')}\"")
    lines += _catalog_lines(info)
    cols = [("band", "band", "s"), ("ndata", "n", "d"), ("weighted_mean", "wmean", ".1f"),
            ("weighted_mean_err", "wmean_err", ".1f"), ("mean", "mean", ".1f"), ("sigma", "sigma", ".1f"),
            ("chi2_ndof", "chi2/ndof", ".2f"), ("min_flux", "min", ".1f"), ("max_flux", "max", ".1f"),
            ("max_slope", "max_slope", ".1f"), ("rubin_psfFluxMean", "rubin_mean", ".1f")]
    lines += ["", "  flux statistics (nJy; max_slope nJy/day; rubin_mean: Rubin's own psfFluxMean)",
              "  " + "  ".join(f"{label:>10}" for _, label, _ in cols)]
    for m in info.get("fluxstats", []):
        lines.append("  " + "  ".join(f"{_fmt(m[k], spec):>10}" for k, _, spec in cols))
    return "\n".join(lines) + "\n"


