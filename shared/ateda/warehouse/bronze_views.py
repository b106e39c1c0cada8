"""Bronze (Iceberg) -> DuckDB views, before each local dbt run.

:func:`prepare_bronze` plans the current Iceberg snapshot of each bronze table with pyiceberg and creates, in the
DuckDB file, the views

* ``bronze.alert`` / ``bronze.cutout`` / ``bronze.crossmatch``: every data file of the snapshot, read with
  ``read_parquet(union_by_name)`` (files of different schema versions line up by name; no DuckDB extension
  needed); a table without data files (or, for crossmatch, not created yet) is an empty table of its schema;
* ``bronze.<table>_delta``: the same rows restricted to the files that no successful refresh has processed yet
  (``ateda_meta.processed_file``, written by :func:`mark_processed` after a run succeeded). The incremental models
  read it, so a refresh costs in proportion to the new data and the objects it touches.

Data files on S3 are copied once into a local cache (Iceberg data files never change), so DuckDB needs no extension.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from ateda.config import Settings
from ateda.lake.iceberg import (CROSSMATCH, LSST_ALERT_TABLE, compaction_lineage, ensure_tables,
                                existing_crossmatch_table, existing_lsst_table, load_catalog)
from ateda.lsst.alerts import lsst_alert_schema
from ateda.warehouse.location import WarehouseError, warehouse_dir
from ateda.ztf.layout import canonical_field_types

# crossmatch first: a match is committed after its alert, so every match in the planned snapshot has its alert in
# the alert snapshot planned after it (silver's candid relationship holds even while matches are being appended)
BRONZE_TABLES = ("crossmatch", "alert", "cutout", LSST_ALERT_TABLE)


def bronze_files(settings: Settings, snapshots: dict | None = None) -> dict[str, list[str]]:
    """Table name -> local paths of the data files of its current snapshot (S3 files mirrored locally once).
    ``snapshots``, when given, receives table name -> {"snapshot_id", "rows"} of the snapshots planned."""
    tables = bronze_tables(settings)
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
            tables = tables or bronze_tables(settings)
            schema = _empty_schema(name) if tables[name] is None else tables[name].schema().as_arrow()
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


def bronze_tables(settings: Settings) -> dict:
    """The bronze tables the warehouse reads; ``crossmatch`` is None until the crossmatch function created it,
    ``lsst_alert`` until the first Rubin alert landed."""
    catalog = load_catalog(settings)
    return {**ensure_tables(catalog, settings), "crossmatch": existing_crossmatch_table(settings),
            LSST_ALERT_TABLE: existing_lsst_table(catalog, settings)}


def _empty_schema(name: str) -> pa.Schema:
    """The schema a bronze table that does not exist yet is read with (the models bind on it)."""
    return CROSSMATCH if name == "crossmatch" else lsst_alert_schema()


def _select_list(name: str, paths: list[str], schema=None) -> str:  # noqa: ANN001
    """A bronze view's select list: alert's nested columns normalised to ZTF 4.02; crossmatch's columns of files
    written before a column existed (``matched_at``) as typed NULLs; everything else as is."""
    if name == "alert":
        return _normalised_columns(paths, schema)
    if name != "crossmatch":
        return "*"
    import duckdb  # heavy, and only the warehouse's users need it (not the functions that import this module)

    want = CROSSMATCH
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


def mark_processed(con, files: dict[str, list[str]]) -> None:  # noqa: ANN001
    con.execute("delete from ateda_meta.processed_file")
    rows = [(t, p) for t, paths in files.items() for p in paths]
    if rows:
        con.executemany("insert into ateda_meta.processed_file values (?, ?)", rows)
