"""The science warehouse: bronze (Iceberg) -> DuckDB views -> dbt (silver, gold).

Local target (DuckDB, the default): before each dbt run, :func:`prepare_bronze` plans the current Iceberg snapshot
with pyiceberg and creates, in the DuckDB file, the views

* ``bronze.alert`` / ``bronze.cutout`` / ``bronze.crossmatch``: every data file of the snapshot, read with
  ``read_parquet(union_by_name)`` (files of different schema versions line up by name; no DuckDB extension
  needed); a table without data files (or, for crossmatch, not created yet) is an empty table of its schema;
* ``bronze.<table>_delta``: the same rows restricted to the files that no successful refresh has processed yet
  (``ateda_meta.processed_file``). The incremental models read it, so a refresh costs in proportion to the new
  data and the objects it touches; with no new data it is empty and nothing changes.

:func:`refresh_models` runs dbt in-process (``dbtRunner``) and, only when the run succeeded, records the files as
processed. A failed run leaves the state alone, so the next refresh sees the same delta again (the incremental
models are idempotent). One refresh at a time per home (a file lock).

Cluster target (StarRocks): bronze is read through the Iceberg external catalog; new rows are those with
``ingested_at`` (crossmatch: ``matched_at``) after the previous successful refresh's start (minus a margin), passed
as the dbt var ``bronze_since``.
"""

from __future__ import annotations


import datetime as dt
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyiceberg.exceptions import NoSuchTableError
import pyarrow as pa
import pyarrow.parquet as pq

from ateda.config import Settings
from ateda.errors import AtedaError, ConfigError
from ateda.lake.iceberg import compaction_lineage, ensure_tables, load_catalog
from ateda.lake.locks import file_lock
from ateda.steps.crossmatch import CROSSMATCH, ensure_table, existing_table
from ateda.ztf.layout import canonical_field_types

def dbt_dir(settings: Settings) -> Path:
    """The dbt project: ATEDA_DBT_DIR in the image (docker/Dockerfile copies dbt/ there), else dbt/ in the repo."""
    return Path(settings.paths.dbt_dir)
# crossmatch first: a match is committed after its alert, so every match in the planned snapshot has its alert in
# the alert snapshot planned after it (silver's candid relationship holds even while matches are being appended)
BRONZE_TABLES = ("crossmatch", "alert", "cutout")
CLUSTER_LOOKBACK = dt.timedelta(minutes=15)  # rows committed while the previous cluster run was reading
# DuckDB's own defaults are 80 % of the host's RAM and one thread per core, whatever else runs there. A refresh
# process holds ~0.35 GB before DuckDB does any work (Python, dbt, pyarrow, pyiceberg); with DuckDB's buffers
# capped by Settings.duckdb_memory_limit (operators past it spill to <warehouse>.duckdb.tmp) it stays under 1 GB
# (docs/performance.md).


class WarehouseError(AtedaError):
    """dbt failed, or the warehouse cannot be prepared."""


@dataclass
class RefreshResult:
    """What one refresh did: dbt's verdict per model and the row count of every silver/gold table."""

    target: str
    success: bool
    seconds: float
    new_files: int = 0
    models: dict[str, dict] = field(default_factory=dict)  # name -> {status, rows_affected, seconds}
    rows: dict[str, int] = field(default_factory=dict)  # schema.table -> rows
    tests: dict[str, str] = field(default_factory=dict)  # test name -> status (dbt build only)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"target": self.target, "success": self.success, "seconds": round(self.seconds, 3),
                "new_files": self.new_files, "models": self.models, "rows": self.rows, "tests": self.tests,
                "errors": self.errors}


# ---------------------------------------------------------------- locations

def warehouse_dir(settings: Settings) -> Path:
    return settings.home / "warehouse"


def duckdb_path(settings: Settings) -> Path:
    """The local warehouse file: ``ATEDA_DUCKDB_PATH`` or ``$ATEDA_HOME/warehouse/ateda.duckdb``."""
    raw = settings.paths.duckdb_path
    return Path(raw).absolute() if raw else warehouse_dir(settings) / "ateda.duckdb"


def duckdb_config(settings: Settings) -> dict[str, object]:
    """The DuckDB settings of every refresh connection, ours and dbt's (:func:`dbt_profile` renders them into the
    profile):
    ``ATEDA_DUCKDB_MEMORY_LIMIT`` / ``ATEDA_DUCKDB_THREADS`` (Settings)."""
    return {"memory_limit": settings.duckdb_memory_limit, "threads": settings.duckdb_threads,
            "preserve_insertion_order": False}


