"""Plots of the warehouse's objects: light curve per band beside the latest alert's stamps (matplotlib).

Made to be shown to people: band colours from the Okabe-Ito palette (safe for colour-blind readers) and a marker of
their own per band; upper limits are arrows; each stamp has N/E arrows, a 10-arcsec bar and a colour bar in its
pixel unit; saturated or blank pixels (NaN, or a flat top at the stamp's maximum) have a colour of their own; a
missing stamp is a labelled empty panel; the legend lists only what is drawn. Stamps come from bronze
(``lake/cutouts.py``: gzipped FITS, FITS, JPEG or PNG), the light curve from gold.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from astropy.visualization import ImageNormalize, LinearStretch, ZScaleInterval

from ateda.config import Settings
from ateda.lake.cutouts import KINDS, AlertStamps, Stamp, latest_stamps
from ateda.warehouse.queries import UnknownObject, connect_science, records, unknown_object_message

# fid -> (band, colour, marker): Okabe-Ito blue / vermillion / reddish purple, and three marker shapes, so bands
# differ by shape too (print in grey, colour-blind readers).
BANDS = {1: ("g", "#0072B2", "o"), 2: ("r", "#D55E00", "s"), 3: ("i", "#CC79A7", "D")}
# Rubin's fid (gold.lightcurve: the band's number, u 1 .. y 6) -> (band, colour, marker): six Okabe-Ito colours (not
# the yellow of saturated pixels) and six shapes
LSST_BANDS = {1: ("u", "#CC79A7", "v"), 2: ("g", "#009E73", "o"), 3: ("r", "#D55E00", "s"),
              4: ("i", "#E69F00", "D"), 5: ("z", "#0072B2", "^"), 6: ("y", "#000000", "P")}
LSST_PIXEL_ARCSEC = 0.2
NEUTRAL = "0.35"
SATURATED = "#F0E442"  # Okabe-Ito yellow: saturated (flat-topped) or blank pixels, on the grey and the red-blue maps
RETICLE = "#009E73"  # Okabe-Ito bluish green: the marks around the candidate
ZTF_PIXEL_ARCSEC = 1.01
STAMP_LABELS = {"science": "Science", "template": "Reference", "difference": "Difference"}
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
MIN_SPAN_DAYS = 2.0  # the light curve's time axis spans at least this
FORCED_SNR = 3.0  # forced photometry drawn: positive flux with S/N >= 3 (e_mag < 1.0857 / 3)


def sexagesimal(ra: float, dec: float) -> str:
    """ra, dec (deg) as hh:mm:ss.ss +dd:mm:ss.s."""
    return SkyCoord(ra * u.deg, dec * u.deg).to_string("hmsdms", sep=":", precision=2)


def iso_minute(mjd: float | None) -> str:
    """An MJD as an ISO date to the minute (UTC); "-" for None."""
    if mjd is None:
        return "-"
    return Time(mjd, format="mjd").to_value("iso", subfmt="date_hm")


def plot_object(settings: Settings, object_id: str, out: Path, dpi: int = 200) -> Path:
    """Write the object's light curve (per band: detections, upper limits, forced photometry) beside the latest
    alert's science/reference/difference stamps. The format follows ``out``'s suffix (png, pdf, svg)."""
    fig = object_figure(settings, object_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=dpi)
    finally:
        _pyplot().close(fig)
    return out


def object_figure(settings: Settings, object_id: str):  # noqa: ANN201
    """The figure :func:`plot_object` saves (a matplotlib Figure, drawn with the Agg backend)."""
    with connect_science(settings) as con:
        obj = records(con, "select * from gold.object where objectId = ?", [object_id])
        if not obj:
            raise UnknownObject(unknown_object_message(settings, object_id))
        points = records(con, "select * from gold.lightcurve where objectId = ? order by mjd", [object_id])
    return _figure(obj[0], points, latest_stamps(settings, object_id))


def _pyplot():  # noqa: ANN202
    """matplotlib.pyplot on the Agg backend, with matplotlib's own INFO lines (the font cache) kept quiet."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib  # optional and heavy: loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional and heavy: loaded only when a plot is drawn

    return plt


