// Home: the nightly summary as a chart (alerts per night and band, stacked) and the latest transient candidates.
import { $, api, BANDS, FONT, PLOT_CONFIG, rowsOf, status, SURVEY_NAMES, table } from "./common.js";

const CANDIDATE_COLUMNS = ["objectId", "survey", "meanra", "meandec", "ndet", "firstmjd", "lastmjd"];

// A night as text: 20240605 (ZTF's night and Rubin's dayObs as yyyymmdd) -> 2024-06-05; anything else as given.
function nightLabel(night) {
  const s = String(night);
  return /^\d{8}$/.test(s) ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6)}` : s.slice(0, 10);
}

async function nights() {
  let rows;
  try {
    rows = rowsOf(await api("nights"));
  } catch (exc) {
    status("nights-status", `Nightly summary unavailable: ${exc.message}`, "error");
    return;
  }
  if (!rows.length) {
    status("nights-status", "No nights in the warehouse yet (run `ateda refresh` after ingesting alerts).");
    return;
  }
  // the nights with alerts (a history adds nights of detections and limits only: counted, not drawn)
  const all = new Set(rows.map((r) => nightLabel(r.night)));
  const labels = [...new Set(rows.filter((r) => r.n_alerts > 0).map((r) => nightLabel(r.night)))].sort();
  const traces = [];
  for (const survey of ["ztf", "lsst"]) {
    for (const [fid, style] of Object.entries(BANDS[survey])) {
      const own = rows.filter((r) => r.survey === survey && String(r.fid) === fid && r.n_alerts > 0);
      if (!own.length) continue;
      const byNight = new Map(own.map((r) => [nightLabel(r.night), r]));
      traces.push({
        type: "bar",
        name: `${SURVEY_NAMES[survey]} ${style.band}`,
        x: labels,
        y: labels.map((n) => (byNight.has(n) ? byNight.get(n).n_alerts : 0)),
        customdata: labels.map((n) => {
          const r = byNight.get(n);
          return r ? [r.n_objects, r.n_detections, r.n_new_objects] : [0, 0, 0];
        }),
        marker: {
          color: style.colour,
          // Rubin hatched, so a band of each survey sharing a colour still differs
          pattern: survey === "lsst" ? { shape: "/", fillmode: "overlay", fgcolor: "#ffffff", solidity: 0.3 } : undefined,
          line: { color: "#ffffff", width: 0.5 },
        },
        meta: { survey, fid: Number(fid), band: style.band },
        hovertemplate: `%{x}<br>${SURVEY_NAMES[survey]} ${style.band}: %{y} alerts, %{customdata[0]} objects, `
          + "%{customdata[1]} detections, %{customdata[2]} new<extra></extra>",
      });
    }
  }
  const layout = {
    barmode: "stack",
    font: FONT,
    margin: { l: 60, r: 20, t: 20, b: 80 },
    height: 360,
    xaxis: { type: "category", title: { text: "night (UTC date of the observing night)", standoff: 12 }, tickangle: -45,
      automargin: true },
    yaxis: { title: { text: "alerts" }, rangemode: "tozero", gridcolor: "#e6e6e6" },
    legend: { orientation: "h", y: 1.12, x: 0, traceorder: "normal" },
    plot_bgcolor: "#ffffff",
  };
  await Plotly.newPlot($("nights-chart"), traces, layout, PLOT_CONFIG);
  const alerts = rows.reduce((n, r) => n + (r.n_alerts || 0), 0);
  status("nights-status", `${alerts} alert(s) on ${labels.length} night(s); ${all.size} night(s) in all with `
    + "detections or upper limits (from the alerts' histories).");
}

async function candidates() {
  try {
    const body = await api("objects", { candidate: "true", sort: "lastmjd", order: "desc", limit: 20 });
    const rows = rowsOf(body);
    if (!rows.length) {
      status("candidates-status", "No transient candidates yet.");
      return;
    }
    const total = typeof body.total === "number" ? body.total : rows.length;
    status("candidates-status", `The ${rows.length} most recent of ${total} candidate(s).`);
    $("candidates-table").replaceChildren(table(rows, CANDIDATE_COLUMNS.filter((c) => c in rows[0])));
  } catch (exc) {
    status("candidates-status", `Candidates unavailable: ${exc.message}`, "error");
  }
}

nights();
candidates();
