"""Iceberg transactions whose cost does not grow with the table's width times the number of files.

bronze.lsst_alert has ~1,800 leaf columns (every Rubin schema version's fields, nested histories included). With
pyiceberg 0.12 as it comes, one commit registering staged Parquet files costs ~1.5 s of CPU plus ~0.45 s per file
on that table (``python -m ateda.dev.bench --survey lsst``, docs/performance.md), for two reasons:

* ``Transaction.table_metadata`` derives the metadata from the pending updates, with a deep copy of the whole
  pydantic model, on every read; one ``add_files`` reads it ~19 times. :class:`LeanTransaction` derives it once per
  change of the pending updates (the updates are an immutable tuple that is replaced, never mutated).
* ``add_files`` re-derives, for every file, things that depend only on the table's schema and the file's Arrow
  schema (the compatibility check, the statistics plan, the Parquet column -> field id mapping).
  :meth:`LeanTransaction.add_files` does them once per (table schema, file schema) and per file only what is the
  file's own: its footer, its statistics, its partition, its size.

The result is the same manifest entries as ``add_files`` writes (tests/test_lean_commits.py compares them field by
field); the table's name mapping is set as ``add_files`` sets it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import TableProperties, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import update_table_metadata

_PLANS: dict[tuple, tuple] = {}  # (table uuid, schema id, properties, file schema) -> (stats plan, column ids)


class LeanTransaction(Transaction):
    """A pyiceberg transaction for the bronze commits (module doc). Same API, same commit."""

    _memo: tuple | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        memo = self._memo
        if memo is None or memo[0] is not self._table.metadata or memo[1] is not self._updates:
            memo = self._memo = (self._table.metadata, self._updates,
                                 update_table_metadata(self._table.metadata, self._updates))
        return memo[2]

    def add_files(self, file_paths: list[str], snapshot_properties: dict[str, str] | None = None,
                  check_duplicate_files: bool = False, branch: str | None = "main") -> None:
        """Register existing Parquet files as data files of the table, in one snapshot (no duplicate check: the
        bronze ledger is what prevents registering a file twice)."""
        if check_duplicate_files:
            raise ValueError("LeanTransaction.add_files does not check for duplicates: use Transaction's")
        if len(set(file_paths)) != len(file_paths):
            raise ValueError("the same file twice in one add_files")
        meta = self.table_metadata
        if meta.name_mapping() is None:
            self.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING:
                                   meta.schema().name_mapping.model_dump_json()})
            meta = self.table_metadata
        io = self._table.io
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(file_paths)))) as pool:
            data_files = list(pool.map(lambda p: _data_file(io, meta, p), file_paths))
        with self._append_snapshot_producer(snapshot_properties or {}, branch=branch) as append:
            for data_file in data_files:
                append.append_data_file(data_file)


def _data_file(io, meta: TableMetadata, path: str) -> DataFile:  # noqa: ANN001
    """The manifest entry of one Parquet file: its footer read once, the schema-wide work looked up."""
    input_file = io.new_input(path)
    with input_file.open() as stream:
        footer = pq.read_metadata(stream)
    stats_plan, column_ids = _plan(meta, footer.schema.to_arrow_schema())
    stats = data_file_statistics_from_parquet_metadata(parquet_metadata=footer, stats_columns=stats_plan,
                                                       parquet_column_mapping=column_ids)
    schema = meta.schema()
    return DataFile.from_args(
        content=DataFileContent.DATA, file_path=path, file_format=FileFormat.PARQUET,
        partition=stats.partition(meta.spec(), schema), file_size_in_bytes=len(input_file),
        sort_order_id=None, spec_id=meta.default_spec_id, equality_ids=None, key_metadata=None,
        **stats.to_serialized_dict())


def _plan(meta: TableMetadata, arrow_schema) -> tuple:  # noqa: ANN001
    """The file-independent part of a data file's entry: checked once per (table schema, file schema)."""
    key = (str(meta.table_uuid), meta.current_schema_id, tuple(sorted(meta.properties.items())),
           arrow_schema.to_string(show_field_metadata=True))
    plan = _PLANS.get(key)
    if plan is None:
        schema = meta.schema()
        _check_pyarrow_schema_compatible(schema, arrow_schema, format_version=meta.format_version)
        plan = (compute_statistics_plan(schema, meta.properties), parquet_path_to_id_mapping(schema))
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def lean_transaction(table) -> LeanTransaction:  # noqa: ANN001
    """``table.transaction()``, lean (module doc)."""
    return LeanTransaction(table)
