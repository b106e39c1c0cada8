"""Looking at the science layers: ``ateda query``, ``ateda object``, ``ateda plot``, ``ateda refresh``.

Everything reads the local warehouse (DuckDB, ``$ATEDA_HOME/warehouse/ateda.duckdb``) read-only; ``refresh``
builds it from bronze with dbt (:mod:`ateda.warehouse.build`). Unqualified table names resolve in gold, then silver,
then bronze (``select * from object`` is ``gold.object``).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ateda.config import Settings
from ateda.errors import AtedaError

SEARCH_PATH = "gold,silver,bronze"
BANDS = {1: ("g", "#1a9850"), 2: ("r", "#d73027"), 3: ("i", "#b8860b")}  # ZTF g/r/i, colour-blind-safe pair
ZTF_PIXEL_ARCSEC = 1.01
CUTOUT_ORDER = (("science", "Science"), ("template", "Reference"), ("difference", "Difference"))


class ScienceError(AtedaError):
    """The object or the query cannot be answered from the warehouse."""


# ---------------------------------------------------------------- CLI

def register(sub) -> None:  # noqa: ANN001
    """Add query/object/plot/refresh to the ``ateda`` sub-command parser."""
    q = sub.add_parser("query", help="run SQL on the local warehouse (gold, silver, bronze)")
    q.add_argument("sql")
    q.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    q.add_argument("-o", "--out", type=Path, default=None, help="write here (required for parquet)")
    q.add_argument("--max-rows", type=int, default=50, help="table format: rows shown")
    q.set_defaults(func=cmd_query)
    o = sub.add_parser("object", help="an object's summary and magnitude statistics per band")
    o.add_argument("object_id", metavar="OBJECT_ID")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_object)
    p = sub.add_parser("plot", help="light curve per band beside the latest alert's cutouts, as a PNG/PDF")
    p.add_argument("object_id", metavar="OBJECT_ID")
    p.add_argument("-o", "--out", type=Path, default=None, help="default OBJECT_ID.png")
    p.add_argument("--dpi", type=int, default=200)
    p.set_defaults(func=cmd_plot)
    r = sub.add_parser("refresh", help="bring silver and gold up to date with bronze (dbt)")
    r.add_argument("--target", choices=("local", "cluster"), default="local")
    r.add_argument("--full-refresh", action="store_true", help="rebuild every model from all of bronze")
    r.add_argument("--test", action="store_true", help="dbt build: run the models' tests too")
    r.add_argument("--select", default=None, help="dbt node selection")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_refresh)


def cmd_query(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        with _connect(settings) as con:
            rel = con.sql(args.sql)
            if rel is None:
                print("ok")
                return 0
            if args.format == "parquet":
                if args.out is None:
                    print("--format parquet needs -o FILE", file=sys.stderr)
                    return 2
                rel.write_parquet(str(args.out))
                print(args.out)
                return 0
            columns, rows = rel.columns, rel.fetchall()
    except AtedaError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # duckdb's parser/binder/catalog errors: the user's SQL
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    text = format_rows(columns, rows, args.format, args.max_rows)
    if args.out:
        args.out.write_text(text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def cmd_object(args, settings: Settings) -> int:  # noqa: ANN001
    try:
        info = object_info(settings, args.object_id)
    except AtedaError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=1, default=_json_default))
    else:
        sys.stdout.write(format_object(info))
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


def cmd_refresh(args, settings: Settings) -> int:  # noqa: ANN001
    from ateda.warehouse.build import WarehouseError, refresh

    try:
        result = refresh(settings, target=args.target, full_refresh=args.full_refresh, test=args.test,
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


# ---------------------------------------------------------------- query

def _connect(settings: Settings):  # noqa: ANN202
    from ateda.warehouse.build import connect

    con = connect(settings, read_only=True)
    con.execute(f"set search_path = '{SEARCH_PATH}'")
    return con


def format_rows(columns: list[str], rows: list[tuple], fmt: str, max_rows: int = 50) -> str:
    """Rows as an aligned text table, CSV or JSON (one object per row)."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], indent=1, default=_json_default) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        return buf.getvalue()
    shown = [[_cell(v) for v in r] for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    for r in shown:
        out.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)).rstrip())
    more = f" (showing {max_rows})" if len(rows) > max_rows else ""
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return "\n".join(out) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.10g}"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return str(v)


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