def open_warehouse(settings: Settings):  # noqa: ANN201
    """The refresh's read-write DuckDB connection to the local warehouse, with :func:`duckdb_config`."""
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    path = duckdb_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), config=duckdb_config(settings))


# ---------------------------------------------------------------- bronze -> DuckDB views

def bronze_files(settings: Settings) -> dict[str, list[str]]:
    """Table name -> local paths of the data files of its current snapshot (S3 files mirrored locally once)."""
    tables = _bronze_tables(settings)
    out: dict[str, list[str]] = {}
    for name in BRONZE_TABLES:
        table = tables[name]
        paths = []
        if table is None:  # bronze.crossmatch before the first match
            out[name] = paths
            continue
        for task in table.scan().plan_files():
            if task.delete_files:
                raise WarehouseError(f"bronze.{name} has delete files (merge-on-read), which DuckDB views cannot "
                                     "apply; rewrite the table (copy-on-write) first")
            paths.append(_local_copy(task.file.file_path, table, settings))
        out[name] = sorted(paths)
    return out


def _local_name(uri: str, settings: Settings) -> str:
    """Where DuckDB reads the data file ``uri``: the file itself, or its copy in the local bronze cache."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if "://" not in uri:
        return uri
    return str(warehouse_dir(settings) / "bronze-cache" / uri.split("://", 1)[1])


def _local_copy(uri: str, table, settings: Settings) -> str:  # noqa: ANN001
    """A path DuckDB can read without extensions. Iceberg data files never change, so a copy is made once."""
    if "://" not in uri or uri.startswith("file://"):
        return _local_name(uri, settings)
    target = Path(_local_name(uri, settings))
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        with table.io.new_input(uri).open() as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(target)
    return str(target)


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def prepare_bronze(con, settings: Settings) -> tuple[dict[str, list[str]], dict[str, list[str]]]:  # noqa: ANN001
    """Create/refresh the bronze views in the DuckDB connection ``con``.

    Returns (table -> the snapshot's files, table -> those no successful refresh has processed yet).
    """
    files = bronze_files(settings)
    con.execute("create schema if not exists bronze")
    con.execute("create schema if not exists ateda_meta")
    con.execute("create table if not exists ateda_meta.processed_file (table_name varchar, file_path varchar)")
    con.execute("create table if not exists ateda_meta.refresh_log (refreshed_at timestamptz, target varchar, "
                "new_files integer, seconds double, success boolean)")
    done = {(t, p) for t, p in con.execute("select table_name, file_path from ateda_meta.processed_file").fetchall()}
    done = _inherit_processed(settings, done)
    tables = None
    new: dict[str, list[str]] = {}
    for name, paths in files.items():
        new[name] = [p for p in paths if (name, p) not in done]
        for view in (f"{name}_delta", name, f"{name}_files"):
            _drop_relation(con, view)
        if paths:
            scan = f"read_parquet({_sql_list(paths)}, union_by_name = true, filename = true)"
            columns = _select_list(name, paths)
            con.execute(f"create view bronze.{name}_files as select {columns} from {scan}")
            con.execute(f"create view bronze.{name} as select * exclude (filename) from bronze.{name}_files")
            # a constant IN list on `filename` is pushed down: DuckDB opens only the new files' data
            where = f"filename in ({_sql_list(new[name])[1:-1]})" if new[name] else "false"
            con.execute(f"create view bronze.{name}_delta as "
                        f"select * exclude (filename) from bronze.{name}_files where {where}")
        else:  # an empty table: typed from the Iceberg schema, so the models still bind
            tables = tables or _bronze_tables(settings)
            schema = _crossmatch_schema() if tables[name] is None else tables[name].schema().as_arrow()
            empty = schema.empty_table()  # noqa: F841 (read by DuckDB by name)
            columns = _select_list(name, [], empty.schema)
            con.execute(f"create table bronze.{name} as select {columns} from empty")
            con.execute(f"create view bronze.{name}_delta as select * from bronze.{name}")
    return files, new


def _inherit_processed(settings: Settings, done: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """``done`` plus the files that compaction wrote from processed files only (same rows, moved: not new)."""


    if not done:
        return done
    catalog = load_catalog(settings)
    out = set(done)
    for name in BRONZE_TABLES:
        try:
            table = catalog.load_table(f"{settings.namespace}.{name}")
        except NoSuchTableError:  # not created yet: no compactions
            continue
        for removed, added in compaction_lineage(table):  # oldest first, so chains of compactions resolve
            if all((name, _local_name(r, settings)) in out for r in removed):
                out |= {(name, _local_name(a, settings)) for a in added}
    return out


def _drop_relation(con, name: str) -> None:  # noqa: ANN001
    """Drop bronze.<name>: a view, or the table standing in for an empty Iceberg table (DuckDB's ``drop view if
    exists`` fails on a table of that name, and the reverse)."""
    kind = con.execute("select table_type from information_schema.tables where table_schema = 'bronze' "
                       "and table_name = ?", [name]).fetchone()
    if kind:
        con.execute(f"drop {'view' if kind[0] == 'VIEW' else 'table'} bronze.{name}")


def _bronze_tables(settings: Settings) -> dict:
    """The bronze tables the warehouse reads; ``crossmatch`` is None until the crossmatch function created it."""

    return {**ensure_tables(load_catalog(settings), settings), "crossmatch": existing_table(settings)}


def _crossmatch_schema():  # noqa: ANN202
    return CROSSMATCH


def _select_list(name: str, paths: list[str], schema=None) -> str:  # noqa: ANN001
    """A bronze view's select list: alert's nested columns normalised to ZTF 4.02; crossmatch's columns of files
    written before a column existed (``matched_at``) as typed NULLs; everything else as is."""
    if name == "alert":
        return _normalised_columns(paths, schema)
    if name != "crossmatch":
        return "*"
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    want = _crossmatch_schema()
    present = set(schema.names) if schema is not None else set()
    for path in paths if schema is None else []:  # footers only, and only until every column was seen
        present |= set(pq.read_schema(path).names)
        if present >= set(want.names):
            break
    missing = [f for f in want if f.name not in present]
    types = duckdb.from_arrow(pa.schema(missing).empty_table()).types if missing else []
    return ", ".join(["*"] + [f'CAST(NULL AS {t}) AS "{f.name}"' for f, t in zip(missing, types)])


_NESTED = {"candidate": ("candidate", False), "prv_candidates": ("prv_candidate", True),
           "fp_hists": ("fp_hist", True)}
_DUCK_TYPES = {"int": "BIGINT", "long": "BIGINT", "float": "DOUBLE", "double": "DOUBLE", "string": "VARCHAR",
               "boolean": "BOOLEAN", "bytes": "BLOB"}


def _normalised_columns(paths: list[str], schema=None) -> str:  # noqa: ANN001
    """The alert view's select list: the nested columns hold at least every field of ZTF's 4.02 layout.

    Bronze's schema is the union of the alerts seen so far, so a lake holding only old alerts has no
    ``candidate.drb`` and no ``fp_hists`` at all; the missing fields become typed NULLs, so the models bind on
    any lake. Field names are read from the Parquet footers (metadata only).
    """


    present: dict[str, set[str]] = {}
    for s in ([schema] if schema is not None else (pq.read_schema(p) for p in paths)):
        for top in _NESTED:
            if top in s.names:
                t = s.field(top).type
                t = t.value_type if hasattr(t, "value_type") else t
                present.setdefault(top, set()).update(t.field(i).name for i in range(t.num_fields))
    canon = canonical_field_types()
    exprs, replaced = [], []
    for top, (kind, is_list) in _NESTED.items():
        fields = canon.get(kind, {})
        if top not in present:
            struct = "STRUCT(" + ", ".join(f'"{f}" {_DUCK_TYPES.get(t, "VARCHAR")}' for f, t in fields.items()) + ")"
            exprs.append(f"CAST(NULL AS {struct}{'[]' if is_list else ''}) AS {top}")
            continue
        missing = [f for f in fields if f not in present[top]]
        if not missing:
            continue
        replaced.append(top)
        inserts = ", ".join(f'"{f}" := CAST(NULL AS {_DUCK_TYPES.get(fields[f], "VARCHAR")})' for f in missing)
        if is_list:
            exprs.append(f"list_transform({top}, x -> struct_insert(x, {inserts})) AS {top}")
        else:
            exprs.append(f"struct_insert({top}, {inserts}) AS {top}")
    head = f"* exclude ({', '.join(replaced)})" if replaced else "*"
    return ", ".join([head, *exprs])


def _mark_processed(con, files: dict[str, list[str]]) -> None:  # noqa: ANN001
    con.execute("delete from ateda_meta.processed_file")
    rows = [(t, p) for t, paths in files.items() for p in paths]
    if rows:
        con.executemany("insert into ateda_meta.processed_file values (?, ?)", rows)


# ---------------------------------------------------------------- dbt

def dbt_values(settings: Settings, target: str = "local") -> dict[str, str]:
    """The values dbt/profiles.yml takes from ``env_var()``, from ``settings`` (never from this process's
    environment, and never written into it: dbt runs in-process, in a threaded server)."""
    duck = duckdb_config(settings)
    return {**settings.as_env(), "ATEDA_DUCKDB_PATH": str(duckdb_path(settings)),
            "ATEDA_DUCKDB_MEMORY_LIMIT": str(duck["memory_limit"]), "ATEDA_DUCKDB_THREADS": str(duck["threads"]),
            "ATEDA_DBT_TARGET": target}


def dbt_profile(settings: Settings, target: str = "local") -> Path:
    """dbt/profiles.yml rendered with :func:`dbt_values` in place of each ``env_var(name, default)``, written to
    ``$ATEDA_HOME/warehouse/dbt/profiles-<target>/profiles.yml`` (mode 0600: the cluster profile holds a password);
    returns its folder, for ``--profiles-dir``. The repository's profile stays as it is for a ``dbt run`` by hand."""
    import jinja2  # dbt's templating: loaded only when a dbt profile is rendered

    values = dbt_values(settings, target)

    def env_var(name: str, default: str | None = None) -> str:
        if name in values:  # every value sits inside a double-quoted YAML scalar: JSON escapes are YAML escapes
            text = json.dumps(values[name])[1:-1]
            # dbt renders the profile again: a value holding Jinja syntax stays literal
            return f"{{% raw %}}{text}{{% endraw %}}" if "{" in text or "%" in text else text
        if default is None:
            raise ConfigError(f"dbt/profiles.yml reads {name}, which is not a setting and has no default")
        return default

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["as_number"] = _as_number
    text = env.from_string((dbt_dir(settings) / "profiles.yml").read_text()).render(env_var=env_var)
    folder = warehouse_dir(settings) / "dbt" / f"profiles-{target}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".profiles.yml.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, folder / "profiles.yml")
    return folder


