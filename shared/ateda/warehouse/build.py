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

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from ateda.config import Settings
from ateda.errors import AtedaError, ConfigError
from ateda.lake.iceberg import compaction_lineage, ensure_tables, load_catalog
from ateda.lake.locks import file_lock
from ateda.lake.storage import lake_store
from ateda.steps.crossmatch import CROSSMATCH, ensure_table, existing_table
from ateda.ztf.layout import canonical_field_types

log = logging.getLogger(__name__)


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
    # bronze table -> {"snapshot_id", "rows"}: the bronze snapshot this run read (what silver/gold now reflect)
    bronze: dict[str, dict] = field(default_factory=dict)
    copy_seconds: float = 0.0  # local target: copying the published warehouse before building the next

    def as_dict(self) -> dict:
        return {"target": self.target, "success": self.success, "seconds": round(self.seconds, 3),
                "new_files": self.new_files, "models": self.models, "rows": self.rows, "tests": self.tests,
                "errors": self.errors, "bronze": self.bronze, "copy_seconds": round(self.copy_seconds, 3)}


# ---------------------------------------------------------------- locations

def warehouse_dir(settings: Settings) -> Path:
    return settings.home / "warehouse"


def duckdb_path(settings: Settings) -> Path:
    """The local warehouse file: ``ATEDA_DUCKDB_PATH`` or ``$ATEDA_HOME/warehouse/ateda.duckdb``."""
    raw = settings.paths.duckdb_path
    return Path(raw).absolute() if raw else warehouse_dir(settings) / "ateda.duckdb"


# DuckDB 1.5.5 dies with SIGSEGV planning the second incremental refresh of a home (15 then 25 real alerts, then
# refresh: tests/test_dbt.py::test_incremental_refresh_equals_full_build) inside its statistics-propagation pass;
# with that one optimizer pass off the plans are correct and the crash is gone. dbt/profiles.yml sets it too.
DISABLED_OPTIMIZERS = "statistics_propagation"


def duckdb_config(settings: Settings) -> dict[str, object]:
    """The DuckDB settings of every refresh connection, ours and dbt's (:func:`dbt_profile` renders them into the
    profile):
    ``ATEDA_DUCKDB_MEMORY_LIMIT`` / ``ATEDA_DUCKDB_THREADS`` (Settings)."""
    return {"memory_limit": settings.duckdb_memory_limit, "threads": settings.duckdb_threads,
            "preserve_insertion_order": False, "disabled_optimizers": DISABLED_OPTIMIZERS}


def building_path(settings: Settings) -> Path:
    """Where a local refresh builds the next warehouse before publishing it onto :func:`duckdb_path`."""
    published = duckdb_path(settings)
    return published.with_name(published.name + ".next")


def open_warehouse(settings: Settings, path: Path | None = None):  # noqa: ANN201
    """The refresh's read-write DuckDB connection to the local warehouse (``path``: the published file unless
    given, e.g. :func:`building_path`), with :func:`duckdb_config`."""
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    path = Path(path) if path is not None else duckdb_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), config=duckdb_config(settings))


# ---------------------------------------------------------------- bronze -> DuckDB views

def bronze_files(settings: Settings, snapshots: dict | None = None) -> dict[str, list[str]]:
    """Table name -> local paths of the data files of its current snapshot (S3 files mirrored locally once).
    ``snapshots``, when given, receives table name -> {"snapshot_id", "rows"} of the snapshots planned."""
    tables = _bronze_tables(settings)
    out: dict[str, list[str]] = {}
    for name in BRONZE_TABLES:
        table = tables[name]
        paths = []
        if table is None:  # bronze.crossmatch before the first match
            out[name] = paths
            continue
        if snapshots is not None:
            snapshots[name] = snapshot_info(table)
        for task in table.scan().plan_files():
            if task.delete_files:
                raise WarehouseError(f"bronze.{name} has delete files (merge-on-read), which DuckDB views cannot "
                                     "apply; rewrite the table (copy-on-write) first")
            paths.append(_local_copy(task.file.file_path, table, settings))
        out[name] = sorted(paths)
    return out


def snapshot_info(table) -> dict:  # noqa: ANN001
    """A bronze table's current snapshot id and total rows (from the snapshot summary: metadata only)."""
    snap = table.current_snapshot()
    summary = snap.summary.additional_properties if snap is not None and snap.summary else {}
    return {"snapshot_id": snap.snapshot_id if snap is not None else None,
            "rows": int(summary.get("total-records", 0))}


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


def prepare_bronze(con, settings: Settings,  # noqa: ANN001
                   snapshots: dict | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Create/refresh the bronze views in the DuckDB connection ``con``.

    Returns (table -> the snapshot's files, table -> those no successful refresh has processed yet);
    ``snapshots`` receives the snapshots planned (:func:`bronze_files`).
    """
    files = bronze_files(settings, snapshots)
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
        n_new = sum(len(v) for v in new.values())
        res = run_dbt(settings, _dbt_args("build" if test else "run", full_refresh, select), "local", building)
        result = _result("local", res, time.perf_counter() - start, n_new)
        result.bronze, result.copy_seconds = snapshots, copy_seconds
        if not result.success:
            raise WarehouseError("dbt failed: " + "; ".join(result.errors or ["see the dbt log"])) from res.exception
        with open_warehouse(settings, building) as con:
            _mark_processed(con, files)
            result.rows = _row_counts(con)
            con.execute("insert into ateda_meta.refresh_log values (now(), 'local', ?, ?, ?)",
                        [n_new, result.seconds, result.success])
            con.execute("checkpoint")
        _publish(building, published)
    finally:
        _discard(building)  # after a publish only DuckDB's spill folder is left
    return result


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
    ensure_table(settings)  # StarRocks binds bronze.crossmatch in the Iceberg catalog: it must exist, even empty
    state_path = warehouse_dir(settings) / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    started = dt.datetime.now(dt.timezone.utc)
    since = state.get("bronze_since", "1970-01-01 00:00:00")
    start = time.perf_counter()
    tables = _bronze_tables(settings)
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
