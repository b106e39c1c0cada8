"""dbt runs over the bronze views: bronze (Iceberg) -> silver, gold, locally (DuckDB) or in the cluster (StarRocks).

Local target (DuckDB, the default): :func:`refresh_models` prepares the bronze views of the current Iceberg snapshot
(:mod:`ateda.warehouse.bronze_views`), runs dbt in-process (``dbtRunner``) and, only when the run succeeded, records
the files as processed. A failed run leaves the state alone, so the next refresh sees the same delta again (the
incremental models are idempotent). One refresh at a time per home (a file lock).

Readers never wait for a refresh and never see one half done: the refresh builds the next warehouse in a copy of
the published file (``ateda.duckdb.next``), then publishes it by an atomic rename onto ``ateda.duckdb``. A reader
opens the published file read-only; one that opened it before the rename keeps reading the old file (Linux keeps
an unlinked file while it is open and frees it when the last reader closes it). A failed build is discarded and
the published warehouse stays as it was. Each run's outcome (time, ok/failed, seconds, the bronze snapshots it
read, row counts) is recorded in the lake, ``refresh/state/<target>.json``, for ``ateda status``.

Cluster target (StarRocks): bronze is read through the Iceberg external catalog; new rows are those with
``ingested_at`` (crossmatch: ``matched_at``) after the previous successful refresh's start (minus a margin), passed
as the dbt var ``bronze_since``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyiceberg.exceptions import NoSuchTableError

from ateda.config import Settings
from ateda.errors import ConfigError
from ateda.lake.iceberg import ensure_crossmatch_table, ensure_lsst_table, load_catalog
from ateda.lake.locks import file_lock
from ateda.lake.storage import lake_store
from ateda.warehouse.bronze_views import BRONZE_TABLES, bronze_tables, mark_processed, prepare_bronze, snapshot_info
from ateda.warehouse.location import (WarehouseError, building_path, dbt_dir, duckdb_config, duckdb_path,
                                      open_warehouse, warehouse_dir)

log = logging.getLogger(__name__)
CLUSTER_LOOKBACK = dt.timedelta(minutes=15)  # rows committed while the previous cluster run was reading


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
    # bronze table -> {"snapshot_id", "rows"}: the bronze snapshot this run read (what silver/gold now reflect)
    bronze: dict[str, dict] = field(default_factory=dict)
    copy_seconds: float = 0.0  # local target: copying the published warehouse before building the next

    def as_dict(self) -> dict:
        return {"target": self.target, "success": self.success, "seconds": round(self.seconds, 3),
                "new_files": self.new_files, "models": self.models, "rows": self.rows, "tests": self.tests,
                "errors": self.errors, "bronze": self.bronze, "copy_seconds": round(self.copy_seconds, 3)}



# ---------------------------------------------------------------- dbt

def dbt_values(settings: Settings, target: str = "local", path: Path | None = None) -> dict[str, str]:
    """The values dbt/profiles.yml takes from ``env_var()``, from ``settings`` (never from this process's
    environment, and never written into it: dbt runs in-process, in a threaded server). ``path``: the DuckDB file
    dbt writes (default: the published warehouse; a refresh passes the one it builds)."""
    duck = duckdb_config(settings)
    return {**settings.as_env(), "ATEDA_DUCKDB_PATH": str(path or duckdb_path(settings)),
            "ATEDA_DUCKDB_MEMORY_LIMIT": str(duck["memory_limit"]), "ATEDA_DUCKDB_THREADS": str(duck["threads"]),
            "ATEDA_DBT_TARGET": target}


def dbt_profile(settings: Settings, target: str = "local", path: Path | None = None) -> Path:
    """dbt/profiles.yml rendered with :func:`dbt_values` in place of each ``env_var(name, default)``, written to
    ``$ATEDA_HOME/warehouse/dbt/profiles-<target>/profiles.yml`` (mode 0600: the cluster profile holds a password);
    returns its folder, for ``--profiles-dir``. The repository's profile stays as it is for a ``dbt run`` by hand."""
    import jinja2  # dbt's templating: loaded only when a dbt profile is rendered

    values = dbt_values(settings, target, path)

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
    # a refresh building the next warehouse renders its own profile: a `dbt show` by hand meanwhile keeps the other
    folder = warehouse_dir(settings) / "dbt" / (f"profiles-{target}" + ("-build" if path is not None else ""))
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


