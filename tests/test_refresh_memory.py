"""Bounded memory of the dbt refresh (issue 10, principle 5; review 3.9: 1.86 GB RSS at 20 000 alerts).

What drove it: DuckDB ran with its defaults (memory_limit = 80 % of the host's RAM), and three silver models
unnested the alert histories with ``cross join unnest(a.list) ... where <element filter>``, which DuckDB plans as a
delim join holding every input alert, nested lists included, in memory; detection also read bronze through a CTE
referenced twice, which DuckDB materialises. The checks here: every refresh connection (ours and dbt's) carries
the memory limit; no model's plan holds bronze rows (no delim join, no materialised CTE of the histories); a
real refresh's peak RSS, measured by the kernel in a child process, stays within a generous bound of its data.
Figures at 20 000 and 100 000 alerts: docs/performance.md (``ateda bench --refresh``).
"""

from __future__ import annotations

import json
import re

import duckdb
import pyarrow.parquet as pq
import pytest

from ateda.config import Settings
from ateda.dev.bench import refresh_in_child
from ateda.ingest import run_ingest
from ateda.warehouse import build as warehouse
from ateda.warehouse import bronze_views, location
from conftest import ALERTS, REPO

MiB = 2**20


def _setting(con, name: str):  # noqa: ANN001, ANN202
    return con.execute("select current_setting(?)", [name]).fetchone()[0]


def _expected_limit(limit: str) -> str:
    """The limit as DuckDB reports it (e.g. '381.4 MiB' for 400MB), from a connection given it explicitly."""
    with duckdb.connect(config={"memory_limit": limit}) as con:
        return _setting(con, "memory_limit")