def _figure(obj: dict, points: list[dict], stamps: AlertStamps | None):  # noqa: ANN202
    plt = _pyplot()
    plt.rcParams.update({
        "font.size": 11, "axes.labelsize": 12, "axes.titlesize": 12, "legend.fontsize": 9.5,
        "xtick.direction": "in", "ytick.direction": "in", "xtick.top": False, "ytick.right": True,
        "axes.linewidth": 0.9, "savefig.bbox": "tight", "savefig.pad_inches": 0.12,
    })
    if obj.get("survey") == "lsst":
        apparent = [p for p in points if p["mag"] is not None and p["point_kind"] == "detection"]
    else:
        apparent = [p for p in points if p["point_kind"] == "detection" and p["mag_corr"] is not None]
    fig = plt.figure(figsize=(14.0, 7.4 if apparent else 6.8), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=[3.0, 1.15])
    if apparent:
        left = outer[0, 0].subgridspec(2, 1, height_ratios=[2.1, 1.0], hspace=0.0)
        ax = fig.add_subplot(left[0])
        ax_app = fig.add_subplot(left[1], sharex=ax)
    else:
        ax, ax_app = fig.add_subplot(outer[0, 0]), None
    legend = _Legend("Rubin" if obj.get("survey") == "lsst" else "ZTF")
    if obj.get("survey") == "lsst":
        _draw_flux(ax, points, legend)
    else:
        _draw_lightcurve(ax, points, legend)
    _title(fig, ax, obj)
    if ax_app is not None:
        (_draw_ab if obj.get("survey") == "lsst" else _draw_apparent)(ax_app, apparent, legend)
        ax.tick_params(labelbottom=False)
        ax.set_xlabel("")
    right = outer[0, 1].subgridspec(3, 1)
    for row, kind in enumerate(KINDS):
        cax = fig.add_subplot(right[row])
        stamp = stamps.stamps.get(kind) if stamps else None
        label = STAMP_LABELS[kind]
        if stamp is not None and kind == "difference" and "refmsci" in stamp.file_name:
            label = "Difference\n(ref \u2212 sci)"  # ZTF subtracts the other way for a negative detection
        if stamp is None:
            why = (f"no {STAMP_LABELS[kind].lower()} stamp\nin alert {stamps.candid}" if stamps
                   else "no stamps in bronze\nfor this object")
            _draw_missing(cax, label, why)
        else:
            _draw_stamp(cax, stamp, label, kind == "difference", orientation=row == 0, legend=legend,
                        survey=stamps.survey)
        if row == 0:
            cax.set_title(f"latest alert {stamps.candid}\n{iso_minute(stamps.mjd)} UT" if stamps
                          else "latest alert: none with stamps", fontsize=9.5)
    legend.draw(fig)
    return fig


class _Legend:
    """The figure's one legend, filled by what is actually drawn (bands, then kinds of point, then pixel marks)."""

    def __init__(self, survey: str = "ZTF") -> None:
        self.survey = survey
        self.bands: dict[int, object] = {}
        self.kinds: dict[str, object] = {}

    def band(self, fid: int) -> None:
        from matplotlib.lines import Line2D  # optional and heavy: loaded only when a plot is drawn

        band, colour, marker = (LSST_BANDS if self.survey == "Rubin" else BANDS)[fid]
        self.bands.setdefault(fid, Line2D([], [], ls="", marker=marker, ms=7, color=colour,
                                          label=f"{self.survey} {band}"))

    def kind(self, name: str, handle) -> None:  # noqa: ANN001
        self.kinds.setdefault(name, handle)

    def draw(self, fig) -> None:  # noqa: ANN001
        handles = [self.bands[f] for f in sorted(self.bands)] + [self.kinds[k] for k in KIND_ORDER if k in self.kinds]
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), frameon=False,
                       handletextpad=0.3, columnspacing=1.4)


KIND_ORDER = ("detection", "negative", "limit", "forced", "forced_flux", "corrected", "saturated")


