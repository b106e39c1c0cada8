// One object: summary, the light curve per band (plotly: error bars, upper limits as down arrows, forced photometry
// as hollow markers with legend entries of their own; legend toggles, zoom), the stamps of the alert whose
// detection is clicked, per-band statistics, crossmatches, survey matches, and the object elsewhere by position.
import {
  $, api, apiUrl, BANDS, dms, facts, FONT, formatCell, h, hms, mjdToIso, objectHref, PLOT_CONFIG, rowsOf, status,
  SURVEY_NAMES, table,
} from "./common.js";

const OBJECT_ID = $("page").dataset.objectId;
const FORCED_SNR = 3; // ZTF forced photometry shown as a magnitude: positive flux with S/N >= 3 (as the PNG plot)
const STAMP_KINDS = ["science", "template", "difference"];
const state = { survey: "ztf", alerts: new Map(), selected: null, stretch: "zscale" };

// ---- the light curve -------------------------------------------------------------------------------------------

function hover(kind, unit) {
  const value = unit === "flux" ? "%{y:.1f} ± %{error_y.array:.1f} nJy" : "%{y:.3f} ± %{error_y.array:.3f} mag";
  const what = { detection: "detection", forced: "forced photometry", upper_limit: "5σ upper limit" }[kind];
  const limit = kind === "upper_limit" ? "fainter than %{y:.2f} mag" : value;
  return `<b>%{fullData.meta.label}</b> ${what}<br>MJD %{x:.5f} (%{customdata[2]} UTC)<br>${limit}`
    + (kind === "detection" ? "<br>id %{customdata[0]}%{customdata[3]}" : "") + "<extra></extra>";
}

// customdata of a point: [point id (string), kind, ISO time, note]
function custom(points, kind, note = () => "") {
  return points.map((p) => [p.candid != null ? String(p.candid) : String(p.point_id ?? ""), kind, mjdToIso(p.mjd),
    note(p)]);
}

function stampNote(p) {
  return p.candid != null && state.alerts.has(String(p.candid)) ? " · click for stamps" : "";
}

function ztfTraces(points) {
  const traces = [];
  let hiddenForced = 0;
  for (const [fid, style] of Object.entries(BANDS.ztf)) {
    const band = points.filter((p) => String(p.fid) === fid && p.mag !== null && p.mag !== undefined);
    const label = `ZTF ${style.band}`;
    const det = band.filter((p) => p.point_kind === "detection")
      .sort((a, b) => Number(b.isdiffpos !== false) - Number(a.isdiffpos !== false)); // legend shows a filled marker
    const lim = band.filter((p) => p.point_kind === "upper_limit");
    const forcedAll = band.filter((p) => p.point_kind === "forced");
    const fp = forcedAll.filter((p) => p.isdiffpos && p.e_mag != null && p.e_mag < 1.0857 / FORCED_SNR);
    hiddenForced += forcedAll.length - fp.length;
    const own = [];
    if (lim.length) {
      own.push({
        type: "scatter", mode: "markers", name: `${style.band} upper limit`, legendgroup: `${fid}-limit`,
        x: lim.map((p) => p.mjd), y: lim.map((p) => p.mag), customdata: custom(lim, "upper_limit"),
        marker: { symbol: "arrow-bar-down", size: 11, color: style.colour, opacity: 0.55, line: { width: 1.5, color: style.colour } },
        meta: { fid: Number(fid), band: style.band, kind: "upper_limit", panel: "mag", label },
        hovertemplate: hover("upper_limit", "mag"),
      });
    }
    if (fp.length) {
      own.unshift({
        type: "scatter", mode: "markers", name: `${style.band} forced phot.`, legendgroup: `${fid}-forced`,
        x: fp.map((p) => p.mjd), y: fp.map((p) => p.mag), customdata: custom(fp, "forced"),
        error_y: { type: "data", array: fp.map((p) => p.e_mag), color: style.colour, thickness: 0.8, width: 0 },
        marker: { symbol: `${style.symbol}-open`, size: 7, color: style.colour, opacity: 0.75, line: { width: 1.4 } },
        meta: { fid: Number(fid), band: style.band, kind: "forced", panel: "mag", label },
        hovertemplate: hover("forced", "mag"),
      });
    }
    if (det.length) {
      own.unshift({
        type: "scatter", mode: "markers", name: `${style.band} detection`, legendgroup: `${fid}-detection`,
        x: det.map((p) => p.mjd), y: det.map((p) => p.mag), customdata: custom(det, "detection", (p) =>
          (p.isdiffpos === false ? " · negative difference" : "") + stampNote(p)),
        error_y: { type: "data", array: det.map((p) => p.e_mag ?? 0), color: style.colour, thickness: 1.1, width: 3 },
        marker: {
          // a negative difference (fainter than the reference) keeps its band's shape, crossed
          symbol: det.map((p) => (p.isdiffpos === false ? `${style.symbol}-x` : style.symbol)),
          size: 9, color: style.colour, line: { width: 1, color: "#ffffff" },
        },
        meta: { fid: Number(fid), band: style.band, kind: "detection", panel: "mag", label },
        hovertemplate: hover("detection", "mag"),
      });
    }
    traces.push(...own); // legend per band: detection, forced photometry, upper limit
  }
  const layout = {
    yaxis: { title: { text: "difference magnitude (AB)" }, autorange: "reversed", gridcolor: "#e6e6e6", zeroline: false },
    xaxis: { title: { text: "MJD (UTC)" }, gridcolor: "#e6e6e6", tickformat: ".1f", zeroline: false },
  };
  const notes = ["Upper limits: the 5σ limiting magnitude of an image without a detection (the object is fainter)."];
  if (hiddenForced) notes.push(`${hiddenForced} forced-photometry point(s) below S/N ${FORCED_SNR} or negative not drawn as magnitudes.`);
  return { traces, layout, notes };
}