def _as_number(value: str) -> str:
    """dbt's ``as_number`` left for dbt's own rendering of the profile (it makes the YAML value a number)."""
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", str(value)):
        raise ConfigError(f"dbt/profiles.yml wants a number, got {value!r}")
    return f"{{{{ '{value}' | as_number }}}}"


def run_dbt(settings: Settings, args: list[str], target: str = "local"):  # noqa: ANN201
    """Run one dbt command in-process on this home's project/profile; returns dbt's ``dbtRunnerResult``.

    The profile is rendered from ``settings`` (:func:`dbt_profile`); the compiled files and logs go under
    ``$ATEDA_HOME/warehouse/dbt`` (never into the repository).
    """
    from dbt.cli.main import dbtRunner  # dbt is heavy (seconds to import) and only the refresh needs it

    out = warehouse_dir(settings) / "dbt"
    out.mkdir(parents=True, exist_ok=True)
    project = str(dbt_dir(settings))
    full = [*args, "--project-dir", project, "--profiles-dir", str(dbt_profile(settings, target)),
            "--target", target, "--target-path", str(out / f"target-{target}"), "--log-path", str(out / "logs")]
    if args and args[0] in ("run", "build", "test", "compile"):
        full.append("--quiet")
    try:
        return dbtRunner().invoke(full, send_anonymous_usage_stats=False)
    finally:
        _release_duckdb()


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open after an invocation; close it so that this process (and others)
    can open the warehouse again, read-only included."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # dbt: see run_dbt
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        env.close()


