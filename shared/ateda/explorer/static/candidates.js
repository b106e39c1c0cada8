// Candidates: gold.object through /api/v1/objects, filtered, sorted and paged. The whole view (filters, sort, page)
// lives in the URL's query, so a view is a link; the back button walks through the views.
import { $, api, h, rowsOf, status, table } from "./common.js";

const FILTERS = ["survey", "min_ndet", "max_ndet", "since", "until", "candidate", "limit"];
const DEFAULTS = { candidate: "true", sort: "lastmjd", order: "desc", limit: "50", offset: "0" };
const COLUMNS = ["objectId", "survey", "meanra", "meandec", "ndet", "n_alerts", "firstmjd", "lastmjd", "last_rb",
  "is_stellar", "n_non_detections", "n_forced_photometry"];

function view() {
  const query = new URLSearchParams(location.search);
  const out = { ...DEFAULTS };
  for (const key of [...FILTERS, "sort", "order", "offset"]) {
    if (query.get(key)) out[key] = query.get(key);
  }
  return out;
}

function go(changes) {
  const next = { ...view(), ...changes };
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(next)) {
    if (value !== "" && value !== undefined && value !== null && value !== DEFAULTS[key]) query.set(key, value);
  }
  const q = query.toString();
  history.pushState(null, "", `/candidates${q ? `?${q}` : ""}`);
  load();
}

function fillForm(v) {
  const form = $("filters");
  for (const key of [...FILTERS, "sort", "order"]) {
    if (form.elements[key]) form.elements[key].value = v[key] ?? "";
  }
}

async function load() {
  const v = view();
  fillForm(v);
  const params = { ...v };
  if (params.candidate !== "true") delete params.candidate;
  status("status", "Loading…");
  let body;
  try {
    body = await api("objects", params);
  } catch (exc) {
    status("status", exc.message, "error");
    $("table").replaceChildren();
    return;
  }
  const rows = rowsOf(body);
  const offset = Number(v.offset) || 0;
  const limit = Number(v.limit) || 50;
  const total = typeof body.total === "number" ? body.total : rows.length;
  const what = v.candidate === "true" ? "candidate(s)" : "object(s)";
  status("status", rows.length ? `${total} ${what} match.` : `No ${what} match these filters.`);
  $("range").textContent = rows.length ? `${offset + 1}–${offset + rows.length} of ${total}` : "";
  $("prev").disabled = offset <= 0;
  $("next").disabled = offset + rows.length >= total;
  const columns = rows.length ? COLUMNS.filter((c) => c in rows[0]) : COLUMNS;
  $("table").replaceChildren(rows.length ? table(rows, columns, {
    column: v.sort,
    order: v.order,
    onSort: (col) => go({ sort: col, order: v.sort === col && v.order === "desc" ? "asc" : "desc", offset: "0" }),
  }) : h("p", {}, ""));
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const changes = { offset: "0" };
  for (const key of FILTERS) changes[key] = (form.get(key) || "").trim();
  go(changes);
});
$("prev").addEventListener("click", () => {
  const v = view();
  go({ offset: String(Math.max(0, Number(v.offset) - Number(v.limit))) });
});
$("next").addEventListener("click", () => {
  const v = view();
  go({ offset: String(Number(v.offset) + Number(v.limit)) });
});
window.addEventListener("popstate", load);
load();
