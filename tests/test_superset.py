"""Superset in the cluster (helmfile release `superset`, values deploy/values/superset.yaml.gotmpl) and its dashboards
as code (deploy/superset/, Superset's native import bundle), checked with real tools:

* `helmfile write-values` renders the release's values for both environments; what the chart is given is checked
  against the rest of the platform (StarRocks host, port and read-only user, the metadata database in ateda-pg, the
  Secrets secrets.sh creates, the bundle files shipped whole in extraConfigs). The chart itself (a remote chart)
  cannot be fetched here, so helm does not render it: like the other remote charts (tests/test_deploy.py) its values
  are checked by key;
* the bundle: the import format (metadata.yaml version, the fields Superset's import schemas require, the folder
  layout), every cross-reference (dashboard -> chart -> dataset -> database, native filters, chart fields -> dataset
  columns and metrics);
* the SQL: every virtual dataset's SQL, metric and filter parses with sqlglot (dialect starrocks, as the dbt checks
  do) and names only real silver/gold/bronze columns, read from a warehouse that dbt builds from real alerts;
* a real import: the pinned Superset of scripts/superset-requirements.txt (scripts/superset-env.sh, .tools/superset)
  with a SQLite metadata database and the configOverrides of the values file, the bundle zipped by the init script's
  own code and imported twice with `superset import-dashboards`, the database pointed at that DuckDB warehouse (the
  bronze tables attached as the StarRocks external catalog's name); then every chart's query, built by Superset
  from its dataset, runs there and returns rows.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from pathlib import Path

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp


ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "deploy" / "superset"
RELEASE = "superset/superset"
REQUIREMENTS = ROOT / "scripts" / "superset-requirements.txt"
KINDS = ("databases", "datasets", "charts", "dashboards")
# The fields Superset's import schemas (ImportV1*Schema) require, per kind.
REQUIRED = {
    "databases": {"database_name", "sqlalchemy_uri", "uuid", "version"},
    "datasets": {"table_name", "uuid", "database_uuid", "version"},
    "charts": {"slice_name", "viz_type", "uuid", "dataset_uuid", "version"},
    "dashboards": {"dashboard_title", "uuid", "version"},
}
# The Superset 6.1 visualizations the charts use (all in its frontend bundle).
VIZ_TYPES = {"echarts_timeseries_bar", "echarts_timeseries_line", "table", "big_number_total", "histogram_v2"}
IMPORT_TIMEOUT = 600
ENVIRONMENTS = ("kind", "prod")
# What a person deploying to prod exports (deploy/env/prod.yaml.gotmpl requires them), as tests/test_deploy.py does.
PROD_ENV = {"ATEDA_IMAGE_REGISTRY": "registry.example.org/ateda", "ATEDA_DOMAIN": "kn.example.org"}
TOOLS_BIN = ROOT / ".tools" / "bin"


def _tool(name: str) -> str:
    """helm/helmfile from .tools/bin (scripts/tools.sh) or PATH; missing fails (skips with ATEDA_ALLOW_NO_TOOLS=1)."""
    local = TOOLS_BIN / name
    path = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if not path:
        message = f"{name} is not installed: run scripts/tools.sh (it installs into .tools)"
        if os.environ.get("ATEDA_ALLOW_NO_TOOLS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path


@functools.lru_cache(maxsize=None)
def written_values(env_name: str) -> dict[str, dict]:
    """`helmfile -e <env> write-values` (the real tool, no cluster, no chart repository): release id -> values."""
    work = Path(tempfile.mkdtemp(prefix="ateda-superset-values-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEDA_", "HELM", "KUBE"))}
    env.update(HELM_CACHE_HOME=str(work / "cache"), HELM_CONFIG_HOME=str(work / "config"),
               HELM_DATA_HOME=str(work / "data"), KUBECONFIG=str(work / "no-kubeconfig"), HELMFILE_V1MODE="true")
    if env_name == "prod":
        env.update(PROD_ENV)
    proc = subprocess.run([_tool("helmfile"), "--helm-binary", _tool("helm"), "-e", env_name, "write-values",
                           "--skip-deps", "--output-file-template",
                           f"{work}/out/{{{{ .Release.Namespace }}}}/{{{{ .Release.Name }}}}.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"helmfile write-values ({env_name}) failed:\n{proc.stderr}"
    out = {f"{p.parent.name}/{p.stem}": yaml.safe_load(p.read_text()) or {} for p in sorted(work.glob("out/*/*.yaml"))}
    shutil.rmtree(work, ignore_errors=True)
    return out


def release_values(rid: str, env_name: str = "kind") -> dict:
    return written_values(env_name)[rid]


# ================================================================================================================
# The bundle as files


def bundle_files() -> dict[str, dict]:
    """Path relative to deploy/superset -> parsed YAML, every file of the bundle."""
    return {str(p.relative_to(BUNDLE)): yaml.safe_load(p.read_text()) for p in sorted(BUNDLE.rglob("*")) if p.is_file()}


def of_kind(kind: str) -> dict[str, dict]:
    return {path: doc for path, doc in bundle_files().items() if path.startswith(f"{kind}/")}


def by_uuid(kind: str) -> dict[str, dict]:
    return {doc["uuid"]: doc for doc in of_kind(kind).values()}


def test_bundle_has_the_native_import_layout():
    files = bundle_files()
    assert files["metadata.yaml"]["version"] == "1.0.0"
    assert files["metadata.yaml"].get("type") in (None, "Dashboard")  # none: importable as dashboards and datasets
    for path in files:
        assert path == "metadata.yaml" or path.split("/")[0] in KINDS, f"{path}: not a folder Superset imports"
        assert path.endswith(".yaml") and "__" not in path, f"{path}: a bundle file is a .yaml without '__'"
        assert "{{" not in (BUNDLE / path).read_text(), f"{path}: the chart passes extraConfigs through tpl"
    for kind in KINDS:
        assert of_kind(kind), f"no {kind} in the bundle"
        for path, doc in of_kind(kind).items():
            missing = REQUIRED[kind] - set(doc)
            assert not missing, f"{path}: lacks {sorted(missing)}"
            assert doc["version"] == "1.0.0", path
            assert str(uuid.UUID(doc["uuid"])) == doc["uuid"], f"{path}: uuid"
            depth = 3 if kind == "datasets" else 2
            assert len(path.split("/")) == depth, f"{path}: {kind} live in {kind}/{'<database>/' * (depth - 2)}"
    uuids = [doc["uuid"] for kind in KINDS for doc in of_kind(kind).values()]
    assert len(uuids) == len(set(uuids)), "a uuid is used twice"


def test_every_cross_reference_resolves():
    databases, datasets, charts = by_uuid("databases"), by_uuid("datasets"), by_uuid("charts")
    for path, ds in of_kind("datasets").items():
        db = databases.get(ds["database_uuid"])
        assert db, f"{path}: database {ds['database_uuid']} is not in the bundle"
        assert path.split("/")[1] == db["database_name"].replace(" ", "_"), f"{path}: folder is not its database's"
    used_charts, used_datasets = set(), set()
    for path, chart in of_kind("charts").items():
        assert chart["dataset_uuid"] in datasets, f"{path}: dataset {chart['dataset_uuid']} is not in the bundle"
        used_datasets.add(chart["dataset_uuid"])
    for path, dash in of_kind("dashboards").items():
        pos = dash["position"]
        assert pos["ROOT_ID"]["children"] == ["GRID_ID"]
        for key, node in pos.items():
            if not isinstance(node, dict):
                continue
            assert node["id"] == key, f"{path}: {key}"
            for child in node.get("children", []):
                assert child in pos and key in pos[child]["parents"], f"{path}: {key} -> {child} is not a tree"
        cells = [n for n in pos.values() if isinstance(n, dict) and n["type"] == "CHART"]
        assert cells and len({c["meta"]["chartId"] for c in cells}) == len(cells), f"{path}: chartIds not unique"
        for cell in cells:
            chart = charts.get(cell["meta"]["uuid"])
            assert chart, f"{path}: chart {cell['meta']['uuid']} is not in the bundle"
            assert cell["meta"]["sliceName"] == chart["slice_name"]
            used_charts.add(chart["uuid"])
        ids = {c["meta"]["chartId"] for c in cells}
        meta = dash["metadata"]
        for f in meta.get("native_filter_configuration", []):
            assert set(f["chartsInScope"]) <= ids, f"{path}: filter {f['id']} scopes a chart not on the dashboard"
            for target in f["targets"]:
                ds = datasets.get(target["datasetUuid"])
                assert ds, f"{path}: filter {f['id']} targets a dataset not in the bundle"
                assert target["column"]["name"] in {c["column_name"] for c in ds["columns"]}, f"{path}: {f['id']}"
                used_datasets.add(ds["uuid"])
        assert set(meta["global_chart_configuration"]["chartsInScope"]) <= ids
    assert used_charts == set(charts), f"charts on no dashboard: {set(charts) - used_charts}"
    assert used_datasets == set(datasets), f"datasets nothing uses: {set(datasets) - used_datasets}"


def _chart_fields(params: dict) -> tuple[set[str], set[str], list[str]]:
    """(columns, metrics, SQL filter expressions) a chart's params name."""
    columns = set(params.get("groupby") or []) | set(params.get("all_columns") or [])
    columns |= {params[k] for k in ("x_axis", "column") if params.get(k)}
    columns |= {json.loads(o)[0] for o in params.get("order_by_cols") or []}
    metrics = set(params.get("metrics") or []) | ({params["metric"]} if params.get("metric") else set())
    filters = [f["sqlExpression"] for f in params.get("adhoc_filters") or [] if f["expressionType"] == "SQL"]
    return columns, metrics, filters