# ---------------------------------------------------------------- object

def _records(con, sql: str, params: list) -> list[dict]:  # noqa: ANN001
    rel = con.execute(sql, params)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def object_info(settings: Settings, object_id: str) -> dict:
    """gold.object's row, gold.magstats per band, the nearest PS1/Gaia matches, the user catalogs' nearest sources
    and the transient verdict."""
    with _connect(settings) as con:
        obj = _records(con, "select * from gold.object where objectId = ?", [object_id])
        if not obj:
            raise ScienceError(f"no object {object_id} in the warehouse (run `ateda refresh` after ingesting)")
        info = {"object": obj[0]}
        info["magstats"] = _records(con, "select * from gold.magstats where objectId = ? order by fid", [object_id])
        last = obj[0]["last_candid"]
        info["ps1"] = _records(con, "select match_rank, ps1_objid, dist_arcsec, sgscore, rmag from "
                                    "silver.crossmatch_ps1 where candid = ? order by match_rank", [last])
        info["gaia"] = _records(con, "select match_kind, dist_arcsec, gaia_mag from silver.crossmatch_gaia "
                                     "where candid = ? order by match_kind desc", [last])
        info["solar_system"] = _records(con, "select candid, ss_name, dist_arcsec, ss_mag from silver.crossmatch_ss "
                                             "where objectId = ? order by candid", [object_id])
        info["catalogs"] = _records(con, "select catalog, catalog_version, match_id, dist_arcsec, n_sources, "
                                         "n_alerts_matched from gold.object_catalog_match where objectId = ? "
                                         "order by catalog", [object_id])
        info["is_transient_candidate"] = bool(con.execute(
            "select count(*) from gold.transient_candidates where objectId = ?", [object_id]).fetchone()[0])
    return info


def _sexagesimal(ra: float, dec: float) -> str:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(ra * u.deg, dec * u.deg).to_string("hmsdms", sep=":", precision=2)