def refresh_lock(settings: Settings, target: str):  # noqa: ANN201
    """Never two refreshes of the same target from this home at once (the second waits)."""
    return file_lock(warehouse_dir(settings) / f"refresh-{target}.lock")


def refresh_models(settings: Settings, target: str = "local", full_refresh: bool = False, test: bool = False,
            select: str | None = None) -> RefreshResult:
    """Bring silver and gold up to date with bronze; ``test=True`` runs ``dbt build`` (models and their tests).

    Returns the models' statuses and the tables' row counts. Raises :class:`WarehouseError` when dbt fails.
    """
    if target not in ("local", "cluster"):
        raise ConfigError(f"unknown dbt target {target!r} (local or cluster)")
    with refresh_lock(settings, target):
        if target == "cluster":
            return _refresh_cluster(settings, full_refresh, test, select)
        return _refresh_local(settings, full_refresh, test, select)


def _dbt_args(command: str, full_refresh: bool, select: str | None, vars_: dict | None = None) -> list[str]:
    args = [command]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    return args


def _refresh_local(settings: Settings, full_refresh: bool, test: bool, select: str | None) -> RefreshResult:
    start = time.perf_counter()
    with open_warehouse(settings) as con:
        files, new = prepare_bronze(con, settings)
    n_new = sum(len(v) for v in new.values())
    res = run_dbt(settings, _dbt_args("build" if test else "run", full_refresh, select), "local")
    result = _result("local", res, time.perf_counter() - start, n_new)
    with open_warehouse(settings) as con:
        if result.success:
            _mark_processed(con, files)
        result.rows = _row_counts(con)
        con.execute("insert into ateda_meta.refresh_log values (now(), 'local', ?, ?, ?)",
                    [n_new, result.seconds, result.success])
    if not result.success:
        raise WarehouseError("dbt failed: " + "; ".join(result.errors or ["see the dbt log"])) from res.exception
    return result