def test_charts_name_only_their_datasets_columns_and_metrics():
    datasets = by_uuid("datasets")
    for path, chart in of_kind("charts").items():
        params = chart["params"]
        assert params["viz_type"] == chart["viz_type"] in VIZ_TYPES, path
        ds = datasets[chart["dataset_uuid"]]
        columns, metrics, filters = _chart_fields(params)
        assert columns or metrics, f"{path}: shows nothing"
        known = {c["column_name"] for c in ds["columns"]}
        assert columns <= known, f"{path}: columns {columns - known} are not in {ds['table_name']}"
        assert metrics <= {m["metric_name"] for m in ds["metrics"]}, f"{path}: unknown metric {metrics}"
        for sql in filters:
            names = {c.name for c in sqlglot.parse_one(sql, read="starrocks").find_all(exp.Column)}
            assert names <= known, f"{path}: filter {sql!r}"
        if params.get("x_axis"):
            assert next(c for c in ds["columns"] if c["column_name"] == params["x_axis"])["is_dttm"], path


# ================================================================================================================
# The release's values (helmfile write-values), wired to the rest of the platform


def _values(env_name: str = "kind") -> dict:
    return release_values(RELEASE, env_name)


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_release_values_pin_the_image_and_the_dialect(env_name):
    values = _values(env_name)
    assert values["image"]["repository"] == "apache/superset"
    assert re.fullmatch(r"\d+\.\d+\.\d+", values["image"]["tag"]), "pinned: an exact release"
    pins = dict(re.findall(r"^([A-Za-z][\w.-]*)==(\S+)$", REQUIREMENTS.read_text(), re.M))
    assert pins["apache_superset"] == values["image"]["tag"], "the test's Superset must be the cluster's"
    boot = re.findall(r"([A-Za-z][\w-]*)==([\w.]+)", values["bootstrapScript"])
    assert dict(boot).get("starrocks"), "the bootstrapScript must install the StarRocks dialect, pinned"
    for name, version in boot:
        assert pins.get(name) == version or pins.get(name.replace("-", "_")) == version or \
            {k.lower(): v for k, v in pins.items()}.get(name.lower()) == version, f"{name}=={version}: not the tested pin"
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False
    assert values["supersetWorker"]["replicas"]["replicaCount"] == 0


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_release_ships_the_whole_bundle_and_imports_it_in_the_init_job(env_name):
    values = _values(env_name)
    shipped = {k: v for k, v in values["extraConfigs"].items() if k.startswith("ateda_dashboards__")}
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", k) for k in shipped), "ConfigMap keys"
    files = {"ateda_dashboards__" + p.replace("/", "__"): (BUNDLE / p).read_text() for p in bundle_files()}
    assert set(shipped) == set(files), "extraConfigs must carry every bundle file (the folder list in the values)"
    for key, text in files.items():
        assert shipped[key].strip() == text.strip(), key
    init = values["init"]
    assert init["enabled"] and init["createAdmin"] is False
    script = init["initscript"]
    for step in ("superset db upgrade", "superset init", "superset fab create-admin",
                 "superset import-dashboards -p /tmp/ateda-dashboards.zip"):
        assert step in script, step
    assert "{{" not in script and "{{" not in values["configOverrides"]["ateda"], "the chart runs both through tpl"


