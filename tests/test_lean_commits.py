"""ateda.lake.commits.LeanTransaction registers staged Parquet files exactly as pyiceberg's own add_files does: the
same manifest entries (counts, sizes, bounds, partition) for real ZTF alerts and for the Rubin samples that
lsst-alert-packet ships, so the bronze commits can use it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from ateda.dev.synth_lsst import write_visit_burst
from ateda.lake import iceberg
from ateda.lake.commits import LeanTransaction
from ateda.lsst import alerts as lsst_alerts
from ateda.lsst import schemas as lsst_schemas
from ateda.ztf.alerts import AlertBatch, Source, decode_container
from conftest import alert_files

META = {"source_bucket": "b", "source_key": "k", "source_etag": "e", "source_member": None, "part": 0}
FIELDS = ("record_count", "file_size_in_bytes", "column_sizes", "value_counts", "null_value_counts",
          "nan_value_counts", "lower_bounds", "upper_bounds", "split_offsets", "spec_id")


def _rubin_rows(tmp_path) -> pa.Table:
    """The package's sample alerts of every version, and a generated visit of 40 alerts over several nights."""
    write_visit_burst(tmp_path / "burst", 40, 3)
    inputs = [p for p, _ in lsst_schemas.sample_files().values()] + sorted((tmp_path / "burst").iterdir())
    tables = []
    for path in inputs:
        decoded = lsst_alerts.decode_lsst(path.read_bytes())
        meta = {**META, "schema_version": decoded.schema_version, "schema_id": decoded.schema_id}
        tables.append(lsst_alerts.lsst_tables(decoded.records, meta).alerts)
    return pa.concat_tables(tables).combine_chunks()


def _ztf_rows() -> pa.Table:
    batch = AlertBatch()
    for f in alert_files()[:60]:
        decoded = decode_container(f.read_bytes())
        batch.add(decoded, decoded.records, Source("b", f.name, "e"), 0, None)
    return batch.tables()[0]


def _entries(table) -> list[dict]:  # noqa: ANN001
    out = []
    for task in table.scan().plan_files():
        f = task.file
        out.append({"path": f.file_path, "partition": tuple(f.partition), **{k: getattr(f, k) for k in FIELDS}})
    return sorted(out, key=lambda e: e["path"])


@pytest.mark.parametrize("kind", ["lsst_alert", "alert"])
def test_lean_add_files_writes_the_entries_pyiceberg_writes(tmp_path, kind):
    rows = _rubin_rows(tmp_path) if kind == "lsst_alert" else _ztf_rows()
    assert rows.num_rows > 10
    paths = []
    for i, night_rows in enumerate(_by_night(rows)):
        for j in range(2):  # two files per night: several files and partitions in one commit
            piece = night_rows.slice(j * (night_rows.num_rows // 2), night_rows.num_rows // 2 or 1)
            p = tmp_path / f"{kind}-{i}-{j}.parquet"
            pq.write_table(piece, p, compression="zstd")
            paths.append(f"file://{p}")
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("a")
    catalog.create_namespace("b")
    ours, theirs = (_with_fields_of(iceberg._ensure_table(catalog, f"{ns}.{kind}", kind), rows) for ns in "ab")

    tx = LeanTransaction(ours)
    tx.add_files(paths, snapshot_properties={"k": "v"})
    ours = tx.commit_transaction()
    tx = theirs.transaction()
    tx.add_files(paths, snapshot_properties={"k": "v"}, check_duplicate_files=False)
    theirs = tx.commit_transaction()

    assert _entries(ours) == _entries(theirs)
    assert len(_entries(ours)) == len(paths)
    assert ours.properties.get("schema.name-mapping.default") == theirs.properties.get("schema.name-mapping.default")
    assert ours.current_snapshot().summary.additional_properties["k"] == "v"
    assert ours.scan().to_arrow().num_rows == theirs.scan().to_arrow().num_rows == sum(
        pq.read_metadata(p.removeprefix("file://")).num_rows for p in paths)

    # the derived metadata follows the transaction's updates (it is remembered only while they do not change)
    tx = LeanTransaction(ours)
    before = tx.table_metadata
    assert tx.table_metadata is before
    tx.set_properties(probe="1")
    assert tx.table_metadata is not before and tx.table_metadata.properties["probe"] == "1"


def test_lean_add_files_refuses_an_incompatible_file(tmp_path):
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("a")
    table = iceberg._ensure_table(catalog, "a.lsst_alert", "lsst_alert")
    bad = pa.table({"diaSourceId": pa.array(["not an int"]), "night": pa.array([None], pa.date32())})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ValueError):
        LeanTransaction(table).add_files([f"file://{tmp_path}/bad.parquet"])


def _with_fields_of(table, rows: pa.Table):  # noqa: ANN001, ANN202
    """The table with the rows' fields (as bronze evolves a table before registering files)."""
    with table.update_schema() as update:
        update.union_by_name(rows.schema)
    return table.refresh()


def _by_night(rows: pa.Table) -> list[pa.Table]:
    nights = sorted(set(rows["night"].to_pylist()))
    return [rows.filter(pa.compute.equal(rows["night"], pa.scalar(n, pa.date32()))) for n in nights]