function lsstTraces(points) {
  const traces = [];
  for (const [fid, style] of Object.entries(BANDS.lsst)) {
    const band = points.filter((p) => String(p.fid) === fid && p.flux !== null && p.flux !== undefined);
    const label = `Rubin ${style.band}`;
    const det = band.filter((p) => p.point_kind === "detection");
    const fp = band.filter((p) => p.point_kind === "forced");
    if (det.length) {
      traces.push({
        type: "scatter", mode: "markers", name: `${style.band} detection`, legendgroup: `${fid}-detection`,
        x: det.map((p) => p.mjd), y: det.map((p) => p.flux), customdata: custom(det, "detection", stampNote),
        error_y: { type: "data", array: det.map((p) => p.flux_err ?? 0), color: style.colour, thickness: 1.1, width: 3 },
        marker: { symbol: style.symbol, size: 9, color: style.colour, line: { width: 1, color: "#ffffff" } },
        meta: { fid: Number(fid), band: style.band, kind: "detection", panel: "flux", label },
        hovertemplate: hover("detection", "flux"),
      });
      const mags = det.filter((p) => p.mag !== null && p.mag !== undefined);
      if (mags.length) { // the same detections as AB magnitudes (positive flux only), toggled with them
        traces.push({
          type: "scatter", mode: "markers", name: `${style.band} AB mag`, legendgroup: `${fid}-detection`,
          showlegend: false, xaxis: "x", yaxis: "y2",
          x: mags.map((p) => p.mjd), y: mags.map((p) => p.mag), customdata: custom(mags, "detection", stampNote),
          error_y: { type: "data", array: mags.map((p) => p.e_mag ?? 0), color: style.colour, thickness: 1, width: 2 },
          marker: { symbol: style.symbol, size: 7, color: style.colour, line: { width: 1, color: "#ffffff" } },
          meta: { fid: Number(fid), band: style.band, kind: "detection", panel: "mag", label },
          hovertemplate: hover("detection", "mag"),
        });
      }
    }
    if (fp.length) {
      traces.push({
        type: "scatter", mode: "markers", name: `${style.band} forced phot.`, legendgroup: `${fid}-forced`,
        x: fp.map((p) => p.mjd), y: fp.map((p) => p.flux), customdata: custom(fp, "forced"),
        error_y: { type: "data", array: fp.map((p) => p.flux_err ?? 0), color: style.colour, thickness: 0.8, width: 0 },
        marker: { symbol: `${style.symbol}-open`, size: 7, color: style.colour, opacity: 0.75, line: { width: 1.4 } },
        meta: { fid: Number(fid), band: style.band, kind: "forced", panel: "flux", label },
        hovertemplate: hover("forced", "flux"),
      });
    }
  }
  const layout = {
    yaxis: { title: { text: "difference flux (nJy)" }, domain: [0.38, 1], gridcolor: "#e6e6e6", zeroline: true,
      zerolinecolor: "#888" },
    yaxis2: { title: { text: "AB mag (flux > 0)" }, domain: [0, 0.28], autorange: "reversed", gridcolor: "#e6e6e6" },
    xaxis: { title: { text: "MJD (UTC)" }, anchor: "y2", gridcolor: "#e6e6e6", tickformat: ".1f", zeroline: false },
  };
  return { traces, layout, notes: ["Rubin sends fluxes (nJy); a magnitude is shown only for a positive flux. No upper limits in Rubin alerts."] };
}

