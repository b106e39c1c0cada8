"""The TOM Toolkit broker module (ateda.tom.broker) inside a real TOM: a Django project made here with
`django-admin startproject` and tomtoolkit's own `manage.py tom_setup` (SQLite, its migrations), the broker enabled in
its settings (TOM_ALERT_CLASSES, BROKERS['ATEDA']['url']). The TOM runs with its own Python (.tools/tomvenv,
scripts/tomvenv.sh: tomtoolkit's pins exclude ATEDA's numpy and astropy) in a subprocess (tests/tom_driver.py); the
explorer app serves it over HTTP (uvicorn, a free port) from a warehouse of real ZTF alerts and a generated Rubin
night.

Checked against the warehouse (gold, read with DuckDB) and the API's own answers: a cone query returns the objects
the API's cone search returns, in its order; an object query returns that object, an unknown one nothing; to_target
makes a Target with the object's id and mean position; process_reduced_data imports the light curve as photometry
whose count per kind equals gold.lightcurve's rows of that object and whose values (time, magnitude, error, band,
limit, Rubin flux in nJy) equal them; importing twice adds nothing. And through the TOM's own pages: a saved cone
query, its results page listing the objects, "create target" from a result importing its light curve."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import httpx
import pytest

from ateda.config import Settings
from ateda.warehouse import location
from conftest import REPO, explorer_server

PORTS = range(18300, 18400)  # this module's ports (the explorer's own tests use 18100-18199)
TOKEN = "tom-test-token"
TIMES: dict[str, float] = {}  # seconds: making the TOM, driving it (in the last test's message)
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)
KINDS = ("detection", "upper_limit", "forced")


@pytest.fixture(scope="module")
def tom_python() -> Path:
    """The TOM's interpreter: tomtoolkit pinned in its own venv, installed on first use (about 2.5 min)."""
    out = subprocess.run(["bash", str(REPO / "scripts" / "tomvenv.sh")], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def home(explorer_home) -> Settings:
    """The explorer tests' warehouse: real ZTF alerts (ZTF18aauqcsv's, with upper limits and forced photometry,
    among them) and a generated Rubin night (detections and forced fluxes in nJy)."""
    return explorer_home


@pytest.fixture(scope="module")
def api(home):  # noqa: ANN201
    """The explorer app on uvicorn, in this process, behind a token (the broker sends it): its base URL."""
    with explorer_server(replace(home, explorer=replace(home.explorer, token=TOKEN)), ports=PORTS) as (_, base):
        yield base


@pytest.fixture(scope="module")
def tom(tmp_path_factory, tom_python, api) -> Path:
    """A TOM made as tomtoolkit's documentation says: startproject, 'tom_setup' in INSTALLED_APPS, `manage.py
    tom_setup` (its prompts answered: custom code app, sidereal targets, no hints; it writes the TOM's settings.py),
    the ATEDA broker added to those settings, `manage.py migrate` (SQLite)."""
    started = time.monotonic()
    root = tmp_path_factory.mktemp("tom")
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared")}  # ateda.tom on the TOM's path, as if installed
    run = dict(capture_output=True, text=True, timeout=300, env=env)
    out = subprocess.run([str(tom_python.parent / "django-admin"), "startproject", "atom"], cwd=root, **run)
    assert out.returncode == 0, out.stderr
    project = root / "atom"
    settings_py = project / "atom" / "settings.py"
    text = settings_py.read_text()
    assert "'django.contrib.staticfiles',\n" in text
    settings_py.write_text(text.replace("'django.contrib.staticfiles',\n",
                                        "'django.contrib.staticfiles',\n    'tom_setup',\n", 1))
    out = subprocess.run([str(tom_python), "manage.py", "tom_setup"], cwd=project, input="y\n\n1\nn\n", **run)
    assert out.returncode == 0 and "Setup complete" in out.stdout, out.stdout + out.stderr
    with settings_py.open("a") as fh:
        fh.write(f"\n# ATEDA (docs/explorer.md, 'TOM Toolkit')\n"
                 f"INSTALLED_APPS += ['tom_alerts']\n"
                 f"TOM_ALERT_CLASSES = ['ateda.tom.broker.AtedaBroker']\n"
                 f"BROKERS = {{'ATEDA': {{'url': {api!r}, 'token': {TOKEN!r}}}}}\n"
                 f"CACHES = {{'default': {{'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}}}\n")
    urls_py = project / "atom" / "urls.py"
    text = urls_py.read_text()
    assert "    path('', include('tom_common.urls')),\n" in text
    urls_py.write_text(text.replace("    path('', include('tom_common.urls')),\n",
                                    "    path('alerts/', include('tom_alerts.urls', namespace='alerts')),\n"
                                    "    path('', include('tom_common.urls')),\n", 1))
    out = subprocess.run([str(tom_python), "manage.py", "migrate", "--no-input"], cwd=project, **run)
    assert out.returncode == 0, out.stdout + out.stderr
    TIMES["tom_created_s"] = time.monotonic() - started
    return project


def _drive(tom_python: Path, project: Path, plan: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(REPO / "shared")])}
    out = subprocess.run([str(tom_python), str(REPO / "tests" / "tom_driver.py"), "atom.settings"], cwd=project,
                         input=json.dumps(plan), capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-5000:]
    return json.loads(out.stdout)