def test_release_reaches_starrocks_and_postgres_as_the_platform_creates_them():
    values, catalog = _values(), release_values("starrocks/starrocks-catalog", "kind")
    db = next(iter(of_kind("databases").values()))
    from sqlalchemy.engine import make_url

    url = make_url(db["sqlalchemy_uri"])
    assert url.drivername == "starrocks" and url.password is None, "no password in the bundle"
    assert (url.host, url.port) == (catalog["feHost"], catalog["fePort"])
    assert url.username == catalog["readOnlyUser"]["name"]
    assert url.database == "default_catalog.gold"
    for ds in of_kind("datasets").values():
        for table in sqlglot.parse_one(ds["sql"], read="starrocks").find_all(exp.Table) if ds.get("sql") else []:
            if table.catalog:
                assert table.catalog == catalog["catalogName"], f"{ds['table_name']}: {table.sql()}"
    conn = values["supersetNode"]["connections"]
    pg = release_values("ateda/postgres", "kind")
    entry = next(d for d in pg["databases"] if d["name"] == conn["db_name"])
    assert entry["owner"] == conn["db_user"] and conn["db_pass"] == ""
    assert conn["db_host"] == f"{pg.get('name', 'ateda-pg')}-rw.ateda.svc.cluster.local"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in values["extraEnvRaw"]}
    assert env["DB_PASS"]["name"] == entry["credentialsSecret"], "the role's password Secret, copied to superset"
    sr_secret = env["ATEDA_STARROCKS_PASSWORD"]["name"]
    secrets = (ROOT / "deploy" / "scripts" / "secrets.sh").read_text()
    for ns, name in (("superset", sr_secret), ("starrocks", catalog["readOnlyUser"]["passwordSecret"])):
        assert re.search(rf"^secret {ns} {name} .*ATEDA_SUPERSET_STARROCKS_PASSWORD", secrets, re.M), (ns, name)
    assert "SQLALCHEMY_CUSTOM_PASSWORD_STORE" in values["configOverrides"]["ateda"]
    assert "SUPERSET_SECRET_KEY" in env and "ATEDA_SUPERSET_ADMIN_PASSWORD" in env