async function drawLightcurve(points) {
  const { traces, layout, notes } = state.survey === "lsst" ? lsstTraces(points) : ztfTraces(points);
  const node = $("lightcurve");
  if (!traces.length) {
    node.replaceChildren(h("p", { class: "status" }, "No light-curve points."));
    return;
  }
  traces.push({ // the selected point, ringed (updated by select())
    type: "scatter", mode: "markers", x: [], y: [], name: "selected", showlegend: false, hoverinfo: "skip",
    marker: { symbol: "circle-open", size: 20, color: "#000000", line: { width: 2 } }, meta: { kind: "selected" },
  });
  const times = points.map((p) => p.mjd).filter((t) => typeof t === "number");
  const span = Math.max(...times) - Math.min(...times);
  if (span < 2) { // one night: a day either side, so the axis says when
    const mid = (Math.max(...times) + Math.min(...times)) / 2;
    layout.xaxis.range = [mid - 1, mid + 1];
  }
  await Plotly.newPlot(node, traces, {
    ...layout,
    font: FONT,
    height: state.survey === "lsst" ? 560 : 460,
    margin: { l: 70, r: 20, t: 10, b: 60 },
    hovermode: "closest",
    legend: { groupclick: "togglegroup" },
    plot_bgcolor: "#ffffff",
  }, { ...PLOT_CONFIG, toImageButtonOptions: { filename: `lightcurve-${OBJECT_ID}` } });
  $("lc-hint").textContent = "Drag to zoom, double-click to reset; click a legend entry to hide it. "
    + "Filled: detection; hollow: forced photometry"
    + (state.survey === "lsst" ? "; lower panel: the detections as AB magnitudes." : "; ▼ on a bar: 5σ upper limit; × inside: negative difference.");
  $("lc-note").textContent = notes.join(" ");
  node.on("plotly_click", (event) => {
    const point = event.points.find((p) => p.data.meta && p.data.meta.kind !== "selected");
    if (!point) return;
    const [id, kind] = point.customdata;
    ring(point.x, point.y, point.data.yaxis);
    if (kind !== "detection") {
      status("stamp-status", kind === "upper_limit"
        ? "An upper limit is an image without a detection: no alert, no stamps."
        : "Forced photometry is measured at the object's position, not an alert: no stamps.");
      return;
    }
    select(id);
  });
}

function ring(x, y, yaxis = "y") {
  const node = $("lightcurve");
  const index = node.data.findIndex((t) => t.meta && t.meta.kind === "selected");
  if (index >= 0) Plotly.restyle(node, { x: [[x]], y: [[y]], yaxis }, [index]);
}

// ---- stamps ----------------------------------------------------------------------------------------------------

function select(alertId) {
  const alert = state.alerts.get(alertId);
  for (const button of document.querySelectorAll("#alert-list button")) {
    button.setAttribute("aria-pressed", String(button.dataset.alertId === alertId));
  }
  if (!alert) {
    status("stamp-status", `Detection ${alertId} came from an alert's history: its own alert is not in the lake, so no stamps.`);
    return;
  }
  state.selected = alertId;
  status("stamp-status", "Loading stamps…");
  let pending = STAMP_KINDS.length;
  let failed = 0;
  const done = () => {
    pending -= 1;
    if (!pending) status("stamp-status", failed ? `${failed} stamp(s) could not be loaded.` : "", failed ? "error" : "");
  };
  for (const kind of STAMP_KINDS) {
    const img = $(`stamp-${kind}`);
    const url = alert.stamps && alert.stamps[kind];
    img.onload = done;
    img.onerror = () => { failed += 1; img.alt = `${kind} stamp missing`; done(); };
    if (!url) { img.removeAttribute("src"); failed += 1; done(); continue; }
    const sep = url.includes("?") ? "&" : "?";
    img.src = apiUrl(`${url}${sep}stretch=${state.stretch}`, {}, true);
  }
  const style = (BANDS[state.survey] || {})[alert.fid] || null;
  $("stamp-caption").replaceChildren(
    h("span", {}, state.survey === "lsst" ? "diaSourceId " : "candid "),
    h("span", { id: "stamp-candid", class: "mono" }, alertId),
    ` · MJD ${formatCell("mjd", alert.mjd)} (${mjdToIso(alert.mjd)} UTC)`,
    alert.band ? ` · band ${alert.band}` : (style ? ` · band ${style.band}` : ""),
    " · ",
    h("a", { href: apiUrl(alert.stamps.science, { format: "fits" }, true) }, "science FITS"),
  );
  $("stamps").hidden = false;
  const plotted = $("lightcurve").data || [];
  for (const trace of plotted) { // ring the alert's point (the choice may come from the list)
    if (!trace.meta || trace.meta.kind !== "detection" || (state.survey === "lsst" && trace.meta.panel === "mag")) continue;
    const i = trace.customdata.findIndex((c) => c[0] === alertId);
    if (i >= 0) { ring(trace.x[i], trace.y[i], trace.yaxis || "y"); break; }
  }
}

