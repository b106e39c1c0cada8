"""The explorer's StarRocks backend (``ATEDA_EXPLORER_BACKEND=starrocks``, :mod:`ateda.explorer.starrocks`) against
a real MySQL-protocol server, answer for answer equal to the DuckDB backend on the same data.

StarRocks cannot run on this machine, so **MariaDB stands in for StarRocks' MySQL protocol only**: the connection,
the driver, parameters, types, the pool, the change signal (``information_schema.tables``), a read-only user's
privileges and a server-side time limit. MariaDB is not StarRocks: it rejects StarRocks' DDL, so the test loads the
tables the explorer reads (every gold table, the silver crossmatches) from the DuckDB warehouse of the session fixture
``explorer_home`` (real ZTF alerts and a generated Rubin night) with plain CREATE TABLE/INSERT into databases
``ateda_sr_<hex>_gold`` and ``..._silver`` (``ATEDA_EXPLORER_DATABASE_PREFIX``, so that concurrent runs never
share a database), binary collation as StarRocks compares strings, and drops them afterwards. The SQL the backend
sends is StarRocks SQL written by sqlglot; that MariaDB runs it shows the protocol path, not the StarRocks dialect,
which sqlglot checks (every statement here transpiled and read back as StarRocks). The SQL endpoint's time limit is
MariaDB's ``max_statement_time`` here, StarRocks' ``query_timeout`` in the cluster (one switch,
:func:`ateda.explorer.starrocks.timeout_statement`): the StarRocks branch is not run here.

Then both servers (real uvicorn) answer the same requests: objects with filters, sort and pages (JSON, CSV, VOTable),
one object of each survey and an unknown one, light curves, cones with and without a time window, SCS, nights, the
SQL endpoint (its answers, its refusals, its time limit), and a change made in MariaDB is seen after the change
signal moves (a new generation: cone index, id set, counts).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import time
import uuid
from dataclasses import replace

import duckdb
import httpx
import mysql.connector
import pytest
import sqlglot
from astropy.io import votable

from ateda.errors import ConfigError
from ateda.explorer.app import create_app
from ateda.explorer.starrocks import StarRocksStore, timeout_statement, transpile
from ateda.warehouse import location
from conftest import explorer_server

MARIADB = dict(host="127.0.0.1", port=3306, user="root", password="")  # this machine's server
PORTS = range(18800, 18900)
STAR = "ZTF18aauqcsv"
TIMEOUT_S = 2.0
# what the explorer reads: every gold table (transient_candidates is a view in DuckDB: a table here), the crossmatches
TABLES = ("gold.object", "gold.lightcurve", "gold.magstats", "gold.lsst_fluxstats", "gold.nightly_summary",
          "gold.object_catalog_match", "gold.survey_match", "gold.transient_candidates", "silver.crossmatch_ps1",
          "silver.crossmatch_gaia", "silver.crossmatch_ss")
SQL_TYPES = {"BIGINT": "bigint", "INTEGER": "int", "DOUBLE": "double", "BOOLEAN": "boolean", "DATE": "date",
             "TIMESTAMP WITH TIME ZONE": "datetime(6)", "TIMESTAMP": "datetime(6)"}


def _root():  # noqa: ANN202
    return mysql.connector.connect(**MARIADB, autocommit=True)


def _value(v):  # noqa: ANN001, ANN202
    """A DuckDB value as MariaDB stores it: NaN/inf as NULL (MariaDB has no NaN; JSON shows both as null), aware
    timestamps as UTC."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def _load(wh: duckdb.DuckDBPyConnection, cursor, prefix: str, table: str) -> None:  # noqa: ANN001
    schema, name = table.split(".")
    cols = wh.execute("select column_name, data_type from information_schema.columns where table_schema = ? and "
                      "table_name = ? order by ordinal_position", [schema, name]).fetchall()
    rows = wh.execute(f"select * from {table}").fetchall()
    defs = []
    for i, (col, kind) in enumerate(cols):
        if kind == "VARCHAR":
            longest = max((len(r[i]) for r in rows if r[i] is not None), default=1)
            sql_type = f"varchar({longest + 8})" if longest < 1000 else "text"
        else:
            sql_type = SQL_TYPES[kind]
        defs.append(f"`{col}` {sql_type}")
    cursor.execute(f"create table `{prefix}{schema}`.`{name}` ({', '.join(defs)})")
    if rows:
        cursor.executemany(f"insert into `{prefix}{schema}`.`{name}` values ({', '.join(['%s'] * len(cols))})",
                           [tuple(_value(v) for v in r) for r in rows])