def test_no_credentials_in_the_bundle():
    """(The release's values are checked for secret literals with every other release's in tests/test_deploy.py.)"""
    for path, doc in of_kind("databases").items():
        assert not {"password", "encrypted_extra", "ssh_tunnel", "masked_encrypted_extra"} & set(doc), path
        assert ":" not in doc["sqlalchemy_uri"].split("://", 1)[1].split("@")[0], f"{path}: a password in the URI"


# ================================================================================================================
# The SQL against a warehouse dbt builds from real alerts


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A DuckDB warehouse (silver, gold and the bronze views) built by dbt from 120 of the real alerts."""
    from conftest import alert_files

    from ateda.config import Settings
    from ateda.ingest import run_ingest
    from ateda.warehouse import build, location

    home = tmp_path_factory.mktemp("superset-warehouse")
    s = Settings.from_env({"ATEDA_HOME": str(home / "home")})
    run_ingest(s, alert_files()[:120], quiet=True, bronze_only=True)
    assert build.refresh_models(s).success
    return location.duckdb_path(s)


@pytest.fixture(scope="module")
def warehouse_columns(warehouse) -> dict[tuple[str, str], dict[str, str]]:
    """(schema, table) -> column -> DuckDB type, for bronze, silver and gold."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select table_schema, table_name, column_name, data_type from information_schema.columns "
                           "where table_schema in ('bronze', 'silver', 'gold')").fetchall()
    out: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, dtype in rows:
        out.setdefault((schema, table), {})[column.lower()] = dtype
    return out


