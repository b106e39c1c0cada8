"""Plots of the warehouse's objects: light curve per band beside the latest alert's cutouts (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from astropy.visualization import ImageNormalize, LinearStretch, ZScaleInterval

from ateda.config import Settings
from ateda.warehouse.queries import Cutouts, ScienceError, connect_science, latest_cutouts, records

BANDS = {1: ("g", "#1a9850"), 2: ("r", "#d73027"), 3: ("i", "#b8860b")}  # ZTF g/r/i, colour-blind-safe pair
ZTF_PIXEL_ARCSEC = 1.01
CUTOUT_ORDER = (("science", "Science"), ("template", "Reference"), ("difference", "Difference"))


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
    alert's science/reference/difference cutouts. The format follows ``out``'s suffix (png, pdf, svg)."""
    with connect_science(settings) as con:
        obj = records(con, "select * from gold.object where objectId = ?", [object_id])
        if not obj:
            raise ScienceError(f"no object {object_id} in the warehouse (run `ateda refresh` after ingesting)")
        points = records(con, "select * from gold.lightcurve where objectId = ? order by mjd", [object_id])
        cutouts = latest_cutouts(con, object_id)
    fig = _figure(obj[0], points, cutouts)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    import matplotlib.pyplot as plt  # optional and heavy: loaded only when a plot is drawn

    plt.close(fig)
    return out


def _figure(obj: dict, points: list[dict], cutouts: Cutouts | None):  # noqa: ANN202
    import matplotlib  # optional and heavy: loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional and heavy: loaded only when a plot is drawn

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
                cax.set_title(f"latest alert {cutouts.candid}\n{iso_minute(cutouts.mjd)} UT", fontsize=9.5)
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
    import matplotlib.dates as mdates  # optional and heavy: loaded only when a plot is drawn
    from matplotlib.lines import Line2D  # optional and heavy: loaded only when a plot is drawn

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
    where = f"{sexagesimal(obj['meanra'], obj['meandec'])}  ({obj['meanra']:.5f}, {obj['meandec']:+.5f})"
    counts = (f"{obj['ndet']} det., {obj['n_non_detections']} limits"
              + (f", {obj['n_forced_photometry']} forced" if obj["n_forced_photometry"] else "")
              + (f"  [{', '.join(flags)}]" if flags else ""))
    ax.set_title(f"{where}    {counts}", loc="right", fontsize=10.5, pad=24)


def _draw_cutout(ax, image, label: str, diverging: bool, scale_bar: bool = False) -> None:  # noqa: ANN001
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
        from matplotlib.patheffects import withStroke  # optional and heavy: loaded only when a plot is drawn

        n = 10 / ZTF_PIXEL_ARCSEC
        x0, y0 = 3, 4
        ax.plot([x0, x0 + n], [y0, y0], color="white", lw=2.2, solid_capstyle="butt",
                path_effects=[withStroke(linewidth=4, foreground="black")])
        ax.text(x0 + n / 2, y0 + 1.5, "10\u2033", color="white", ha="center", va="bottom", fontsize=9,
                fontweight="bold", path_effects=[withStroke(linewidth=3, foreground="black")])
    ax.set_ylabel(label)