function alertList(alerts) {
  const list = $("alert-list");
  if (!alerts.length) {
    list.replaceChildren(h("p", { class: "status" }, "No alert of this object has stamps in the lake."));
    return;
  }
  const stretch = h("select", { id: "stretch", onchange: (e) => { state.stretch = e.target.value; if (state.selected) select(state.selected); } },
    h("option", { value: "zscale" }, "zscale"), h("option", { value: "asinh" }, "asinh"));
  list.replaceChildren(
    h("label", { class: "stretch" }, "Stretch ", stretch),
    ...alerts.map((a) => h("button", {
      type: "button", class: "alert", "data-alert-id": a.alert_id, "aria-pressed": "false",
      onclick: () => select(String(a.alert_id)),
    }, `${mjdToIso(a.mjd)} · ${a.band ?? ""} · ${a.alert_id}`)),
  );
}

// ---- the rest of the page --------------------------------------------------------------------------------------

function summary(obj, info) {
  const survey = obj.survey || (/^\d+$/.test(OBJECT_ID) ? "lsst" : "ztf");
  state.survey = survey;
  const name = survey === "lsst" ? `Rubin diaObject ${obj.objectId}` : String(obj.objectId);
  $("title").textContent = name;
  document.title = `${name} · ATEDA explorer`;
  const flags = [];
  if (info.is_transient_candidate) flags.push(h("span", { class: "badge candidate" }, "transient candidate"));
  if (obj.is_stellar) flags.push(h("span", { class: "badge" }, "stellar"));
  if (obj.min_ssdist_arcsec != null && obj.min_ssdist_arcsec < 5) flags.push(h("span", { class: "badge" }, "near a known solar-system object"));
  const pos = typeof obj.meanra === "number"
    ? `${hms(obj.meanra)} ${dms(obj.meandec)}  (${obj.meanra.toFixed(6)}, ${obj.meandec >= 0 ? "+" : ""}${obj.meandec.toFixed(6)})` : null;
  $("summary").replaceChildren(
    flags.length ? h("p", { class: "badges" }, flags) : "",
    facts([
      ["Survey", SURVEY_NAMES[survey] || survey],
      ["Position (J2000)", pos],
      ["Detections", obj.ndet],
      ["Alerts", obj.n_alerts],
      ["Upper limits", survey === "ztf" ? obj.n_non_detections : null],
      ["Forced photometry", obj.n_forced_photometry],
      ["First detection", obj.firstmjd != null ? `MJD ${formatCell("mjd", obj.firstmjd)} (${mjdToIso(obj.firstmjd)} UTC)` : null],
      ["Last detection", obj.lastmjd != null ? `MJD ${formatCell("mjd", obj.lastmjd)} (${mjdToIso(obj.lastmjd)} UTC)` : null],
      [survey === "lsst" ? "Last reliability" : "Last real-bogus", obj.last_rb != null ? formatCell("rb", obj.last_rb) : null],
      ["Last deep real-bogus", obj.last_drb != null ? formatCell("drb", obj.last_drb) : null],
    ]),
  );
  links(obj, survey);
}