def test_every_refresh_connection_carries_the_memory_limit(tmp_path):
    s = Settings.from_env({"ATEDA_HOME": str(tmp_path / "home")})
    expected = _expected_limit(s.duckdb_memory_limit)
    with duckdb.connect() as con:  # what a connection without the setting gets on this host
        assert _setting(con, "memory_limit") != expected, "DuckDB's default equals the limit: the test shows nothing"

    with location.open_warehouse(s) as con:  # the refresh's own connection (bronze views, processed files)
        assert _setting(con, "memory_limit") == expected
        assert _setting(con, "threads") == s.duckdb_threads
        assert _setting(con, "preserve_insertion_order") is False

    # dbt's connection, through the same profile, env and runner the refresh uses
    sql = ("select current_setting('memory_limit') as memory_limit, current_setting('threads') as threads, "
           "current_setting('preserve_insertion_order') as pio")
    res = warehouse.run_dbt(s, ["show", "--inline", sql])
    assert res.success, res.exception
    table = res.result.results[0].agate_table
    row = dict(zip(table.column_names, table.rows[0]))
    assert row == {"memory_limit": expected, "threads": s.duckdb_threads, "pio": False}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The real alerts in bronze, the warehouse built once (the incremental models' tables exist)."""
    s = Settings.from_env({"ATEDA_HOME": str(tmp_path_factory.mktemp("refresh-memory") / "home")})
    run_ingest(s, [ALERTS], quiet=True, bronze_only=True)
    warehouse.refresh_models(s)
    return s


HISTORIES = {"prv_candidates", "fp_hists"}  # the nested lists: most of an alert's decoded bytes


def _words(value) -> set[str]:  # noqa: ANN001
    text = value if isinstance(value, str) else " ".join(map(str, value))
    return set(re.split(r"\W+", text))


def _plan(con, sql: str) -> list[dict]:  # noqa: ANN001
    return json.loads(con.execute("explain (format json) " + sql).fetchone()[1])


def _nodes(node: dict):  # noqa: ANN202
    yield node
    for child in node.get("children", []):
        yield from _nodes(child)


def _bronze_columns(node: dict) -> set[str]:
    """The bronze columns an operator's output passes on as they are: through filters, unions and plain column
    projections down to a Parquet scan; a computed projection (len(...), an unnest) ends the bronze values."""
    name, info = node["name"], node.get("extra_info", {})
    if name == "READ_PARQUET":
        return _words(info.get("Projections", ""))
    if name in ("FILTER", "UNION") or (name == "PROJECTION" and "(" not in str(info.get("Projections", ""))):
        return set().union(*(_bronze_columns(c) for c in node.get("children", [])))
    return set()


@pytest.mark.slow
@pytest.mark.parametrize("incremental", [False, True])
def test_no_model_holds_bronze_rows_in_memory(lake, incremental):
    """Each model's compiled SQL, planned by DuckDB against the real bronze views (every file new): no delim join
    (a lateral unnest decorrelated over its whole input) and no materialised CTE holding the alert histories."""
    s = lake
    res = warehouse.run_dbt(s, ["compile", "--vars", f"{{ateda_assume_incremental: {str(incremental).lower()}}}"])
    assert res.success, res.exception
    compiled = sorted((location.warehouse_dir(s) / "dbt" / "target-local" / "compiled" / "ateda" / "models")
                      .glob("*/*.sql"))
    models = sorted((REPO / "dbt" / "models").glob("*/*.sql"))  # every model of the project is planned
    assert [p.name for p in compiled] == [p.name for p in models] and len(models) > 10
    with location.open_warehouse(s) as con:
        # every file as if new, so bronze.alert_delta is not empty (the planner would fold an empty one away);
        # in a transaction rolled back at the end: the warehouse's state is left alone
        con.begin()
        con.execute("delete from ateda_meta.processed_file")
        files, new = bronze_views.prepare_bronze(con, s)
        assert new["alert"] == files["alert"] and files["alert"]
        for path in compiled:
            for root in _plan(con, path.read_text()):
                for node in _nodes(root):
                    assert "DELIM" not in node["name"], f"{path.name}: {node['name']} holds its whole input"
                    if node["name"] == "CTE":  # materialised: may hold flat rows, never the histories
                        held = _bronze_columns(node["children"][0])
                        assert not held & HISTORIES, f"{path.name}: a materialised CTE holds {held & HISTORIES}"
        con.rollback()


def _alert_bytes(s: Settings) -> int:
    """Uncompressed bytes of bronze.alert's data files (what a plan holding every alert would hold)."""
    files = bronze_views.bronze_files(s)["alert"]
    return sum(pq.ParquetFile(f).metadata.row_group(i).total_byte_size
               for f in files for i in range(pq.ParquetFile(f).metadata.num_row_groups))


@pytest.mark.slow
def test_refresh_peak_rss_stays_bounded(lake):
    """A full build and a no-op refresh, each in a fresh process (peak RSS = the kernel's ru_maxrss). The full
    build may exceed the no-op (Python, dbt, pyarrow, pyiceberg and DuckDB's fixed cost) by a few times the data,
    never by all of it per model; and never reach 1 GiB."""
    s = lake
    data = _alert_bytes(s)
    assert data > MiB
    full = refresh_in_child(s, full_refresh=True)
    noop = refresh_in_child(s)
    assert full["rows"] == noop["rows"] and full["rows"]["silver.ztf_alert"] > 400
    assert noop["new_files"] == 0
    assert full["peak_rss"] < 1024 * MiB, f"full build peaked at {full['peak_rss'] / MiB:.0f} MiB"
    # 192 MiB of fixed cost: DuckDB's operator buffers (hash tables, window partitions) that do not grow with the
    # data. Measured 2026-12-04 on the real alerts: full 864-867 MiB, no-op 672-682 MiB (17 models; the two
    # copy-conflict models added ~45 MiB). At 20 000 alerts: docs/performance.md (`ateda bench --refresh`).
    bound = noop["peak_rss"] + 2 * data + 192 * MiB
    assert full["peak_rss"] < bound, (f"full build {full['peak_rss'] / MiB:.0f} MiB, no-op "
                                      f"{noop['peak_rss'] / MiB:.0f} MiB, bronze.alert {data / MiB:.0f} MiB")


def test_a_child_reports_its_own_peak_not_its_parents():
    """ru_maxrss survives fork and exec on Linux: late in a suite pytest is over 1 GiB, and a refresh child would
    report that. own_peak_rss reads the child's own high-water mark."""
    import subprocess
    import sys

    ballast = bytearray(600 * MiB)  # touched: resident in this (parent) process
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = ("import json, resource; from ateda.dev.bench import own_peak_rss; "
            "print(json.dumps([own_peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))")
    own, maxrss = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout)
    del ballast
    assert own < 200 * MiB, own
    assert maxrss > 500 * MiB, "ru_maxrss no longer inherits the parent's size here: the test shows nothing"