def _gold(s: Settings, sql: str, params: list | None = None) -> list[dict]:
    with duckdb.connect(str(location.duckdb_path(s)), read_only=True) as con:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _mjd(iso: str) -> float:
    return (datetime.fromisoformat(iso) - MJD_EPOCH).total_seconds() / 86400.0


@pytest.fixture(scope="module")
def picked(home) -> dict:
    """Objects to import: the ZTF object with every kind of point (the most points among them) and the Rubin
    object with the most points; for the TOM's pages, the ZTF object with the most points of the others."""
    per_kind = _gold(home, "select objectId, survey, point_kind, count(*) n from gold.lightcurve group by all")
    kinds: dict[str, dict] = {}
    for r in per_kind:
        kinds.setdefault(r["objectId"], {"survey": r["survey"]})[r["point_kind"]] = r["n"]

    def most(survey: str, need: tuple[str, ...], but: tuple[str, ...] = ()) -> list[str]:
        return sorted((o for o, k in kinds.items() if k["survey"] == survey and all(k.get(x) for x in need)
                       and o not in but), key=lambda o: (-sum(kinds[o].get(x, 0) for x in KINDS), o))

    ztf, lsst = most("ztf", KINDS), most("lsst", ("detection", "forced"))
    assert ztf and lsst, "the warehouse holds a ZTF object with every kind of point, and a Rubin one"
    page = most("ztf", ("detection",), but=(ztf[0],))
    objects = {r["objectId"]: r for r in _gold(home, "select objectId, meanra, meandec, ndet, lastmjd, survey "
                                                     "from gold.object")}
    return {"ztf": ztf[0], "lsst": lsst[0], "page": page[0], "kinds": kinds, "objects": objects}


@pytest.fixture(scope="module")
def seen(tom, tom_python, api, picked) -> dict:
    """One run of the driver in the TOM (the broker's methods, then the TOM's pages)."""
    o = picked["objects"]
    rubin, ztf = o[picked["lsst"]], o[picked["ztf"]]
    cones = [{"ra": rubin["meanra"], "dec": rubin["meandec"], "radius_arcsec": 3600.0},
             {"ra": ztf["meanra"], "dec": ztf["meandec"], "radius_arcsec": 2.0},
             {"ra": rubin["meanra"], "dec": rubin["meandec"], "radius_arcsec": 3600.0, "since": rubin["lastmjd"] + 1}]
    page = o[picked["page"]]
    plan = {
        "forms": {"object": {"object_id": picked["ztf"]}, "cone": {"ra": 10, "dec": 20, "radius_arcsec": 5},
                  "neither": {}, "both": {"object_id": "x", "ra": 1, "dec": 2, "radius_arcsec": 5},
                  "bad_dec": {"ra": 10, "dec": 95, "radius_arcsec": 5}},
        "cones": cones,
        "objects": [picked["ztf"], picked["lsst"], picked["ztf"].lower(), "ZTF00notthere", "1"],
        "imports": [picked["ztf"], picked["lsst"]],
        "page": {"query": {"ra": page["meanra"], "dec": page["meandec"], "radius_arcsec": 30},
                 "pick": picked["page"], "expect": [picked["page"]]},
    }
    started = time.monotonic()
    out = _drive(tom_python, tom, plan)
    out["plan"] = plan
    TIMES["driver_s"] = time.monotonic() - started
    return out


@pytest.mark.slow
def test_the_tom_loads_our_broker_and_its_form_checks_input(seen):
    assert seen["broker"] == "ateda.tom.broker.AtedaBroker"
    errors = seen["form_errors"]
    assert errors["object"] == {} and errors["cone"] == {}
    assert list(errors["neither"]) == ["__all__"] and list(errors["both"]) == ["__all__"]
    assert list(errors["bad_dec"]) == ["dec"], "a bad coordinate is that field's error, nothing else"


@pytest.mark.slow
def test_misconfigured_broker_says_so(seen):
    """A wrong token is the API's 401 as requests' HTTPError (the TOM's query page shows it); no URL is the
    AttributeError the TOM turns into "not properly configured"."""
    assert seen["misconfigured"] == {"wrong_token": ["HTTPError", 401], "no_url": ["NotConfigured", None]}


@pytest.mark.slow
def test_cone_query_returns_what_the_api_returns(seen, api):
    """Each cone: the objects (ids exact, in the API's order), positions, distances, as GET /api/v1/cone gives."""
    for cone, got in zip(seen["plan"]["cones"], seen["cones"]):
        want = httpx.get(f"{api}/api/v1/cone", params=cone, headers={"authorization": f"Bearer {TOKEN}"}).json()
        want = want["rows"] if isinstance(want, dict) else want
        assert [g["id"] for g in got] == [str(w["objectId"]) for w in want], cone
        assert [(g["ra"], g["dec"], g["dist_arcsec"]) for g in got] == \
            [(w["meanra"], w["meandec"], w["dist_arcsec"]) for w in want]
    ztf, lsst = seen["plan"]["imports"]
    assert len(seen["cones"][0]) > 1 and seen["cones"][0][0]["id"] == lsst, "a degree around a Rubin object"
    assert seen["cones"][1] and seen["cones"][1][0]["id"] == ztf, "2 arcsec around a ZTF object"
    assert lsst not in {g["id"] for g in seen["cones"][2]}, "a time window after its last detection"