def run_dbt(settings: Settings, args: list[str], target: str = "local", path: Path | None = None):  # noqa: ANN201
    """Run one dbt command in-process on this home's project/profile; returns dbt's ``dbtRunnerResult``.

    The profile is rendered from ``settings`` (:func:`dbt_profile`; ``path``: the DuckDB file, default the
    published one); the compiled files and logs go under ``$ATEDA_HOME/warehouse/dbt`` (never into the repository).
    """
    from dbt.cli.main import dbtRunner  # dbt is heavy (seconds to import) and only the refresh needs it

    out = warehouse_dir(settings) / "dbt"
    out.mkdir(parents=True, exist_ok=True)
    project = str(dbt_dir(settings))
    full = [*args, "--project-dir", project, "--profiles-dir", str(dbt_profile(settings, target, path)),
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

    Returns the models' statuses and the tables' row counts. Raises :class:`WarehouseError` when dbt fails. Either
    way the run is recorded in the lake (:func:`read_refresh_state`).
    """
    if target not in ("local", "cluster"):
        raise ConfigError(f"unknown dbt target {target!r} (local or cluster)")
    with refresh_lock(settings, target):
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        try:
            if target == "cluster":
                result = _refresh_cluster(settings, full_refresh, test, select)
            else:
                result = _refresh_local(settings, full_refresh, test, select)
        except Exception as exc:
            _record_run(settings, target, started, time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}")
            raise
        _record_run(settings, target, started, time.perf_counter() - t0, result, None)
        return result


# ---------------------------------------------------------------- freshness (what silver/gold reflect)

REFRESH_STATE = "refresh/state/"  # in the lake: <target>.json, written at the end of every run
REFRESH_REQUESTS = "refresh/requests/"  # in the lake: the refresh worker's pending requests (one marker each)
COPY_CONFLICTS = "silver.copy_conflict"  # the data-quality model: one row per set of conflicting copies


def pending_requests(settings: Settings) -> int:
    """Refresh requests recorded and not served yet (markers in the lake)."""
    lake = lake_store(settings)
    root = getattr(lake, "root", None)
    if root is not None:  # a local lake: list the one folder
        folder = Path(root) / REFRESH_REQUESTS
        return sum(1 for n in (os.listdir(folder) if folder.is_dir() else [])
                   if n.endswith(".json") and not n.startswith("."))
    return sum(1 for i in lake.list(REFRESH_REQUESTS) if i.key.endswith(".json"))


def current_bronze(settings: Settings) -> dict[str, dict]:
    """The bronze tables' current snapshots ({"snapshot_id", "rows"}), without creating any table."""
    catalog = load_catalog(settings)
    out = {}
    for name in BRONZE_TABLES:
        try:
            out[name] = snapshot_info(catalog.load_table(f"{settings.namespace}.{name}"))
        except NoSuchTableError:
            continue
    return out


def freshness(settings: Settings, target: str = "local") -> dict:
    """What silver/gold reflect and whether bronze moved on since: ``reflects`` (the bronze snapshots the last
    successful refresh read), ``bronze`` (now), ``pending`` (requests waiting), ``behind`` (bronze holds rows the
    last refresh did not read, or requests are pending), ``last_run``, ``last_success_at``, ``copy_conflicts``."""
    state = read_refresh_state(settings, target) or {}
    ok = state.get("last_success") or {}
    reflects = ok.get("bronze") or {}
    bronze = current_bronze(settings)
    pending = pending_requests(settings)
    moved = [name for name, now in bronze.items()
             if now.get("rows", 0) != (reflects.get(name) or {}).get("rows", 0)]
    return {"target": target, "reflects": reflects, "bronze": bronze, "pending": pending,
            "behind": bool(moved or pending), "tables_behind": moved, "last_run": state.get("last_run"),
            "last_success_at": ok.get("started_at"), "copy_conflicts": (ok.get("rows") or {}).get(COPY_CONFLICTS)}


def _state_key(target: str) -> str:
    return f"{REFRESH_STATE}{target}.json"


def read_refresh_state(settings: Settings, target: str = "local") -> dict | None:
    """The recorded refresh state of ``target``: ``last_run`` (started_at, ok, seconds, error) and ``last_success``
    (its time, the bronze snapshots it read, silver/gold row counts); None before the first run."""
    try:
        raw = lake_store(settings).get_bytes(_state_key(target))
    except Exception:  # noqa: BLE001 - no run recorded yet (FileNotFoundError, S3's NoSuchKey...)
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _record_run(settings: Settings, target: str, started: dt.datetime, seconds: float,
                result: RefreshResult | None, error: str | None) -> None:
    """Record this run (under the refresh lock): a failed run keeps what the last successful one reflected."""
    state = read_refresh_state(settings, target) or {}
    run = {"started_at": started.isoformat(), "ok": result is not None, "seconds": round(seconds, 3),
           "error": (error or "")[:500] or None}
    state["last_run"] = run
    if result is not None:
        state["last_success"] = {**run, "bronze": result.bronze, "rows": result.rows, "new_files": result.new_files}
    try:
        lake_store(settings).put_bytes(_state_key(target), json.dumps(state, indent=1, default=str).encode())
    except Exception as exc:  # noqa: BLE001 - the refresh itself is done: a lake hiccup must not undo it
        log.warning("could not record the refresh state: %s", exc)


# ---------------------------------------------------------------- the local target: build a copy, publish it

def _clone(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` in the kernel (``copy_file_range``: a reflink on filesystems that share extents,
    e.g. XFS or Btrfs; a plain copy on ext4), never through this process's memory."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        left = os.fstat(fin.fileno()).st_size
        try:
            while left > 0:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
        except OSError:  # a filesystem without copy_file_range: the portable copy
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _discard(path: Path) -> None:
    """A build's file, its WAL and DuckDB's spill folder (left by a crashed or failed build)."""
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)


def _publish(building: Path, published: Path) -> None:
    """Make ``building`` the warehouse readers open: one atomic rename (a reader gets the old or the new file)."""
    if building.with_name(building.name + ".wal").exists():  # every change must be in the file itself
        raise WarehouseError(f"{building} still has a write-ahead log after its checkpoint")
    os.replace(building, published)
    fd = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def _refresh_local(settings: Settings, full_refresh: bool, test: bool, select: str | None) -> RefreshResult:
    start = time.perf_counter()
    published, building = duckdb_path(settings), building_path(settings)
    published.parent.mkdir(parents=True, exist_ok=True)
    _discard(building)
    if published.exists():
        _clone(published, building)
        wal = published.with_name(published.name + ".wal")
        if wal.exists():  # a warehouse written in place by an older version that stopped before its checkpoint
            _clone(wal, building.with_name(building.name + ".wal"))
    copy_seconds = time.perf_counter() - start
    try:
        snapshots: dict[str, dict] = {}
        with open_warehouse(settings, building) as con:
            files, new = prepare_bronze(con, settings, snapshots)
            upgrade_tables(con)
        n_new = sum(len(v) for v in new.values())
        res = run_dbt(settings, _dbt_args("build" if test else "run", full_refresh, select), "local", building)
        result = _result("local", res, time.perf_counter() - start, n_new)
        result.bronze, result.copy_seconds = snapshots, copy_seconds
        if not result.success:
            raise WarehouseError("dbt failed: " + "; ".join(result.errors or ["see the dbt log"])) from res.exception
        with open_warehouse(settings, building) as con:
            mark_processed(con, files)
            result.rows = _row_counts(con)
            con.execute("insert into ateda_meta.refresh_log values (now(), 'local', ?, ?, ?)",
                        [n_new, result.seconds, result.success])
            con.execute("checkpoint")
        _publish(building, published)
    finally:
        _discard(building)  # after a publish only DuckDB's spill folder is left
    return result


# Columns added to incremental models after warehouses were built without them, with the value their old rows take.
# dbt's append_new_columns adds a new column only after the model's query ran, and a model that reads its held rows
# back (kept_copies: the touched alerts' rows already in the table) names the column in that query, which fails on
# the old table; so a refresh adds such columns to the copy it builds, before dbt runs.
ADDED_COLUMNS = (
    ("silver", "crossmatch_catalog", "survey", "varchar", "ztf"),  # user-catalog matches of Rubin alerts (2026-12)
    ("gold", "object_catalog_match", "survey", "varchar", "ztf"),
)


def upgrade_tables(con) -> list[str]:  # noqa: ANN001
    """Add the :data:`ADDED_COLUMNS` an existing table lacks, old rows given the column's old value; returns
    ``schema.table.column`` of each added."""
    added = []
    for schema, table, column, sql_type, old_value in ADDED_COLUMNS:
        have = {r[0].lower() for r in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, table]).fetchall()}
        if have and column.lower() not in have:
            con.execute(f'alter table "{schema}"."{table}" add column "{column}" {sql_type} '
                        f"default '{old_value}'")
            added.append(f"{schema}.{table}.{column}")
            log.info("warehouse: added %s.%s.%s (old rows: %r)", schema, table, column, old_value)
    return added


def _dbt_args(command: str, full_refresh: bool, select: str | None, vars_: dict | None = None) -> list[str]:
    args = [command]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    return args


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
    # StarRocks binds bronze.crossmatch and bronze.lsst_alert in the Iceberg catalog: they must exist, even empty
    ensure_crossmatch_table(settings)
    ensure_lsst_table(load_catalog(settings), settings)
    state_path = warehouse_dir(settings) / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    started = dt.datetime.now(dt.timezone.utc)
    since = state.get("bronze_since", "1970-01-01 00:00:00")
    start = time.perf_counter()
    tables = bronze_tables(settings)
    bronze = {name: snapshot_info(tables[name]) for name in BRONZE_TABLES if tables.get(name) is not None}
    dbt_vars = {"bronze_since": since, "iceberg_catalog": settings.dbt.iceberg_catalog}
    res = run_dbt(settings, _dbt_args("build" if test else "run", full_refresh, select, dbt_vars), "cluster")
    result = _result("cluster", res, time.perf_counter() - start, 0)
    result.bronze = bronze
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