@pytest.fixture(scope="module")
def mariadb(explorer_home):
    """explorer_home's gold and silver tables in MariaDB databases <prefix>gold, <prefix>silver, and a read-only user
    (SELECT on those two only); yields (prefix, user, password). Dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    prefix, user, password = f"ateda_sr_{tag}_", f"ateda_sr_{tag}", uuid.uuid4().hex
    root = _root()
    cursor = root.cursor()
    try:
        for schema in ("gold", "silver"):
            cursor.execute(f"create database `{prefix}{schema}` character set utf8mb4 collate utf8mb4_bin")
        with duckdb.connect(str(location.duckdb_path(explorer_home)), read_only=True) as wh:
            for table in TABLES:
                _load(wh, cursor, prefix, table)
        cursor.execute(f"create user '{user}'@'%' identified by '{password}'")
        for schema in ("gold", "silver"):
            cursor.execute(f"grant select on `{prefix}{schema}`.* to '{user}'@'%'")
        yield prefix, user, password
    finally:
        cursor.execute(f"drop user if exists '{user}'@'%'")
        for schema in ("gold", "silver"):
            cursor.execute(f"drop database if exists `{prefix}{schema}`")
        root.close()


def _starrocks_settings(explorer_home, prefix: str, user: str, password: str):  # noqa: ANN001, ANN202
    return replace(explorer_home,
                   explorer=replace(explorer_home.explorer, backend="starrocks", database_prefix=prefix,
                                    sql_timeout_s=TIMEOUT_S),
                   dbt=replace(explorer_home.dbt, starrocks_host=MARIADB["host"], starrocks_port=MARIADB["port"],
                               starrocks_user=user, starrocks_password=password))


@pytest.fixture(scope="module")
def both(explorer_home, mariadb):
    """(DuckDB app, its client, StarRocks app, its client), both on real uvicorn."""
    duck = replace(explorer_home, explorer=replace(explorer_home.explorer, sql_timeout_s=TIMEOUT_S))
    star = _starrocks_settings(explorer_home, *mariadb)
    with explorer_server(duck, PORTS) as (duck_app, duck_base), explorer_server(star, PORTS) as (star_app, star_base), \
            httpx.Client(base_url=duck_base, timeout=60) as duck_client, \
            httpx.Client(base_url=star_base, timeout=60) as star_client:
        yield duck_app, duck_client, star_app, star_client


def _same(both, path: str, params: dict | None = None, method: str = "GET", json: dict | None = None):  # noqa: ANN001, ANN201
    """The two backends' answers to one request: same status, same body (JSON parsed; CSV and VOTable as bytes)."""
    _, duck, _, star = both
    a = duck.request(method, path, params=params, json=json)
    b = star.request(method, path, params=params, json=json)
    assert a.status_code == b.status_code, f"{path} {params}: duckdb {a.status_code} {a.text[:200]} / starrocks " \
                                           f"{b.status_code} {b.text[:200]}"
    if a.headers.get("content-type", "").startswith("application/json"):
        assert a.json() == b.json(), f"{path} {params}"
        return a.json()
    assert a.content == b.content, f"{path} {params}"
    return a


def _ids(both, sql: str) -> list:  # noqa: ANN001
    with both[0].state.store.connect() as con:
        return [r[0] for r in con.execute(sql, record=False).fetchall()]


# ---------------------------------------------------------------- the backend is the one asked for


def test_the_backend_is_selected_by_one_setting(both, explorer_home, mariadb):
    duck_app, _, star_app, star = both
    assert type(star_app.state.store) is StarRocksStore and type(duck_app.state.store) is not StarRocksStore
    health = star.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["warehouse"]  # the latest UPDATE_TIME of the loaded tables
    bad = replace(explorer_home, explorer=replace(explorer_home.explorer, backend="oracle"))
    with pytest.raises(ConfigError, match="ATEDA_EXPLORER_BACKEND"):
        create_app(bad)


def test_an_unreachable_or_empty_server_is_503(explorer_home, mariadb):
    prefix, user, password = mariadb
    nowhere = replace(_starrocks_settings(explorer_home, prefix, user, password), dbt=replace(
        explorer_home.dbt, starrocks_host="127.0.0.1", starrocks_port=PORTS[-1], starrocks_user=user))
    empty = _starrocks_settings(explorer_home, f"ateda_sr_{uuid.uuid4().hex[:8]}_", MARIADB["user"], "")
    denied = _starrocks_settings(explorer_home, f"ateda_sr_{uuid.uuid4().hex[:8]}_", user, password)
    for s, said in ((nowhere, "does not answer"), (empty, "ateda refresh"), (denied, f"refuses user {user}")):
        with explorer_server(s, PORTS) as (_, base), httpx.Client(base_url=base) as client:
            assert client.get("/api/v1/health").json()["warehouse"] is None
            r = client.get("/api/v1/objects")
            assert r.status_code == 503 and said in r.json()["detail"], r.text