def _sql_tables(tree: exp.Expression, catalog_name: str) -> dict[str, tuple[str, str]]:
    """alias (or name) -> (schema, table) of every table the SQL reads; only warehouse/lake tables allowed."""
    out = {}
    for t in tree.find_all(exp.Table):
        assert t.db in ("silver", "gold", "bronze"), f"{t.sql()}: not a warehouse table"
        assert (t.catalog == catalog_name) == (t.db == "bronze"), f"{t.sql()}: bronze only through {catalog_name}"
        out[t.alias_or_name] = (t.db, t.name)
    return out


@pytest.mark.slow
def test_dataset_sql_names_only_real_columns(warehouse_columns):
    catalog_name = release_values("starrocks/starrocks-catalog", "kind")["catalogName"]
    for path, ds in of_kind("datasets").items():
        declared = {c["column_name"].lower(): c for c in ds["columns"]}
        if not ds.get("sql"):  # a physical dataset: the table as it is
            real = warehouse_columns.get((ds["schema"], ds["table_name"]))
            assert real, f"{path}: {ds['schema']}.{ds['table_name']} is not in the warehouse"
            assert set(declared) == set(real), f"{path}: columns differ from the table's {sorted(real)}"
            for name, col in declared.items():
                assert col["type"].split("(")[0] in real[name], f"{path}: {name} is {real[name]}, not {col['type']}"
        else:
            tree = sqlglot.parse_one(ds["sql"], read="starrocks", error_level=sqlglot.ErrorLevel.RAISE)
            for select in tree.find_all(exp.Select):
                tables = _sql_tables(select, catalog_name)
                for table in tables.values():
                    assert table in warehouse_columns, f"{path}: {'.'.join(table)} is not in the warehouse"
                for col in select.find_all(exp.Column):
                    if col.table in tables:  # a qualified column of a real table (others name derived columns)
                        assert col.name.lower() in warehouse_columns[tables[col.table]], \
                            f"{path}: {col.table}.{col.name} is not a column of {'.'.join(tables[col.table])}"
                    elif not col.table and len(tables) == 1 and select.find(exp.Table).parent_select is select:
                        assert col.name.lower() in warehouse_columns[next(iter(tables.values()))], \
                            f"{path}: {col.name} is not a column of {next(iter(tables.values()))}"
            selects = [tree] if isinstance(tree, exp.Select) else [tree.left, tree.right]
            for select in selects:
                assert [e.alias_or_name.lower() for e in select.expressions] == list(declared), \
                    f"{path}: the SQL's output columns are not the declared columns"
        for m in ds["metrics"]:
            names = {c.name.lower() for c in sqlglot.parse_one(m["expression"], read="starrocks").find_all(exp.Column)}
            assert names and names <= set(declared), f"{path}: metric {m['metric_name']}"


# ================================================================================================================
# A real import into the pinned Superset