def _row_counts(con) -> dict[str, int]:  # noqa: ANN001
    rows = {}
    for schema, name, kind in con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_schema in ('silver', 'gold') order by 1, 2").fetchall():
        rows[f"{schema}.{name}"] = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
    return rows


def _result(target: str, res, seconds: float, n_new: int) -> RefreshResult:  # noqa: ANN001
    out = RefreshResult(target=target, success=bool(res.success), seconds=seconds, new_files=n_new)
    if res.exception is not None:
        out.errors.append(f"{type(res.exception).__name__}: {res.exception}")
    for r in getattr(res.result, "results", None) or []:
        node = r.node
        status = str(getattr(r.status, "value", r.status))
        if node.resource_type == "model":
            resp = r.adapter_response or {}
            out.models[node.name] = {"status": status, "rows_affected": resp.get("rows_affected"),
                                     "seconds": round(r.execution_time or 0.0, 3)}
        elif node.resource_type == "test":
            out.tests[node.name] = status
        if status in ("error", "fail"):
            out.errors.append(f"{node.name}: {status}: {(r.message or '').strip()[:300]}")
    return out


def _refresh_cluster(settings: Settings, full_refresh: bool, test: bool, select: str | None) -> RefreshResult:
    ensure_table(settings)  # StarRocks binds bronze.crossmatch in the Iceberg catalog: it must exist, even empty
    state_path = warehouse_dir(settings) / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    started = dt.datetime.now(dt.timezone.utc)
    since = state.get("bronze_since", "1970-01-01 00:00:00")
    start = time.perf_counter()
    dbt_vars = {"bronze_since": since, "iceberg_catalog": settings.dbt.iceberg_catalog}
    res = run_dbt(settings, _dbt_args("build" if test else "run", full_refresh, select, dbt_vars), "cluster")
    result = _result("cluster", res, time.perf_counter() - start, 0)
    if not result.success:
        raise WarehouseError("dbt failed: " + "; ".join(result.errors or ["see the dbt log"])) from res.exception
    next_since = (started - CLUSTER_LOOKBACK).strftime("%Y-%m-%d %H:%M:%S")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"bronze_since": next_since}))
    result.rows = {k: v["rows_affected"] for k, v in result.models.items() if v.get("rows_affected") is not None}
    return result


# ---------------------------------------------------------------- reading the warehouse

def connect(settings: Settings, read_only: bool = True):  # noqa: ANN201
    """A DuckDB connection to the local warehouse (read-only by default). Raises if there is none yet."""
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    path = duckdb_path(settings)
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}: run `ateda refresh` first")
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:  # another process (a refresh) holds the write lock
        raise WarehouseError(f"warehouse {path} is busy: {exc}") from exc