# ---------------------------------------------------------------- the same answers


@pytest.mark.parametrize("params", [
    {"limit": 1000},
    {"survey": "lsst", "limit": 1000},
    {"survey": "ztf", "sort": "ndet", "order": "asc", "limit": 1000},
    {"candidate": "true"},
    {"candidate": "false", "sort": "meanra", "limit": 30},
    {"min_ndet": 3, "max_ndet": 20, "since": 58000, "limit": 1000},
    {"until": 59000, "sort": "last_rb", "order": "desc"},
    {"sort": "min_ssdist_arcsec", "order": "asc", "limit": 13, "offset": 4},
    {"sort": "objectId", "order": "asc", "limit": 7, "offset": 21},
    {"sort": "is_stellar", "limit": 1000},
    {"offset": 10_000},
    {"limit": 1000, "format": "csv"},
    {"limit": 1000, "format": "votable"},
    {"survey": "lsst", "format": "votable", "sort": "last_candid"},
])
def test_objects(both, params):
    body = _same(both, "/api/v1/objects", params)
    if isinstance(body, dict) and params.get("limit") == 1000 and len(params) == 1:
        assert body["total"] == len(body["rows"]) > 50
        assert {r["survey"] for r in body["rows"]} == {"ztf", "lsst"}


def test_objects_pages_add_up(both):
    pages = [_same(both, "/api/v1/objects", {"sort": "ndet", "limit": 7, "offset": o})["rows"] for o in range(0, 35, 7)]
    whole = _same(both, "/api/v1/objects", {"sort": "ndet", "limit": 35})["rows"]
    assert [r["objectId"] for p in pages for r in p] == [r["objectId"] for r in whole]


def test_one_object_of_each_survey_and_an_unknown_one(both):
    ztf = _same(both, f"/api/v1/objects/{STAR.lower()}")
    assert ztf["object"]["objectId"] == STAR and ztf["magstats"] and ztf["ps1"]
    rubin = _ids(both, "select objectId from gold.object where survey = 'lsst' order by ndet desc, objectId limit 3")
    for oid in rubin:
        assert _same(both, f"/api/v1/objects/{oid}")["fluxstats"]
    for oid in _ids(both, "select objectId from gold.object where survey = 'ztf' order by objectId"):
        _same(both, f"/api/v1/objects/{oid}")
    assert "bronze" in _same(both, "/api/v1/objects/ZTF99zzzzzzz")["detail"]


def test_lightcurves(both):
    forced = _ids(both, "select distinct objectId from gold.lightcurve where point_kind = 'forced' order by 1 limit 4")
    rubin = _ids(both, "select objectId from gold.object where survey = 'lsst' order by objectId limit 2")
    for oid in {STAR, *forced, *rubin}:
        body = _same(both, f"/api/v1/objects/{oid}/lightcurve")
        assert body["rows"] and body["units"]["flux"] == "nJy"
    for fmt in ("csv", "votable"):
        _same(both, f"/api/v1/objects/{STAR}/lightcurve", {"format": fmt})
    assert _same(both, f"/api/v1/objects/{STAR}/cutouts")
    _same(both, "/api/v1/objects/ZTF99zzzzzzz/lightcurve")


def _centre(both) -> tuple[float, float]:  # noqa: ANN001
    with both[0].state.store.connect() as con:
        return con.execute("select a.meanra, a.meandec from gold.object a, gold.object b where abs(a.meandec - "
                           "b.meandec) < 1 group by all order by count(*) desc, a.meanra limit 1",
                           record=False).fetchone()


