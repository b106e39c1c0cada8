// SQL console: one read-only statement through /api/v1/sql; the statement and the row limit are the URL's query
// (?sql=&limit=, the API's own names: a query is a link), and the same query as CSV is a plain link (format=csv).
import { $, api, apiUrl, h, rowsOf, status, table } from "./common.js";

function rowsAsObjects(body) {
  if (body && Array.isArray(body.columns) && Array.isArray(body.rows) && Array.isArray(body.rows[0])) {
    return { columns: body.columns, rows: body.rows.map((r) => Object.fromEntries(body.columns.map((c, i) => [c, r[i]]))) };
  }
  const rows = rowsOf(body);
  return { columns: body && Array.isArray(body.columns) ? body.columns : (rows.length ? Object.keys(rows[0]) : []), rows };
}

async function run() {
  const query = new URLSearchParams(location.search);
  const form = $("sql-form");
  const sql = query.get("sql");
  if (sql) form.elements.sql.value = sql;
  if (query.get("limit")) form.elements.limit.value = query.get("limit");
  if (!sql) return;
  const params = { sql, limit: form.elements.limit.value };
  const csv = $("csv");
  csv.href = apiUrl("sql", { ...params, format: "csv" }, true);
  csv.hidden = false;
  status("status", "Running…");
  const started = performance.now();
  try {
    const body = await api("sql", params);
    const { columns, rows } = rowsAsObjects(body);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const capped = body && body.truncated ? " (stopped at the row limit: more rows match)" : "";
    status("status", `${rows.length} row(s) in ${seconds} s${capped}.`);
    $("results").replaceChildren(rows.length ? table(rows, columns) : h("p", {}, "No rows."));
  } catch (exc) {
    status("status", exc.message, "error");
    $("results").replaceChildren();
  }
}

$("sql-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const query = new URLSearchParams({ sql: data.get("sql").trim() });
  if (data.get("limit")) query.set("limit", data.get("limit"));
  history.pushState(null, "", `/sql?${query}`);
  run();
});
$("sql").addEventListener("keydown", (event) => { // Ctrl/Cmd+Enter runs the statement
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("sql-form").requestSubmit();
});
window.addEventListener("popstate", run);
run();