def _kind_handle(name: str):  # noqa: ANN202
    from matplotlib.lines import Line2D  # optional and heavy: loaded only when a plot is drawn
    from matplotlib.patches import Patch  # optional and heavy: loaded only when a plot is drawn

    return {
        "detection": lambda: Line2D([], [], ls="", marker="o", ms=7, color=NEUTRAL, label="detection (filled)"),
        "negative": lambda: Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec=NEUTRAL,
                                   label="negative difference (open)"),
        "limit": lambda: Line2D([], [], ls="", marker=r"$\downarrow$", ms=11, color=NEUTRAL,
                                label="5$\\sigma$ upper limit"),
        "forced": lambda: Line2D([], [], ls="", marker="o", ms=5, color=NEUTRAL, alpha=0.45,
                                 label=f"forced phot. (S/N$\\geq${FORCED_SNR:g}, faint)"),
        "forced_flux": lambda: Line2D([], [], ls="", marker="o", ms=5, color=NEUTRAL, alpha=0.45,
                                      label="forced photometry"),
        "corrected": lambda: Line2D([], [], ls="-", lw=0.8, marker="o", ms=5, color=NEUTRAL,
                                    label="apparent mag (lower panel)"),
        "saturated": lambda: Patch(facecolor=SATURATED, edgecolor="0.3", label="saturated / blank pixel"),
    }[name]()


def _title(fig, ax, obj: dict) -> None:  # noqa: ANN001
    """The object id as the figure's title; position and counts on two lines above the light curve (no two titles
    share a line, so none can run into another)."""
    flags = []
    if obj.get("is_stellar"):
        flags.append("stellar")
    if obj.get("min_ssdist_arcsec") is not None and obj["min_ssdist_arcsec"] < 5:
        flags.append("near a known solar-system object")
    rubin = obj.get("survey") == "lsst"
    fig.suptitle(f"Rubin diaObject {obj['objectId']}" if rubin else obj["objectId"], x=0.01, ha="left", fontsize=14,
                 fontweight="bold")
    where = f"{sexagesimal(obj['meanra'], obj['meandec'])}  ({obj['meanra']:.5f}, {obj['meandec']:+.5f})"
    counts = (f"{obj['ndet']} det." + ("" if rubin else f", {obj['n_non_detections']} limits")
              + (f", {obj['n_forced_photometry']} forced" if obj["n_forced_photometry"] else "")
              + (f"  [{', '.join(flags)}]" if flags else ""))
    ax.set_title(f"{where}\n{counts}", loc="left", fontsize=10.5, pad=30)


def _draw_lightcurve(ax, points: list[dict], legend: _Legend) -> None:  # noqa: ANN001
    import matplotlib.dates as mdates  # optional and heavy: loaded only when a plot is drawn

    mags = [p["mag"] for p in points if p["mag"] is not None]
    arrow = 0.05 * max(max(mags) - min(mags), 1.0) if mags else 0.2  # upper-limit arrows: 5% of the range, in mag
    for fid, (_, colour, marker) in BANDS.items():
        det = [p for p in points if p["fid"] == fid and p["point_kind"] == "detection" and p["mag"] is not None]
        lim = [p for p in points if p["fid"] == fid and p["point_kind"] == "upper_limit" and p["mag"] is not None]
        fp = [p for p in points if p["fid"] == fid and p["point_kind"] == "forced" and p["mag"] is not None
              and p["isdiffpos"] and p["e_mag"] is not None and p["e_mag"] < 1.0857 / FORCED_SNR]
        if not (det or lim or fp):
            continue
        legend.band(fid)
        if lim:  # the limit as a bar, an arrow from it towards fainter magnitudes (down: the axis is inverted)
            x, y = [p["mjd"] for p in lim], np.array([p["mag"] for p in lim])
            ax.vlines(x, y, y + arrow, color=colour, alpha=0.55, lw=1.0, zorder=2)
            ax.scatter(x, y + arrow, marker="v", s=22, color=colour, alpha=0.55, linewidths=0, zorder=2)
            ax.scatter(x, y, marker="_", s=50, color=colour, alpha=0.55, linewidths=1.2, zorder=2)
            legend.kind("limit", _kind_handle("limit"))
        if fp:
            ax.errorbar([p["mjd"] for p in fp], [p["mag"] for p in fp], yerr=[p["e_mag"] for p in fp],
                        fmt=marker, ms=4.5, color=colour, alpha=0.45, elinewidth=0.8, capsize=0, zorder=3)
            legend.kind("forced", _kind_handle("forced"))
        for positive in (True, False):
            sel = [p for p in det if bool(p["isdiffpos"]) is positive]
            if not sel:
                continue
            ax.errorbar([p["mjd"] for p in sel], [p["mag"] for p in sel],
                        yerr=[p["e_mag"] or 0.0 for p in sel], fmt=marker, ms=6.5,
                        mfc=colour if positive else "white", mec=colour, mew=1.3, ecolor=colour, elinewidth=1.1,
                        capsize=2, zorder=4)
            legend.kind("detection" if positive else "negative", _kind_handle("detection" if positive
                                                                             else "negative"))
    ax.invert_yaxis()
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")  # whole MJDs, never "1.5 + 5.81e4"
    ax.set_xlabel("MJD")
    ax.set_ylabel("Difference magnitude (AB)")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.margins(x=0.04, y=0.12)
    times = [p["mjd"] for p in points if p["mjd"] is not None]
    if times and max(times) - min(times) < MIN_SPAN_DAYS:  # one night: a day either side, so dates can be ticked
        mid = (max(times) + min(times)) / 2
        ax.set_xlim(mid - MIN_SPAN_DAYS / 2, mid + MIN_SPAN_DAYS / 2)
    top = ax.secondary_xaxis("top", functions=(lambda m: m - 40587.0, lambda d: d + 40587.0))
    top.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))  # min 5 + max 6 can fit nothing
    top.xaxis.set_major_formatter(mdates.ConciseDateFormatter(  # day ticks carry their month: "Jun 08"
        top.xaxis.get_major_locator(), formats=["%Y", "%b", "%b %d", "%H:%M", "%H:%M", "%S.%f"],
        offset_formats=["", "%Y", "%Y", "%Y-%b-%d", "%Y-%b-%d", "%Y-%b-%d %H:%M"]))
    top.tick_params(direction="in", labelsize=9.5)