def test_cones_with_and_without_a_time_window(both):
    ra, dec = _centre(both)
    for radius in (3600, 900, 5):
        body = _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": radius})
        assert body["total"] == len(body["rows"])
    assert len(body["rows"]) >= 1
    wide = _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": 3600})
    inside = ", ".join(f"'{r['objectId']}'" for r in wide["rows"])
    with both[0].state.store.connect() as con:  # the cone's detections: a window holding some of its objects
        firsts = sorted(r[0] for r in con.execute(f"select min(mjd) from gold.lightcurve where point_kind = "
                                                  f"'detection' and objectId in ({inside}) group by objectId",
                                                  record=False).fetchall())
    since, until = firsts[0], firsts[len(firsts) // 2]  # the objects first seen later are out
    windowed = _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": 3600, "since": since,
                                            "until": until})
    assert windowed["rows"] and {r["objectId"] for r in windowed["rows"]} <= {r["objectId"] for r in wide["rows"]}
    assert not _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": 3600, "since": firsts[-1] + 1e4})[
        "rows"]
    _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": 3600, "since": since})
    _same(both, "/api/v1/cone", {"ra": ra, "dec": dec, "radius_arcsec": 3600, "until": until, "format": "votable"})
    _same(both, "/api/v1/cone", {"ra": (ra + 180) % 360, "dec": -dec, "radius_arcsec": 10})  # nothing there
    _same(both, "/scs", {"RA": ra, "DEC": dec, "SR": 0.5})
    _same(both, "/scs", {"RA": ra, "DEC": dec, "SR": 0})


def test_nights(both):
    for params in ({}, {"survey": "ztf"}, {"survey": "lsst"}, {"format": "csv"}, {"format": "votable"}):
        _same(both, "/api/v1/nights", params)
    assert len(_same(both, "/api/v1/nights")["rows"]) > 10


# ---------------------------------------------------------------- the SQL endpoint


@pytest.mark.parametrize("sql", [
    "select objectId, last_candid, ndet, is_stellar from object order by objectId",
    "select o.objectId, count(*) as n from gold.lightcurve l join gold.object o on o.objectId = l.objectId "
    "where l.point_kind = 'detection' group by o.objectId order by n desc, o.objectId",
    "with x as (select * from gold.lightcurve where objectId = 'ZTF18aauqcsv') select mjd, mag from x order by mjd, mag",
    "select survey, night, fid from gold.nightly_summary order by night desc, survey, fid",
    "select candid, ss_name, dist_arcsec from silver.crossmatch_ss order by candid, ss_name",
    "select 1 as a",
])
def test_sql_answers_equal(both, sql):
    body = _same(both, "/api/v1/sql", {"sql": sql})
    assert body["rows"]
    _same(both, "/api/v1/sql", {"sql": sql, "limit": 3})
    _same(both, "/api/v1/sql", method="POST", json={"sql": sql, "limit": 5}, params={"format": "csv"})


HOSTILE = [
    "select * from read_csv('/etc/passwd')",
    "select load_file('/etc/passwd')",
    "select * from files('s3://lake/x.parquet')",
    "select * from gold.object into outfile '{out}/x.csv'",
    "select * into t2 from gold.object",
    "select sleep(100)",
    "select benchmark(100000000, md5('x'))",
    "select * from '/etc/passwd'",
    "copy (select 1) to '{out}/copy.csv'",
    "create table x as select 1",
    "insert into gold.object (objectId) values ('x')",
    "update gold.object set ndet = 0",
    "delete from gold.object",
    "drop table gold.object",
    "set query_timeout = 100000",
    "set max_statement_time = 0",
    "show databases",
    "kill query 1",
    "grant all on *.* to x",
    "select 1; drop table gold.object",
    "",
]


@pytest.mark.parametrize("statement", HOSTILE)
def test_sql_refuses_hostile_statements_on_both(both, statement, tmp_path):
    _, duck, _, star = both
    text = statement.format(out=tmp_path)
    for client in (duck, star):
        r = client.post("/api/v1/sql", json={"sql": text})
        assert r.status_code in (400, 422), f"{client.base_url}: {r.text}"
    assert not list(tmp_path.iterdir()), "a refused statement wrote a file"


def test_on_starrocks_the_sql_endpoint_reads_gold_and_silver_only(both):
    _, duck, _, star = both
    for sql in ("select user, password from mysql.user", "select * from information_schema.tables",
                "select * from bronze.alert", "select * from ateda_lake.bronze.alert"):
        r = star.get("/api/v1/sql", params={"sql": sql})
        assert r.status_code == 400 and "gold and silver" in r.json()["detail"], r.text
    hint = "select /*+ SET_VAR(query_timeout = 100000) */ count(*) as n from object"  # comments never sent
    assert star.get("/api/v1/sql", params={"sql": hint}).json() == duck.get("/api/v1/sql", params={"sql": hint}).json()


def test_the_read_only_user_refuses_what_slips_past_the_parser(both, tmp_path):
    """The second wall on its own: the StarRocks store's user can read gold and silver, nothing else."""
    _, _, star_app, _ = both
    for statement in ("drop table gold.object", "create table gold.x (a int)", "insert into gold.object (objectId) "
                      "values ('x')", f"select 1 into outfile '{tmp_path}/x.csv'", "select * from mysql.user"):
        with star_app.state.store.connect() as con, pytest.raises(mysql.connector.Error):
            con._run(statement)
    with star_app.state.store.connect() as con:
        assert con._run("select load_file('/etc/passwd')").fetchone() == (None,)  # no FILE privilege
    assert not list(tmp_path.iterdir())


