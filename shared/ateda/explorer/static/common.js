// Shared helpers of the explorer's pages: API calls, DOM building (text only: nothing from the API is ever parsed
// as markup), number formats, tables, and the band palette (the same as ateda.warehouse.plots, so the PNG and the
// web agree). Identifiers are strings from end to end: a 64-bit id never becomes a JavaScript number.

const API = "/api/v1";

// Okabe-Ito colours (safe for colour-blind readers) and one marker shape per band, as in warehouse/plots.py
// (matplotlib o s D v ^ P -> plotly circle square diamond triangle-down triangle-up cross).
export const BANDS = {
  ztf: {
    1: { band: "g", colour: "#0072B2", symbol: "circle" },
    2: { band: "r", colour: "#D55E00", symbol: "square" },
    3: { band: "i", colour: "#CC79A7", symbol: "diamond" },
  },
  lsst: {
    1: { band: "u", colour: "#CC79A7", symbol: "triangle-down" },
    2: { band: "g", colour: "#009E73", symbol: "circle" },
    3: { band: "r", colour: "#D55E00", symbol: "square" },
    4: { band: "i", colour: "#E69F00", symbol: "diamond" },
    5: { band: "z", colour: "#0072B2", symbol: "triangle-up" },
    6: { band: "y", colour: "#000000", symbol: "cross" },
  },
};
export const SURVEY_NAMES = { ztf: "ZTF", lsst: "Rubin" };

// ---- the API ---------------------------------------------------------------------------------------------------

// An optional token (ATEDA_EXPLORER_TOKEN): given once as ?token= on any page, kept for this tab's session.
function token() {
  const given = new URLSearchParams(location.search).get("token");
  if (given) sessionStorage.setItem("ateda-token", given);
  return given || sessionStorage.getItem("ateda-token");
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// The URL of an API path with its query (empty values left out); withToken for links and images, which cannot send
// a header.
export function apiUrl(path, params = {}, withToken = false) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const t = withToken ? token() : null;
  if (t) query.set("token", t);
  const q = query.toString();
  return `${path.startsWith("/") ? path : `${API}/${path}`}${q ? `?${q}` : ""}`;
}

// GET (or POST a form) and parse JSON; an error answer becomes an ApiError carrying the API's one-line detail.
export async function api(path, params = {}, init = {}) {
  const headers = { Accept: "application/json", ...(init.headers || {}) };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let response;
  try {
    response = await fetch(apiUrl(path, params), { ...init, headers });
  } catch (exc) {
    throw new ApiError(0, `the explorer did not answer (${exc.message})`);
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail)) detail = body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

// A listing's rows whether the API answers {rows: [...]} or a bare list.
export function rowsOf(body) {
  return Array.isArray(body) ? body : (body && Array.isArray(body.rows) ? body.rows : []);
}

// ---- the DOM: built from text ----------------------------------------------------------------------------------

// h("a", {href: url, class: "x"}, "text", child): an element; strings become text nodes (never markup).
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function status(id, text, kind = "") {
  const node = $(id);
  node.textContent = text || "";
  node.className = `status ${kind}`;
}

export function objectHref(objectId) {
  return `/objects/${encodeURIComponent(objectId)}`;
}

// ---- numbers and times -----------------------------------------------------------------------------------------

export function mjdToIso(mjd) {
  if (typeof mjd !== "number" || !Number.isFinite(mjd)) return "";
  return new Date((mjd - 40587) * 86400000).toISOString().slice(0, 16).replace("T", " ");
}

// hh:mm:ss.ss (RA) or +dd:mm:ss.s (Dec), rounded once in the last digit so 59.999 s never shows as 60.00.
function sexagesimal(value, hours) {
  const digits = hours ? 2 : 1;
  const scale = 10 ** digits;
  let total = Math.round(Math.abs(hours ? value / 15 : value) * 3600 * scale);
  const frac = total % (60 * scale);
  total = (total - frac) / (60 * scale);
  const minutes = total % 60;
  const whole = (total - minutes) / 60;
  const pad = (n, w) => String(n).padStart(w, "0");
  const seconds = `${pad(Math.floor(frac / scale), 2)}.${pad(frac % scale, digits)}`;
  const sign = value < 0 ? "-" : hours ? "" : "+";
  return `${sign}${pad(hours ? whole % 24 : whole, 2)}:${pad(minutes, 2)}:${seconds}`;
}

export function hms(ra) { return sexagesimal(((ra % 360) + 360) % 360, true); }
export function dms(dec) { return sexagesimal(dec, false); }

// Digits per column, by name: positions to 1e-6 deg (3.6 mas), times to 1e-5 d (<1 s), magnitudes to 1e-3.
const DIGITS = [
  [/^(mean)?(ra|dec)$|_(ra|dec)$|^(ra|dec)_/i, 6],
  [/mjd|(^|_)jd$/i, 5],
  [/arcsec/i, 2],
  [/mag|sigma|^e_/i, 3],
  [/flux/i, 1],
  [/rb$|score|prob/i, 3],
];

export function formatCell(column, value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") {
    const rule = DIGITS.find(([pattern]) => pattern.test(column));
    if (rule) return value.toFixed(rule[1]);
    return Number.isInteger(value) ? String(value) : value.toFixed(4);
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---- tables ----------------------------------------------------------------------------------------------------

const OBJECT_COLUMNS = /^(objectId|other|ztf_objectId|lsst_objectId|object_id)$/;

// A table of rows (objects); columns default to the first row's keys. Object ids link to their page; a numeric
// cell is right-aligned. sort: {column, order, onSort(column)} makes the headers buttons.
export function table(rows, columns = null, sort = null) {
  const cols = columns || (rows.length ? Object.keys(rows[0]) : []);
  const head = h("tr", {}, cols.map((col) => {
    if (!sort) return h("th", { scope: "col" }, col);
    const active = sort.column === col;
    const arrow = active ? (sort.order === "asc" ? " ▲" : " ▼") : "";
    return h("th", { scope: "col", "aria-sort": active ? (sort.order === "asc" ? "ascending" : "descending") : null },
      h("button", { type: "button", class: "sort", "data-column": col, onclick: () => sort.onSort(col) }, col + arrow));
  }));
  const body = rows.map((row) => h("tr", {}, cols.map((col) => {
    const value = row[col];
    const text = formatCell(col, value);
    const numeric = typeof value === "number";
    if (OBJECT_COLUMNS.test(col) && value !== null && value !== undefined) {
      return h("td", {}, h("a", { href: objectHref(String(value)) }, text));
    }
    return h("td", { class: numeric ? "num" : null }, text);
  })));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

// Key/value pairs as a definition list.
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v instanceof Node ? v : String(v)))));
}

export const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d"],
};

export const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 13, color: "#222" };