function links(obj, survey) {
  const ra = obj.meanra;
  const dec = obj.meandec;
  const items = [];
  const id = encodeURIComponent(String(obj.objectId));
  if (survey === "ztf") {
    items.push(["ALeRCE", `https://alerce.online/object/${id}`]);
    items.push(["Lasair", `https://lasair-ztf.lsst.ac.uk/objects/${id}/`]);
    items.push(["Fink", `https://fink-portal.org/${id}`]);
  }
  if (typeof ra === "number" && typeof dec === "number") {
    const r = ra.toFixed(6);
    const d = dec.toFixed(6);
    items.push(["SIMBAD (5″)", `https://simbad.cds.unistra.fr/simbad/sim-coo?Coord=${r}%20${d}&Radius=5&Radius.unit=arcsec`]);
    items.push(["NED (5″)", `https://ned.ipac.caltech.edu/conesearch?search_type=Near%20Position%20Search&in_csys=Equatorial&in_equinox=J2000&ra=${r}d&dec=${d}d&radius=0.0833`]);
    items.push(["TNS (10″)", `https://www.wis-tns.org/search?ra=${r}&decl=${d}&radius=10&coords_unit=arcsec`]);
    items.push(["Legacy Survey viewer", `https://www.legacysurvey.org/viewer?ra=${r}&dec=${d}&layer=ls-dr10&zoom=16&mark=${r},${d}`]);
    items.push(["Cone search here (1′)", `/cone?ra=${r}&dec=${d}&radius_arcsec=60`]);
  }
  $("links").replaceChildren(...items.map(([label, href]) => h("li", {},
    h("a", href.startsWith("/") ? { href } : { href, rel: "noopener noreferrer", target: "_blank" }, label))));
}

function bandStats(info) {
  const rows = [...(info.magstats || []), ...(info.fluxstats || []), ...(info.band_statistics || [])];
  const node = $("bands");
  if (!rows.length) { node.replaceChildren(h("p", { class: "status" }, "None.")); return; }
  const skip = new Set(["objectId", "diaObjectId", "survey"]);
  node.replaceChildren(table(rows, Object.keys(rows[0]).filter((c) => !skip.has(c))));
}

const CROSSMATCH_TITLES = { ps1: "Pan-STARRS1 (nearest to the last alert)", gaia: "Gaia", solar_system: "Solar system",
  catalogs: "User catalogs" };

function crossmatches(info) {
  const groups = info.crossmatches && typeof info.crossmatches === "object" && !Array.isArray(info.crossmatches)
    ? info.crossmatches : { ps1: info.ps1, gaia: info.gaia, solar_system: info.solar_system, catalogs: info.catalogs };
  const parts = [];
  for (const [key, value] of Object.entries(groups)) {
    const rows = rowsOf(value);
    if (!rows.length) continue;
    parts.push(h("h3", {}, CROSSMATCH_TITLES[key] || key), h("div", { class: "table-wrap" }, table(rows)));
  }
  $("crossmatches").replaceChildren(...(parts.length ? parts : [h("p", { class: "status" }, "No crossmatch.")]));
}

function surveyMatches(info) {
  const rows = rowsOf(info.survey_matches || info.survey_match);
  $("survey-matches").replaceChildren(rows.length
    ? h("div", { class: "table-wrap" }, table(rows))
    : h("p", { class: "status" }, "Not seen by the other survey (within 1.5″)."));
}

async function main() {
  const path = encodeURIComponent(OBJECT_ID);
  status("status", "Loading…");
  let info;
  try {
    info = await api(`objects/${path}`);
  } catch (exc) {
    status("status", exc.message, "error");
    for (const id of ["summary", "stamps-panel"]) $(id).hidden = true;
    $("title").textContent = OBJECT_ID;
    return;
  }
  status("status", "");
  const obj = info.object || info.summary || info;
  summary(obj, info);
  bandStats(info);
  crossmatches(info);
  surveyMatches(info);
  const [curve, cutouts] = await Promise.allSettled([api(`objects/${path}/lightcurve`), api(`objects/${path}/cutouts`)]);
  const alerts = cutouts.status === "fulfilled" ? rowsOf(cutouts.value) : [];
  alerts.sort((a, b) => b.mjd - a.mjd);
  state.alerts = new Map(alerts.map((a) => [String(a.alert_id), { ...a, alert_id: String(a.alert_id) }]));
  alertList(alerts);
  if (cutouts.status === "rejected") status("stamp-status", `Stamps unavailable: ${cutouts.reason.message}`, "error");
  if (curve.status === "rejected") {
    status("status", `Light curve unavailable: ${curve.reason.message}`, "error");
  } else {
    await drawLightcurve(rowsOf(curve.value));
  }
  if (alerts.length) select(String(alerts[0].alert_id)); // the latest alert's stamps to start with
  $("page").dataset.ready = "true";
}

main();