def _iso(mjd: float | None) -> str:
    if mjd is None:
        return "-"
    from astropy.time import Time

    return Time(mjd, format="mjd").to_value("iso", subfmt="date_hm")


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_object(info: dict) -> str:
    o = info["object"]
    lines = [
        f"{o['objectId']}",
        f"  position      ra {o['meanra']:.6f}  dec {o['meandec']:+.6f} deg  ({_sexagesimal(o['meanra'], o['meandec'])})"
        f"  sigma {_fmt(o['sigmara_arcsec'])}\" x {_fmt(o['sigmadec_arcsec'])}\"",
        f"  detections    {o['ndet']} ({o['ndubious']} dubious) in {o['n_alerts']} alert(s); "
        f"{o['n_non_detections']} upper limits; {o['n_forced_photometry']} forced photometry; "
        f"ndethist {o['ndethist'] if o['ndethist'] is not None else '-'}",
        f"  first / last  MJD {o['firstmjd']:.5f} ({_iso(o['firstmjd'])})  ->  MJD {o['lastmjd']:.5f} "
        f"({_iso(o['lastmjd'])}), {o['deltajd']:.2f} d",
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
    for c in info["catalogs"]:
        lines.append(f"  catalog       {c['catalog']}: {c['match_id']} at {_fmt(c['dist_arcsec'], '.2f')}\" from the mean "
                     f"position ({c['n_alerts_matched']} alert(s) matched, {c['n_sources']} source(s); "
                     f"version {c['catalog_version']})")
    lines.append("")
    cols = [("band", "band", "s"), ("ndet", "ndet", "d"), ("ndubious", "dub", "d"), ("magmean", "mean", ".3f"),
            ("magmedian", "median", ".3f"), ("magmin", "min", ".3f"), ("magmax", "max", ".3f"),
            ("magsigma", "sigma", ".3f"), ("magfirst", "first", ".3f"), ("maglast", "last", ".3f"),
            ("magmean_corr", "mean_corr", ".3f"), ("saturation_rate", "sat", ".2f"),
            ("dmdt_first", "dmdt_first", ".3f"), ("firstmjd", "firstmjd", ".4f")]
    header = "  ".join(f"{label:>10}" for _, label, _ in cols)
    lines += ["  magstats", "  " + header]
    for m in info["magstats"]:
        lines.append("  " + "  ".join(f"{_fmt(m[k], spec):>10}" for k, _, spec in cols))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plot

@dataclass
class Cutouts:
    candid: int
    mjd: float
    images: dict[str, Any]  # kind -> 2-D array
    names: dict[str, str]  # kind -> the stamp's file name


def _latest_cutouts(con, object_id: str) -> Cutouts | None:  # noqa: ANN001
    """The three stamps of the object's latest alert that has them."""
    import numpy as np
    from astropy.io import fits

    row = con.execute(
        "select a.candid, a.mjd from silver.ztf_alert a where a.objectId = ? "
        "and a.candid in (select candid from bronze.cutout where objectId = ?) "
        "order by a.jd desc, a.candid desc limit 1", [object_id, object_id]).fetchone()
    if row is None:
        return None
    candid, mjd = row
    images, names = {}, {}
    for kind, name, data in con.execute(
            "select kind, file_name, stamp_data from bronze.cutout where candid = ?", [candid]).fetchall():
        names[kind] = name or ""
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with warnings.catch_warnings():  # ZTF stamps' SIMPLE card is not quite standard: harmless
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with fits.open(io.BytesIO(raw)) as hdul:
                images[kind] = np.asarray(hdul[0].data, dtype=float)
    return Cutouts(candid, mjd, images, names)


def plot_object(settings: Settings, object_id: str, out: Path, dpi: int = 200) -> Path:
    """Write the object's light curve (per band: detections, upper limits, forced photometry) beside the latest
    alert's science/reference/difference cutouts. The format follows ``out``'s suffix (png, pdf, svg)."""
    with _connect(settings) as con:
        obj = _records(con, "select * from gold.object where objectId = ?", [object_id])
        if not obj:
            raise ScienceError(f"no object {object_id} in the warehouse (run `ateda refresh` after ingesting)")
        points = _records(con, "select * from gold.lightcurve where objectId = ? order by mjd", [object_id])
        cutouts = _latest_cutouts(con, object_id)
    fig = _figure(obj[0], points, cutouts)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _figure(obj: dict, points: list[dict], cutouts: Cutouts | None):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 11, "axes.labelsize": 12, "axes.titlesize": 12, "legend.fontsize": 9.5,
        "xtick.direction": "in", "ytick.direction": "in", "xtick.top": False, "ytick.right": True,
        "axes.linewidth": 0.9, "savefig.bbox": "tight", "savefig.pad_inches": 0.12,
    })
    apparent = [p for p in points if p["point_kind"] == "detection" and p["mag_corr"] is not None]
    fig = plt.figure(figsize=(13.0, 6.6 if apparent else 6.2), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=[3.3, 1.0])
    if apparent:
        left = outer[0, 0].subgridspec(2, 1, height_ratios=[2.1, 1.0], hspace=0.0)
        ax = fig.add_subplot(left[0])
        ax_app = fig.add_subplot(left[1], sharex=ax)
    else:
        ax, ax_app = fig.add_subplot(outer[0, 0]), None
    _draw_lightcurve(ax, obj, points)
    if ax_app is not None:
        _draw_apparent(ax_app, apparent)
        ax.tick_params(labelbottom=False)
        ax.set_xlabel("")
    right = outer[0, 1].subgridspec(3, 1)
    if cutouts is not None:
        for row, (kind, label) in enumerate(CUTOUT_ORDER):
            cax = fig.add_subplot(right[row])
            if kind == "difference" and "refmsci" in cutouts.names.get(kind, ""):
                label = "Difference\n(ref \u2212 sci)"  # ZTF subtracts the other way for a negative detection
            _draw_cutout(cax, cutouts.images.get(kind), label, kind == "difference", scale_bar=row == 0)
            if row == 0:
                cax.set_title(f"latest alert {cutouts.candid}\n{_iso(cutouts.mjd)} UT", fontsize=9.5)
    return fig