def _draw_flux(ax, points: list[dict], legend: _Legend) -> None:  # noqa: ANN001
    """Rubin: difference flux (nJy) per band, detections filled, forced photometry faded; zero marked. Fluxes, not
    magnitudes: a forced flux near or below zero is a measurement too, and has no magnitude."""
    for fid, (_, colour, marker) in LSST_BANDS.items():
        det = [p for p in points if p["fid"] == fid and p["point_kind"] == "detection" and p["flux"] is not None]
        fp = [p for p in points if p["fid"] == fid and p["point_kind"] == "forced" and p["flux"] is not None]
        if not (det or fp):
            continue
        legend.band(fid)
        if fp:
            ax.errorbar([p["mjd"] for p in fp], [p["flux"] for p in fp], yerr=[p["flux_err"] or 0.0 for p in fp],
                        fmt=marker, ms=4.5, color=colour, alpha=0.45, elinewidth=0.8, capsize=0, zorder=3)
            legend.kind("forced_flux", _kind_handle("forced_flux"))
        if det:
            ax.errorbar([p["mjd"] for p in det], [p["flux"] for p in det], yerr=[p["flux_err"] or 0.0 for p in det],
                        fmt=marker, ms=6.5, color=colour, mec=colour, ecolor=colour, elinewidth=1.1, capsize=2,
                        zorder=4)
            legend.kind("detection", _kind_handle("detection"))
    ax.axhline(0.0, color="0.5", lw=0.8, zorder=1)
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel("MJD (UTC)")
    ax.set_ylabel("Difference flux (nJy)")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.margins(x=0.04, y=0.12)
    times = [p["mjd"] for p in points if p["mjd"] is not None]
    if times and max(times) - min(times) < MIN_SPAN_DAYS:
        mid = (max(times) + min(times)) / 2
        ax.set_xlim(mid - MIN_SPAN_DAYS / 2, mid + MIN_SPAN_DAYS / 2)


def _draw_ab(ax, detections: list[dict], legend: _Legend) -> None:  # noqa: ANN001
    """Rubin: AB magnitude (31.4 - 2.5 log10 flux) of the detections with a positive flux."""
    for fid, (_, colour, marker) in LSST_BANDS.items():
        sel = [p for p in detections if p["fid"] == fid]
        if not sel:
            continue
        legend.band(fid)
        ax.errorbar([p["mjd"] for p in sel], [p["mag"] for p in sel], yerr=[p["e_mag"] or 0.0 for p in sel],
                    fmt=marker, ms=5, color=colour, mec="white", mew=0.5, elinewidth=1.0, capsize=1.5, zorder=3)
    ax.invert_yaxis()
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_ylabel("AB mag\n(flux > 0)")
    ax.set_xlabel("MJD (UTC)")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.margins(y=0.25)


