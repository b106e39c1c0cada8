"""The explorer's pages in a real browser: Debian's Chromium driven by Playwright, against `ateda serve` (uvicorn)
over a warehouse built from real ZTF alerts and a small generated Rubin night (issue 15, "Real clients").

The home page draws the nightly summary and lists the latest candidates; a candidate's light curve has, per band,
as many plotted detections (and upper limits) as gold.lightcurve holds; clicking a detection loads that alert's
three stamps; a Rubin object's page keeps its 64-bit id exact and shows flux and magnitude; the candidate list is
sortable, filterable and linkable; a cone search and a SQL query (and its CSV) answer what DuckDB answers; data from
the API is never parsed as markup. A screenshot of each page is saved in ``$ATEDA_TEST_ARTIFACTS`` (else a pytest
tmp folder; the path is printed).
"""

from __future__ import annotations

import collections
import csv
import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import fastavro
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ateda.config import Settings
from ateda.dev import synth_lsst
from ateda.dev.bench import free_serve_port
from ateda.ingest import run_ingest
from ateda.warehouse import build as warehouse
from ateda.warehouse import location
from conftest import HALF_BROKEN, alert_files

CHROMIUM = "/usr/bin/chromium"
PORTS = range(18200, 18300)  # the ports this module may listen on
N_RUBIN_ALERTS = 40
FIRST_FILES = 20  # real ZTF files taken in order, beside those of the objects with several alerts
# transient candidates whose alerts (with stamps) are in several small files of the real set, and one object with
# seven alerts that is no candidate
SEVERAL_ALERTS = {"ZTF18abudwyj", "ZTF21abvawaj", "ZTF19ablpdid", "ZTF20acdglxa", "ZTF19abegmle"}
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                                                    "(scripts/test.sh installs it)")


# ---------------------------------------------------------------- the warehouse, the server, the browser

def _ztf_files() -> list[Path]:
    """The first real files, and the (small) files of objects with alerts in several files: candidates with more
    than one alert with stamps, so a click can pick an alert that is not the one preselected."""
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    chosen = set(files[:FIRST_FILES])
    for path in files:
        try:
            with open(path, "rb") as fh:
                records = list(fastavro.reader(fh))
        except Exception:  # noqa: BLE001 - a damaged file: not one of these
            continue
        if len(records) <= 10 and any(r.get("objectId") in SEVERAL_ALERTS for r in records):
            chosen.add(path)
    return sorted(chosen)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("explorer-web")
    synth_lsst.write_containers(root / "rubin", N_RUBIN_ALERTS, seed=5, per_file=N_RUBIN_ALERTS)
    s = Settings.from_env({"ATEDA_HOME": str(root / "home")})
    files = _ztf_files()
    run_ingest(s, [*files, root / "rubin"], quiet=True, bronze_only=True)
    result = warehouse.refresh_models(s)
    assert result.success, result.errors
    return s