def _draw_apparent(ax, detections: list[dict]) -> None:  # noqa: ANN001
    """Apparent magnitude of the corrected detections (reference flux + difference flux, ALeRCE's correction)."""
    for fid, (band, colour) in BANDS.items():
        sel = [p for p in detections if p["fid"] == fid]
        if not sel:
            continue
        err = [p["e_mag_corr"] if p["e_mag_corr"] is not None else 0.0 for p in sel]
        ax.errorbar([p["mjd"] for p in sel], [p["mag_corr"] for p in sel], yerr=err, fmt="D", ms=5,
                    color=colour, mec="white", mew=0.5, elinewidth=1.0, capsize=1.5, zorder=3)
    ax.invert_yaxis()
    ax.set_ylabel("Apparent mag\n(corrected)")
    ax.set_xlabel("MJD")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.margins(y=0.25)


def _draw_lightcurve(ax, obj: dict, points: list[dict]) -> None:  # noqa: ANN001
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D

    bands_seen = []
    for fid, (band, colour) in BANDS.items():
        det = [p for p in points if p["fid"] == fid and p["point_kind"] == "detection"]
        lim = [p for p in points if p["fid"] == fid and p["point_kind"] == "upper_limit"]
        fp = [p for p in points if p["fid"] == fid and p["point_kind"] == "forced"
              and p["isdiffpos"] and p["e_mag"] is not None and p["e_mag"] < 1.0857 / 3]  # S/N >= 3
        if not (det or lim or fp):
            continue
        bands_seen.append((band, colour))
        if lim:
            ax.scatter([p["mjd"] for p in lim], [p["mag"] for p in lim], marker=r"$\downarrow$", s=110,
                       color=colour, alpha=0.45, linewidths=0, zorder=2)
        if fp:
            ax.errorbar([p["mjd"] for p in fp], [p["mag"] for p in fp], yerr=[p["e_mag"] for p in fp],
                        fmt="s", ms=5.5, mfc="white", mec=colour, mew=1.2, ecolor=colour, elinewidth=0.9,
                        capsize=0, alpha=0.85, zorder=3)
        for positive in (True, False):
            sel = [p for p in det if bool(p["isdiffpos"]) is positive]
            if not sel:
                continue
            ax.errorbar([p["mjd"] for p in sel], [p["mag"] for p in sel], yerr=[p["e_mag"] for p in sel],
                        fmt="o", ms=6.5, mfc=colour if positive else "white", mec=colour, mew=1.2,
                        ecolor=colour, elinewidth=1.1, capsize=2, zorder=4)
    ax.invert_yaxis()
    ax.set_xlabel("MJD")
    ax.set_ylabel("Difference magnitude (AB)")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    top = ax.secondary_xaxis("top", functions=(lambda m: m - 40587.0, lambda d: d + 40587.0))
    top.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=7))
    top.xaxis.set_major_formatter(mdates.ConciseDateFormatter(  # day ticks carry their month: "Jun 08"
        top.xaxis.get_major_locator(), formats=["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%S.%f"],
        offset_formats=["", "%Y", "%Y", "%Y-%b-%d", "%Y-%b-%d", "%Y-%b-%d %H:%M"]))
    top.tick_params(direction="in", labelsize=9.5)

    handles = [Line2D([], [], ls="", marker="o", ms=7, color=c, label=f"ZTF {b}") for b, c in bands_seen]
    kinds = {p["point_kind"] for p in points}
    grey = "0.35"
    handles.append(Line2D([], [], ls="", marker="o", ms=7, color=grey, label="detection"))
    if any(p["point_kind"] == "detection" and p["isdiffpos"] is False for p in points):
        handles.append(Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec=grey, label="negative difference"))
    if "upper_limit" in kinds:
        handles.append(Line2D([], [], ls="", marker=r"$\downarrow$", ms=11, color=grey, alpha=0.6,
                              label="5$\\sigma$ upper limit"))
    if "forced" in kinds:
        handles.append(Line2D([], [], ls="", marker="s", ms=6, mfc="white", mec=grey, label="forced phot. (S/N$\\geq$3)"))
    ax.figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False,
                     handletextpad=0.3, columnspacing=1.6)

    flags = []
    if obj.get("is_stellar"):
        flags.append("stellar")
    if obj.get("min_ssdist_arcsec") is not None and obj["min_ssdist_arcsec"] < 5:
        flags.append("near a known solar-system object")
    ax.set_title(obj["objectId"], loc="left", fontsize=13, fontweight="bold", pad=24)
    where = f"{_sexagesimal(obj['meanra'], obj['meandec'])}  ({obj['meanra']:.5f}, {obj['meandec']:+.5f})"
    counts = (f"{obj['ndet']} det., {obj['n_non_detections']} limits"
              + (f", {obj['n_forced_photometry']} forced" if obj["n_forced_photometry"] else "")
              + (f"  [{', '.join(flags)}]" if flags else ""))
    ax.set_title(f"{where}    {counts}", loc="right", fontsize=10.5, pad=24)


