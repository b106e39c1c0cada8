// Cone search: the form's fields are the URL's query (a search is a link), answered by /api/v1/cone.
import { $, api, apiUrl, h, rowsOf, status, table } from "./common.js";

const FIELDS = ["ra", "dec", "radius_arcsec", "since", "until"];
const COLUMNS = ["objectId", "dist_arcsec", "survey", "meanra", "meandec", "ndet", "firstmjd", "lastmjd"];

async function search() {
  const query = new URLSearchParams(location.search);
  const form = $("cone-form");
  for (const key of FIELDS) if (query.has(key)) form.elements[key].value = query.get(key);
  if (!query.get("ra") || !query.get("dec")) {
    status("status", "Give a position (degrees) and a radius.");
    return;
  }
  const params = Object.fromEntries(FIELDS.map((k) => [k, query.get(k)]));
  status("status", "Searching…");
  try {
    const rows = rowsOf(await api("cone", params));
    const where = `within ${params.radius_arcsec || 60}″ of (${params.ra}, ${params.dec})`;
    status("status", rows.length ? `${rows.length} object(s) ${where}, nearest first.` : `No object ${where}.`);
    const extra = rows.length ? Object.keys(rows[0]).filter((c) => !COLUMNS.includes(c)) : [];
    $("results").replaceChildren(rows.length ? table(rows, [...COLUMNS.filter((c) => rows.length && c in rows[0]), ...extra.slice(0, 4)]) : "",
      rows.length ? h("p", { class: "hint" }, h("a", { href: apiUrl("cone", { ...params, format: "csv" }, true), download: "cone.csv" }, "CSV"),
        " · ", h("a", { href: apiUrl("cone", { ...params, format: "votable" }, true), download: "cone.xml" }, "VOTable")) : "");
  } catch (exc) {
    status("status", exc.message, "error");
    $("results").replaceChildren();
  }
}

$("cone-form").addEventListener("submit", (event) => { // a clean URL: the empty optional fields left out
  event.preventDefault();
  const data = new FormData(event.target);
  const query = new URLSearchParams();
  for (const key of FIELDS) if ((data.get(key) || "").trim()) query.set(key, data.get(key).trim());
  history.pushState(null, "", `/cone?${query}`);
  search();
});
window.addEventListener("popstate", search);
search();