def _gold(s: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(location.duckdb_path(s)), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _free_port() -> int:
    return free_serve_port(PORTS)


@pytest.fixture(scope="module")
def server(home: Settings, tmp_path_factory) -> str:
    port = _free_port()
    log = tmp_path_factory.mktemp("explorer-log") / "serve.log"
    env = {**os.environ, "ATEDA_HOME": str(home.home), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("ATEDA_EXPLORER_TOKEN", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from ateda.cli import main; raise SystemExit(main())",
                                 "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"`ateda serve` did not answer on {base}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    given = os.environ.get("ATEDA_TEST_ARTIFACTS")
    out = Path(given) / "explorer" if given else tmp_path_factory.mktemp("explorer-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nexplorer screenshots: {out}")
    return out


@pytest.fixture(scope="module")
def browser_context(server):
    """One browser context for the module: plotly.js is fetched once and cached, as a person's browser would."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = chromium.new_context(viewport=VIEWPORT, base_url=server)
        yield context
        context.close()
        chromium.close()


@pytest.fixture
def page(browser_context):
    """A fresh page; a JavaScript error on it fails the test."""
    pg = browser_context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors: {errors}"


def _shot(pg: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


# The plotted traces of a plotly chart, as the page holds them: name, meta and the points' x, y, customdata.
TRACES_JS = """id => document.getElementById(id).data.map(t => ({
    name: t.name, meta: t.meta || null, x: Array.from(t.x || []), y: Array.from(t.y || []),
    customdata: t.customdata || null, yaxis: t.yaxis || 'y'}))"""


# The three stamps on show are loaded images of the alert named in the caption.
STAMPS_LOADED_JS = """() => ['science', 'template', 'difference'].every(k => {
    const img = document.getElementById('stamp-' + k), candid = document.getElementById('stamp-candid');
    return candid && img.complete && img.naturalWidth > 0 && img.src.includes('/' + candid.textContent + '/');
})"""


def _traces(pg: Page, chart: str) -> list[dict]:
    pg.wait_for_function("id => { const n = document.getElementById(id); return n && n.data && n._fullLayout; }",
                         arg=chart)
    return pg.evaluate(TRACES_JS, chart)


# ---------------------------------------------------------------- the pages

def test_home_page_draws_the_nightly_summary_and_lists_the_latest_candidates(page, home, artifacts):
    page.goto("/")
    traces = _traces(page, "nights-chart")
    drawn = sum(sum(t["y"]) for t in traces)
    assert drawn == _gold(home, "select sum(n_alerts) from gold.nightly_summary")[0][0] > 0
    expect(page.locator("#nights-chart .main-svg").first).to_be_visible()
    assert {t["meta"]["survey"] for t in traces} == {"ztf", "lsst"}
    rows = page.locator("#candidates-table tbody tr")
    expect(rows.first).to_be_visible()
    latest = _gold(home, "select objectId, lastmjd from gold.object where objectId in "
                         "(select objectId from gold.transient_candidates) order by lastmjd desc limit 20")
    shown = page.locator("#candidates-table tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[6].textContent])")
    assert [float(t) for _, t in shown] == [round(t, 5) for _, t in latest]  # the latest first (ties: any order)
    assert {oid for oid, _ in shown} <= {r[0] for r in _gold(home, "select objectId from gold.transient_candidates")}
    _shot(page, artifacts, "01-home")


def test_candidates_are_sortable_filterable_and_linkable(page, home, artifacts):
    page.goto("/candidates?min_ndet=5&sort=ndet&order=desc")
    expect(page.locator("#table tbody tr").first).to_be_visible()
    ndet = [int(x) for x in page.locator("#table tbody td:nth-child(5)").all_inner_texts()]
    want = _gold(home, "select count(*) from gold.object where ndet >= 5 and objectId in "
                       "(select objectId from gold.transient_candidates)")[0][0]
    assert ndet == sorted(ndet, reverse=True) and min(ndet) >= 5 and len(ndet) == min(want, 50)
    expect(page.locator("#filters [name=min_ndet]")).to_have_value("5")
    # a header click sorts by that column and says so in the URL
    page.locator("th button[data-column=firstmjd]").click()
    page.wait_for_url("**/candidates?*sort=firstmjd*")
    expect(page.locator("th[aria-sort] button[data-column=firstmjd]")).to_be_visible()
    first = [float(x) for x in page.locator("#table tbody td:nth-child(7)").all_inner_texts()]
    assert first == sorted(first, reverse=True)
    # a filter from the form, then the same view from its link in a fresh page
    page.select_option("#filters [name=candidate]", "any")
    page.select_option("#filters [name=survey]", "lsst")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/candidates?*survey=lsst*")
    expect(page.locator("#status")).to_contain_text("object(s) match")
    surveys = set(page.locator("#table tbody td:nth-child(2)").all_inner_texts())
    assert surveys == {"lsst"}
    ids = page.locator("#table tbody td:first-child").all_inner_texts()
    link = page.url
    page.goto(link)
    expect(page.locator("#table tbody tr").first).to_be_visible()
    assert page.locator("#table tbody td:first-child").all_inner_texts() == ids
    _shot(page, artifacts, "02-candidates")


def _richest_candidate(s: Settings) -> str:
    """The transient candidate with the most alerts (with stamps), then the most detections."""
    return _gold(s, "select objectId from gold.object where survey = 'ztf' and objectId in "
                    "(select objectId from gold.transient_candidates) order by n_alerts desc, ndet desc, objectId limit 1")[0][0]


def test_object_light_curve_matches_gold_and_a_click_shows_that_alerts_stamps(page, home, artifacts):
    oid = _richest_candidate(home)
    page.goto(f"/objects/{oid}")
    page.wait_for_selector("#page[data-ready=true]")
    expect(page.locator("#title")).to_have_text(oid)
    traces = _traces(page, "lightcurve")
    plotted: collections.Counter = collections.Counter()
    for t in traces:
        if t["meta"] and t["meta"]["kind"] in ("detection", "upper_limit"):
            plotted[(t["meta"]["kind"], t["meta"]["fid"])] += len(t["x"])
    gold = collections.Counter({(kind, fid): n for kind, fid, n in _gold(
        home, "select point_kind, fid, count(*) from gold.lightcurve where objectId = ? and mag is not null "
              "and point_kind in ('detection', 'upper_limit') group by all", [oid])})
    assert plotted == gold and gold, (plotted, gold)
    n_det = _gold(home, "select count(*) from gold.lightcurve where objectId = ? and point_kind = 'detection'",
                  [oid])[0][0]
    assert sum(n for (kind, _), n in plotted.items() if kind == "detection") == n_det
    symbols = page.evaluate("""() => document.getElementById('lightcurve')._fullData
        .filter(t => t.meta && t.meta.kind === 'upper_limit').map(t => t.marker.symbol)""")
    assert symbols and set(symbols) == {"arrow-bar-down"}, "upper limits are drawn as arrows"
    # a legend entry hides its trace, a second click shows it again
    legend = page.locator("#lightcurve .legend .traces").first
    name = legend.locator(".legendtext").text_content()
    legend.click()
    page.wait_for_function("name => document.getElementById('lightcurve').data.find(t => t.name === name)"
                           ".visible === 'legendonly'", arg=name)
    legend.click()
    page.wait_for_function("name => document.getElementById('lightcurve').data.find(t => t.name === name)"
                           ".visible !== 'legendonly'", arg=name)

    # the page opens on the latest alert's stamps; click the detection of another alert that has stamps
    with_stamps = page.locator("#alert-list button.alert").evaluate_all("bs => bs.map(b => b.dataset.alertId)")
    assert len(with_stamps) >= 2, "the chosen candidate needs two alerts with stamps"
    expect(page.locator("#stamp-candid")).to_have_text(with_stamps[0])
    target = with_stamps[-1]
    page.locator("#lightcurve").scroll_into_view_if_needed()
    x, y = page.evaluate("""alertId => {
        const gd = document.getElementById('lightcurve');
        const i = gd.data.findIndex(t => t.meta && t.meta.kind === 'detection'
                                      && t.customdata.some(c => c[0] === alertId));
        const j = gd.data[i].customdata.findIndex(c => c[0] === alertId);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(gd.data[i].x[j]), box.top + ya._offset + ya.l2p(gd.data[i].y[j])];
    }""", target)
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    expect(page.locator("#stamp-candid")).to_have_text(target)
    page.wait_for_function(STAMPS_LOADED_JS)
    page.mouse.move(5, 5)  # the point's hover label off the screenshot
    expect(page.locator("#links a", has_text="ALeRCE")).to_have_attribute("href", f"https://alerce.online/object/{oid}")
    _shot(page, artifacts, "03-object-ztf")


def test_rubin_object_keeps_its_64_bit_id_and_shows_flux_and_magnitude(page, home, artifacts):
    oid, n_det = _gold(home, "select objectId, ndet from gold.object where survey = 'lsst' "
                             "order by ndet desc, objectId limit 1")[0]
    assert int(oid) > 2**53, "a Rubin id JavaScript would round as a number"
    page.goto(f"/objects/{oid}")
    page.wait_for_selector("#page[data-ready=true]")
    expect(page.locator("#title")).to_have_text(f"Rubin diaObject {oid}")
    traces = _traces(page, "lightcurve")
    flux = collections.Counter()
    mags = collections.Counter()
    for t in traces:
        meta = t["meta"] or {}
        if meta.get("kind") == "detection":
            (flux if meta["panel"] == "flux" else mags)[meta["fid"]] += len(t["x"])
    gold_flux = dict(_gold(home, "select fid, count(*) from gold.lightcurve where objectId = ? and "
                                 "point_kind = 'detection' and flux is not null group by fid", [oid]))
    gold_mag = dict(_gold(home, "select fid, count(*) from gold.lightcurve where objectId = ? and "
                                "point_kind = 'detection' and mag is not null group by fid", [oid]))
    assert dict(flux) == gold_flux and sum(flux.values()) == n_det
    assert dict(mags) == gold_mag
    # forced photometry: every forced flux, hollow markers, legend entries of their own
    forced = [t for t in page.evaluate("() => document.getElementById('lightcurve')._fullData.map(t => ({"
                                       "meta: t.meta, n: t.x.length, symbol: t.marker.symbol, legend: t.showlegend}))")
              if (t["meta"] or {}).get("kind") == "forced"]
    assert sum(t["n"] for t in forced) == _gold(home, "select count(*) from gold.lightcurve where objectId = ? and "
                                                      "point_kind = 'forced' and flux is not null", [oid])[0][0] > 0
    assert all(t["symbol"].endswith("-open") and t["legend"] for t in forced)
    page.wait_for_function(STAMPS_LOADED_JS)  # the latest alert's stamps (raw FITS cutouts, drawn as PNG)
    ids = {c[0] for t in traces if (t["meta"] or {}).get("kind") == "detection" for c in t["customdata"]}
    assert ids == {str(r[0]) for r in _gold(home, "select point_id from gold.lightcurve where objectId = ? "
                                                  "and point_kind = 'detection'", [oid])}
    _shot(page, artifacts, "04-object-rubin")


def test_cone_search_finds_the_object_and_links_to_it(page, home, artifacts):
    oid = _richest_candidate(home)
    ra, dec = _gold(home, "select meanra, meandec from gold.object where objectId = ?", [oid])[0]
    page.goto("/cone")
    page.fill("#cone-form [name=ra]", f"{ra + 2 / 3600:.6f}")
    page.fill("#cone-form [name=dec]", f"{dec:.6f}")
    page.fill("#cone-form [name=radius_arcsec]", "30")
    page.click("#cone-form button[type=submit]")
    page.wait_for_url("**/cone?*ra=*")
    link = page.locator("#results tbody a", has_text=oid)
    expect(link).to_be_visible()
    _shot(page, artifacts, "05-cone")
    link.click()
    page.wait_for_url(f"**/objects/{oid}")
    expect(page.locator("#title")).to_have_text(oid)


def test_sql_console_runs_a_query_and_offers_its_csv(page, home, artifacts):
    query = ("select objectId, survey, ndet from gold.object where ndet >= 2 "
             "order by ndet desc, objectId limit 7")
    page.goto("/sql")
    page.fill("#sql", query)
    page.click("#sql-form button[type=submit]")
    page.wait_for_url("**/sql?sql=*")
    expect(page.locator("#status")).to_contain_text("7 row(s)")
    cells = page.locator("#results tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")
    want = _gold(home, query)
    assert cells == [[oid, survey, str(ndet)] for oid, survey, ndet in want]
    href = page.locator("#csv").get_attribute("href")
    assert "format=csv" in href
    answer = page.request.get(href)
    assert answer.ok and "csv" in answer.headers["content-type"]
    rows = list(csv.reader(io.StringIO(answer.text())))
    assert rows[0] == ["objectId", "survey", "ndet"]
    assert rows[1:] == [[oid, survey, str(ndet)] for oid, survey, ndet in want]
    _shot(page, artifacts, "06-sql")
    # a statement the API refuses: its one-line reason, shown as text
    page.fill("#sql", "select * from read_csv('/etc/passwd')")
    page.click("#sql-form button[type=submit]")
    expect(page.locator("#status.error")).to_be_visible()
    expect(page.locator("#results table")).to_have_count(0)


def test_markup_in_an_id_is_shown_as_text(page):
    """An id carrying markup reaches the page only as text: no element is made from it."""
    bad = '<img src=x onerror="window.pwned=1">'
    page.goto("/objects/" + urllib.request.quote(bad, safe=""))
    expect(page.locator("#status.error")).to_be_visible()
    expect(page.locator("#title")).to_have_text(bad)
    assert page.locator("main img[src=x]").count() == 0
    assert page.evaluate("() => window.pwned === undefined")