def _draw_apparent(ax, detections: list[dict], legend: _Legend) -> None:  # noqa: ANN001
    """Apparent magnitude of the corrected detections (reference flux + difference flux, ALeRCE's correction)."""
    for fid, (_, colour, marker) in BANDS.items():
        sel = [p for p in detections if p["fid"] == fid]
        if not sel:
            continue
        legend.band(fid)
        err = [p["e_mag_corr"] if p["e_mag_corr"] is not None else 0.0 for p in sel]
        ax.errorbar([p["mjd"] for p in sel], [p["mag_corr"] for p in sel], yerr=err, fmt=marker, ms=5,
                    color=colour, mec="white", mew=0.5, elinewidth=1.0, capsize=1.5, zorder=3)
    ax.invert_yaxis()
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_ylabel("Apparent mag\n(corrected)")
    ax.set_xlabel("MJD")
    ax.grid(True, color="0.88", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.margins(y=0.25)


def _draw_missing(ax, label: str, why: str) -> None:  # noqa: ANN001
    """A labelled empty panel where a stamp should be: the reader sees it is missing, not that the layout shrank."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("0.95")
    ax.set_aspect("equal")
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.35", fontsize=9.5)
    ax.set_ylabel(label)


def saturated_mask(image: np.ndarray) -> np.ndarray:
    """Pixels drawn as saturated or blank: NaN/inf, and a flat top (two or more pixels at the stamp's maximum: a
    saturated core, or JPEG's clipped white)."""
    bad = ~np.isfinite(image)
    if bad.all():
        return bad
    top = np.nanmax(np.where(bad, np.nan, image))
    flat = image == top
    return bad | flat if flat.sum() >= 2 else bad


def _draw_stamp(ax, stamp: Stamp, label: str, diverging: bool, orientation: bool,  # noqa: ANN001
                legend: _Legend, survey: str = "ztf") -> None:
    from matplotlib import colormaps  # optional and heavy: loaded only when a plot is drawn

    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(label)
    try:
        image = stamp.image()
    except (ValueError, OSError) as exc:  # bytes no decoder reads: say so in the panel, draw the rest
        _draw_missing(ax, label, f"unreadable {stamp.format} stamp\n({type(exc).__name__})")
        return
    mask = saturated_mask(image)
    good = image[~mask] if (~mask).any() else np.zeros(1)
    data = np.ma.masked_array(np.where(mask, 0.0, image), mask=mask)
    pixels_are_flux = stamp.format in ("fits.gz", "fits")
    if diverging and pixels_are_flux:  # symmetric about zero: positive (brighter than the reference) red
        cmap = colormaps["RdBu_r"].with_extremes(bad=SATURATED)
        filled = np.where(mask, np.median(good), image)
        cy, cx = (np.array(image.shape) - 1) // 2
        centre = filled[max(cy - 4, 0):cy + 5, max(cx - 4, 0):cx + 5]  # the candidate's pixels, 3x3-smoothed
        peak = float(np.max(np.abs(np.lib.stride_tricks.sliding_window_view(centre, (3, 3)).mean(axis=(-1, -2)))))
        noise = 1.4826 * float(np.median(np.abs(good - np.median(good))))
        lim = max(peak, 5 * noise) or 1.0
        im = ax.imshow(data, origin="lower", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    else:
        cmap = colormaps["gray"].with_extremes(bad=SATURATED)
        norm = ImageNormalize(good, interval=ZScaleInterval(), stretch=LinearStretch())
        im = ax.imshow(data, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
    if mask.any():
        legend.kind("saturated", _kind_handle("saturated"))
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.08, pad=0.03)
    bar.set_label(stamp_unit(stamp, survey), fontsize=8.5)
    bar.ax.tick_params(labelsize=7.5)
    height, width = image.shape
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    for dx, dy in ((1, 0), (0, 1)):  # a reticle pointing at the candidate, leaving the centre clear
        for sign in (-1, 1):
            ax.plot([cx + sign * dx * 4, cx + sign * dx * 9], [cy + sign * dy * 4, cy + sign * dy * 9],
                    color=RETICLE, lw=1.6, solid_capstyle="butt")
    if orientation:
        _orientation(ax, width, height, LSST_PIXEL_ARCSEC if survey == "lsst" else ZTF_PIXEL_ARCSEC,
                     arrows=survey != "lsst")


def stamp_unit(stamp: Stamp, survey: str = "ztf") -> str:
    """The colour bar's label: FITS stamps are in their survey's pixel unit (ZTF: DN; Rubin: nJy, calibrated);
    JPEG/PNG are already scaled grey."""
    if stamp.format not in ("fits.gz", "fits"):
        return f"{stamp.format.upper()} grey level (no flux)"
    return "flux (nJy)" if survey == "lsst" else "flux (DN)"


def _orientation(ax, width: int, height: int, pixel_arcsec: float = ZTF_PIXEL_ARCSEC,  # noqa: ANN001
                 arrows: bool = True) -> None:
    """A 10-arcsec bar (shorter if the stamp is narrower; ZTF pixels are 1.01 arcsec, Rubin's 0.2) and N/E arrows (ZTF stamps carry no WCS and are
    cut north up, east left; Rubin's follow the detector's rotation, so no arrows are drawn for them)."""
    from matplotlib.patheffects import withStroke  # optional and heavy: loaded only when a plot is drawn

    outline = [withStroke(linewidth=3, foreground="black")]
    bar_arcsec = next((a for a in (10, 5, 2, 1) if a / pixel_arcsec <= 0.6 * width), 1)
    n = bar_arcsec / pixel_arcsec
    x0, y0 = 0.06 * width, 0.07 * height
    ax.plot([x0, x0 + n], [y0, y0], color="white", lw=2.2, solid_capstyle="butt",
            path_effects=[withStroke(linewidth=4, foreground="black")])
    ax.text(x0 + n / 2, y0 + 1.2, f"{bar_arcsec}\u2033", color="white", ha="center", va="bottom", fontsize=8.5,
            fontweight="bold", path_effects=outline)
    if not arrows:
        return
    ox, oy, length = 0.9 * width, 0.68 * height, 0.2 * width
    for dx, dy, name in ((0, length, "N"), (-length, 0, "E")):
        ax.annotate("", xy=(ox + dx, oy + dy), xytext=(ox, oy),
                    arrowprops=dict(arrowstyle="-|>", color="white", lw=1.4, shrinkA=0, shrinkB=0,
                                    path_effects=outline))
        ax.text(ox + dx * 1.28, oy + dy * 1.2, name, color="white", ha="center", va="center", fontsize=8.5,
                fontweight="bold", path_effects=outline)


def stamp_png(stamp: Stamp, stretch: str = "zscale", cmap: str = "gray") -> bytes:
    """One stamp as a PNG of its own pixels (one PNG pixel per stamp pixel, north up as FITS stores it): ``zscale``
    (linear between IRAF's zscale limits) or ``asinh`` (over the 0.5-99.5 percentile range); ``cmap`` a matplotlib
    colour map name (KeyError if there is none), saturated or blank pixels in :data:`SATURATED`. ValueError if the
    bytes are no image (:meth:`Stamp.image`)."""
    from astropy.visualization import AsinhStretch, PercentileInterval  # heavy: loaded only when a stamp is drawn
    from matplotlib import colormaps  # optional and heavy: loaded only when a stamp is drawn
    from PIL import Image  # optional and heavy (Pillow, matplotlib's): loaded only when a stamp is drawn

    colours = colormaps[cmap]  # KeyError: no such map
    image = stamp.image()
    mask = saturated_mask(image)
    good = image[~mask] if (~mask).any() else np.zeros(1)
    if stretch == "asinh":
        norm = ImageNormalize(good, interval=PercentileInterval(99.0), stretch=AsinhStretch(), clip=True)
    else:
        norm = ImageNormalize(good, interval=ZScaleInterval(), stretch=LinearStretch(), clip=True)
    scaled = np.ma.filled(norm(np.where(mask, np.median(good), image)), 0.0)
    rgba = colours(np.clip(scaled, 0.0, 1.0), bytes=True)
    rgba[mask] = [int(SATURATED[i:i + 2], 16) for i in (1, 3, 5)] + [255]
    out = io.BytesIO()
    Image.fromarray(rgba[::-1], mode="RGBA").save(out, format="PNG")  # row 0 at the top in a PNG
    return out.getvalue()