@pytest.mark.slow
def test_object_query_returns_that_object(seen, picked, api):
    ztf, lsst = seen["plan"]["imports"]
    for oid in (ztf, lsst):
        (got,) = seen["objects"][oid]
        obj = picked["objects"][oid]
        assert (got["id"], got["name"], got["ra"], got["dec"], got["score"]) == \
            (oid, oid, obj["meanra"], obj["meandec"], obj["ndet"])
        assert abs(_mjd(got["timestamp"]) - obj["lastmjd"]) < 1e-9
        assert got["url"] == f"{api}/objects/{oid}"
    assert [g["id"] for g in seen["objects"][ztf.lower()]] == [ztf], "ids in any case, as the API takes them"
    assert seen["objects"]["ZTF00notthere"] == [] and seen["objects"]["1"] == []


@pytest.mark.slow
def test_to_target_makes_the_object_a_target(seen, picked):
    for oid in seen["plan"]["imports"]:
        t = seen["imports"][oid]["target"]
        obj = picked["objects"][oid]
        assert (t["name"], t["ra"], t["dec"], t["type"]) == (oid, obj["meanra"], obj["meandec"], "SIDEREAL")


@pytest.mark.slow
def test_light_curve_imported_as_photometry_equal_to_gold(seen, home):
    """Per kind, as many datums as gold.lightcurve rows of the object, each equal to its row: time (the TOM's
    datetime, and the MJD exactly), magnitude and error (detections, forced), limiting magnitude (upper limits,
    never a magnitude), band, Rubin's flux in nJy."""
    for oid in seen["plan"]["imports"]:
        imp = seen["imports"][oid]
        rows = _gold(home, "select * from gold.lightcurve where objectId = ?", [oid])
        got = imp["datums"]
        count = {k: sum(1 for r in rows if r["point_kind"] == k) for k in KINDS}
        assert {k: sum(1 for d in got if d["reduction_version"] == k) for k in KINDS} == count
        assert imp["saved_first"] == imp["saved_again"] == len(rows), "the second import updated, added nothing"
        by_id = {(d["reduction_version"], d["value"]["point_id"]): d for d in got}
        assert len(by_id) == len(got)
        for r in rows:
            d = by_id[(r["point_kind"], str(r["point_id"]))]
            assert d["value"]["mjd"] == r["mjd"] and abs(_mjd(d["timestamp"]) - r["mjd"]) < 1e-9
            band = r["band"] + (" forced" if r["point_kind"] == "forced" else "")
            assert (d["bandpass"], d["value"]["band"], d["value"]["survey"]) == (band, r["band"], r["survey"])
            assert (d["source_name"], d["source_location"], d["unit"]) == ("ATEDA", oid, "mag")
            assert d["telescope"] == {"ztf": "ZTF", "lsst": "Rubin"}[r["survey"]]
            if r["point_kind"] == "upper_limit":
                assert (d["limit"], d["brightness"], d["brightness_error"]) == (r["mag"], None, None)
            else:
                assert (d["brightness"], d["brightness_error"], d["limit"]) == (r["mag"], r["e_mag"], None)
            if r["survey"] == "lsst":
                assert (d["value"]["flux"], d["value"]["flux_err"], d["value"]["flux_unit"]) == \
                    (r["flux"], r["flux_err"], "nJy")
            else:
                assert "flux" not in d["value"]
    assert all(seen["imports"][oid]["datums"] for oid in seen["plan"]["imports"]), "light curves are not empty"


@pytest.mark.slow
def test_the_toms_own_pages_query_list_and_create_a_target(seen, picked, home):
    p = seen["page"]
    oid = seen["plan"]["page"]["pick"]
    assert p["create_status"] == 302 and p["parameters"]["ra"] == picked["objects"][oid]["meanra"]
    assert p["run_status"] == 200 and p["listed"] == [oid]
    assert p["create_target_status"] == 302
    obj = picked["objects"][oid]
    assert (p["target"]["name"], p["target"]["ra"], p["target"]["dec"]) == (oid, obj["meanra"], obj["meandec"])
    n = _gold(home, "select count(*) n from gold.lightcurve where objectId = ?", [oid])[0]["n"]
    assert p["datums"] == n > 0


@pytest.mark.slow
def test_the_tom_side_is_quick(seen):
    """The driver (Django's start, the queries, two imports, the pages) takes well under a minute and a half on two
    busy cores; making the TOM (startproject, tom_setup, migrate: most of it) is reported, not bounded."""
    assert TIMES["driver_s"] < 90, TIMES