def superset_python() -> str:
    """The pinned Superset's python (.tools/superset), installed by scripts/superset-env.sh when missing or stale."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "superset-env.sh")], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"scripts/superset-env.sh failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


TEST_CONFIG = '''
# tests/test_superset.py: the release's own configOverrides; then SQLite for the metadata (instead of PostgreSQL) and
# the stand-in for StarRocks' external catalog: DuckDB attaches a copy of the warehouse under the catalog's name, so
# the datasets' SQL runs as it is.
{overrides}
SQLALCHEMY_DATABASE_URI = "sqlite:///{meta}"

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _attach_lake(dbapi_connection, connection_record):
    if "duckdb" in type(dbapi_connection).__module__:
        dbapi_connection.execute("ATTACH IF NOT EXISTS '{lake}' AS {catalog} (READ_ONLY)")
'''

CHECK = r'''
import json, sys
from sqlalchemy.engine import make_url
from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import db
    from superset.models.core import Database
    from superset.models.dashboard import Dashboard
    from superset.models.slice import Slice
    from superset.connectors.sqla.models import SqlaTable

    store = app.config["SQLALCHEMY_CUSTOM_PASSWORD_STORE"]
    starrocks = make_url(sys.argv[1])
    engine_url = starrocks.set(password=store(starrocks))
    from sqlalchemy import create_engine
    out = {"starrocks_dialect": create_engine(engine_url).dialect.name, "starrocks_password": engine_url.password,
           "databases": [d.database_name for d in db.session.query(Database)],
           "datasets": sorted(t.table_name for t in db.session.query(SqlaTable)),
           "dashboards": {}, "charts": {}}
    for d in db.session.query(Dashboard):
        position = json.loads(d.position_json)
        filters = json.loads(d.json_metadata).get("native_filter_configuration", [])
        out["dashboards"][d.slug] = {"charts": sorted(s.slice_name for s in d.slices),
                                     "position_ids": sorted(n["meta"]["chartId"] for n in position.values()
                                                            if isinstance(n, dict) and n.get("type") == "CHART"),
                                     "slice_ids": sorted(s.id for s in d.slices),
                                     "filter_datasets": [t.get("datasetId") for f in filters for t in f["targets"]]}
    for chart in db.session.query(Slice):
        p = json.loads(chart.params)
        ds = chart.datasource
        metrics = p.get("metrics") or ([p["metric"]] if p.get("metric") else [])
        if p.get("x_axis"):
            columns = [{"columnType": "BASE_AXIS", "sqlExpression": p["x_axis"], "label": p["x_axis"],
                        "expressionType": "SQL", "timeGrain": p.get("time_grain_sqla")}] + list(p.get("groupby") or [])
        else:
            columns = list(p.get("all_columns") or ([p["column"]] if p.get("column") else [])) + list(p.get("groupby") or [])
        where = " AND ".join(f["sqlExpression"] for f in p.get("adhoc_filters", []) if f["expressionType"] == "SQL")
        query = {"columns": columns, "metrics": metrics, "is_timeseries": False, "filter": [], "row_limit": 1000,
                 "extras": {"where": where}}
        sql = ds.get_query_str(query)
        df = ds.database.get_df(sql, ds.catalog, ds.schema)
        out["charts"][chart.slice_name] = {"rows": len(df), "dataset": ds.table_name, "dataset_id": ds.id}
    print("RESULT " + json.dumps(out))
'''


def _run(py: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([py, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=IMPORT_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.slow
def test_superset_imports_the_bundle_and_every_chart_queries_the_warehouse(warehouse, tmp_path):
    py = superset_python()
    superset = [str(Path(py).parent / "superset")]
    values = _values()
    catalog_name = release_values("starrocks/starrocks-catalog", "kind")["catalogName"]
    lake = tmp_path / f"{catalog_name}.duckdb"
    shutil.copy(warehouse, lake)
    (tmp_path / "superset_config.py").write_text(TEST_CONFIG.format(
        meta=tmp_path / "superset.db", overrides=values["configOverrides"]["ateda"], lake=lake, catalog=catalog_name))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEDA_", "SUPERSET_", "PYTHON"))}
    env.update(SUPERSET_CONFIG_PATH=str(tmp_path / "superset_config.py"), FLASK_APP="superset",
               SUPERSET_SECRET_KEY="test-only-" + uuid.uuid4().hex, ATEDA_STARROCKS_PASSWORD="from-the-secret",
               ATEDA_SUPERSET_ADMIN_PASSWORD="test-only-admin")

    # the init Job's steps, in its order (the admin from the environment, as the initscript does)
    for args in (["db", "upgrade"], ["init"],
                 ["fab", "create-admin", "--username", "admin", "--firstname", "A", "--lastname", "B",
                  "--email", "admin@ateda.invalid", "--password", env["ATEDA_SUPERSET_ADMIN_PASSWORD"]]):
        proc = subprocess.run([*superset, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=IMPORT_TIMEOUT)
        assert proc.returncode == 0, f"superset {args[0]} failed:\n{proc.stderr[-4000:]}"

    # the bundle as the ConfigMap mounts it, zipped by the init script's own code
    mount = tmp_path / "configs"
    mount.mkdir()
    for key, text in values["extraConfigs"].items():
        (mount / key).write_text(text)
    snippet = re.search(r"<<'PY'\n(.*?)\nPY\n", values["init"]["initscript"], re.S).group(1)
    zipped = tmp_path / "ateda-dashboards.zip"
    proc = subprocess.run([py, "-", str(mount), str(zipped)], input=snippet, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(zipped) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"ateda_dashboards/{p}" for p in bundle_files())
        members = {n: z.read(n).decode() for n in names}
    # the same bundle with the database pointed at the DuckDB warehouse (StarRocks is not installable here)
    starrocks_uri = None
    duck = tmp_path / "ateda-dashboards-duckdb.zip"
    with zipfile.ZipFile(duck, "w") as z:
        for name, text in members.items():
            if "/databases/" in name:
                doc = yaml.safe_load(text)
                starrocks_uri = doc["sqlalchemy_uri"]
                doc["sqlalchemy_uri"] = f"duckdb:///{warehouse}?access_mode=read_only"
                text = yaml.safe_dump(doc)
            z.writestr(name, text)
    for _ in range(2):  # a second sync imports the same bundle again (dashboards overwritten, nothing doubled)
        proc = subprocess.run([*superset, "import-dashboards", "-p", str(duck), "-u", "admin"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=IMPORT_TIMEOUT)
        assert proc.returncode == 0 and "error" not in proc.stdout.lower(), proc.stdout + proc.stderr[-4000:]

    (tmp_path / "check.py").write_text(CHECK)
    out = _run(py, [str(tmp_path / "check.py"), starrocks_uri], env, tmp_path)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert result["starrocks_dialect"] == "starrocks" and result["starrocks_password"] == "from-the-secret"
    assert result["databases"] == [d["database_name"] for d in of_kind("databases").values()]
    assert result["datasets"] == sorted(d["table_name"] for d in of_kind("datasets").values())
    charts = by_uuid("charts")
    for dash in of_kind("dashboards").values():
        got = result["dashboards"][dash["slug"]]
        cells = [n["meta"]["uuid"] for n in dash["position"].values() if isinstance(n, dict) and n["type"] == "CHART"]
        assert got["charts"] == sorted(charts[u]["slice_name"] for u in cells), dash["slug"]
        assert got["position_ids"] == got["slice_ids"], f"{dash['slug']}: layout not re-pointed at the new chart ids"
        assert got["filter_datasets"] and all(isinstance(i, int) for i in got["filter_datasets"])
    assert set(result["charts"]) == {c["slice_name"] for c in charts.values()}
    for name, chart in result["charts"].items():
        assert chart["rows"] > 0, f"{name}: no rows from the warehouse ({chart['dataset']})"