def test_sql_past_its_time_limit_is_408_on_both_and_the_servers_keep_answering(both):
    sql = "select count(*) from gold.lightcurve a, gold.lightcurve b, gold.lightcurve c where a.mjd + b.mjd > c.mjd"
    _, duck, _, star = both
    for client in (duck, star):
        started = time.monotonic()
        r = client.post("/api/v1/sql", json={"sql": sql})
        assert r.status_code == 408 and f"{TIMEOUT_S:g} s" in r.json()["detail"], r.text
        assert time.monotonic() - started < TIMEOUT_S + 5
        assert client.get("/api/v1/objects", params={"limit": 1}).json()["total"] > 0


def test_the_timeout_switch():
    assert timeout_statement("8.0.33", 10) == "set query_timeout = 10"  # StarRocks reports a MySQL version
    assert timeout_statement("8.0.33", 0.2) == "set query_timeout = 1"
    assert timeout_statement("10.11.19-MariaDB-0+deb12u1", 2.5) == "set session max_statement_time = 2.5"


# ---------------------------------------------------------------- the SQL it sent


def test_both_backends_issued_the_same_statements_and_each_is_starrocks_sql(both):
    duck_app, _, star_app, _ = both
    issued = star_app.state.store.issued
    assert issued == duck_app.state.store.issued and len(issued) >= 15
    for statement in sorted(issued):
        out = transpile(statement, "")
        assert "%s" in out or "?" not in statement
        sqlglot.parse_one(out.replace("%s", "?"), read="starrocks", error_level=sqlglot.ErrorLevel.RAISE)
    assert transpile("select * from gold.object o, silver.crossmatch_ps1 p where o.objectId = ?", "pre_") == \
        "SELECT * FROM pre_gold.object AS o, pre_silver.crossmatch_ps1 AS p WHERE o.objectId = %s"


# ---------------------------------------------------------------- generations (last: it changes the data)


def test_a_change_in_the_warehouse_starts_a_new_generation(both, mariadb):
    """A row added to gold.object (as a refresh would) is found by the cone index, the id check and the counts once
    the change signal moved; removed, it is gone again."""
    prefix = mariadb[0]
    _, _, star_app, star = both
    store = star_app.state.store
    store.check_every_s = 0.2
    before = star.get("/api/v1/objects", params={"limit": 1}).json()["total"]
    oid = "ZTF99aaaaaaa"
    root = _root()
    cursor = root.cursor()
    try:
        time.sleep(1.1)  # UPDATE_TIME has whole seconds: the change lands in a later one than the load
        cursor.execute(f"insert into `{prefix}gold`.`object` (objectId, survey, meanra, meandec, ndet, firstmjd, "
                       "lastmjd, is_stellar) values (%s, 'ztf', 123.456, -45.678, 2, 60000.5, 60001.5, false)", (oid,))
        deadline = time.monotonic() + 15
        while star.get("/api/v1/objects", params={"limit": 1}).json()["total"] == before:
            assert time.monotonic() < deadline, "the new row was never seen"
            time.sleep(0.1)
        assert star.get("/api/v1/objects", params={"limit": 1}).json()["total"] == before + 1
        cone = star.get("/api/v1/cone", params={"ra": 123.456, "dec": -45.678, "radius_arcsec": 1}).json()
        assert [r["objectId"] for r in cone["rows"]] == [oid] and cone["rows"][0]["dist_arcsec"] < 1e-6
        with store.connect() as con:
            assert con.has_object(oid)
        assert star.get(f"/api/v1/objects/{oid}").json()["object"]["meanra"] == 123.456
        time.sleep(1.1)
        cursor.execute(f"delete from `{prefix}gold`.`object` where objectId = %s", (oid,))
        deadline = time.monotonic() + 15
        while star.get("/api/v1/objects", params={"limit": 1}).json()["total"] != before:
            assert time.monotonic() < deadline, "the removal was never seen"
            time.sleep(0.1)
        assert not star.get("/api/v1/cone", params={"ra": 123.456, "dec": -45.678, "radius_arcsec": 1}).json()["rows"]
        with store.connect() as con:
            assert not con.has_object(oid)
    finally:
        cursor.execute(f"delete from `{prefix}gold`.`object` where objectId = %s", (oid,))
        root.close()
        store.check_every_s = 5.0