def _draw_cutout(ax, image, label: str, diverging: bool, scale_bar: bool = False) -> None:  # noqa: ANN001
    import numpy as np
    from astropy.visualization import ImageNormalize, LinearStretch, ZScaleInterval

    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.text(0.5, 0.5, "no stamp", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set_ylabel(label)
        return
    data = np.where(np.isfinite(image), image, np.nanmedian(image))
    if diverging:  # symmetric about zero: positive (brighter than the reference) red, negative blue
        cy, cx = (np.array(data.shape) - 1) // 2
        centre = data[cy - 4:cy + 5, cx - 4:cx + 5]  # the candidate's own pixels, 3x3-smoothed: not a hot pixel
        peak = float(np.max(np.abs(np.lib.stride_tricks.sliding_window_view(centre, (3, 3)).mean(axis=(-1, -2)))))
        noise = 1.4826 * float(np.median(np.abs(data - np.median(data))))
        lim = max(peak, 5 * noise) or 1.0
        ax.imshow(data, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    else:
        norm = ImageNormalize(data, interval=ZScaleInterval(), stretch=LinearStretch())
        ax.imshow(data, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    cy, cx = (np.array(data.shape) - 1) / 2.0
    for dx, dy in ((1, 0), (0, 1)):  # a reticle pointing at the candidate, leaving the centre clear
        for sign in (-1, 1):
            ax.plot([cx + sign * dx * 4, cx + sign * dx * 9], [cy + sign * dy * 4, cy + sign * dy * 9],
                    color="#ffb000", lw=1.4, solid_capstyle="butt")
    if scale_bar:  # ZTF pixels are 1.01 arcsec; a dark outline keeps the bar legible over a bright star
        from matplotlib.patheffects import withStroke

        n = 10 / ZTF_PIXEL_ARCSEC
        x0, y0 = 3, 4
        ax.plot([x0, x0 + n], [y0, y0], color="white", lw=2.2, solid_capstyle="butt",
                path_effects=[withStroke(linewidth=4, foreground="black")])
        ax.text(x0 + n / 2, y0 + 1.5, "10\u2033", color="white", ha="center", va="bottom", fontsize=9,
                fontweight="bold", path_effects=[withStroke(linewidth=3, foreground="black")])
    ax.set_ylabel(label)
