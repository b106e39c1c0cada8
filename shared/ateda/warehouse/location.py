"""Where the local warehouse lives (the DuckDB file, the dbt project, the working folders) and how a refresh
opens DuckDB on it."""

from __future__ import annotations

from pathlib import Path

from ateda.config import Settings
from ateda.errors import AtedaError


class WarehouseError(AtedaError):
    """dbt failed, or the warehouse cannot be prepared."""


def dbt_dir(settings: Settings) -> Path:
    """The dbt project: ATEDA_DBT_DIR in the image (docker/Dockerfile copies dbt/ there), else dbt/ in the repo."""
    return Path(settings.paths.dbt_dir)


def warehouse_dir(settings: Settings) -> Path:
    return settings.home / "warehouse"


def duckdb_path(settings: Settings) -> Path:
    """The local warehouse file: ``ATEDA_DUCKDB_PATH`` or ``$ATEDA_HOME/warehouse/ateda.duckdb``."""
    raw = settings.paths.duckdb_path
    return Path(raw).absolute() if raw else warehouse_dir(settings) / "ateda.duckdb"


# DuckDB's own defaults are 80 % of the host's RAM and one thread per core, whatever else runs there. A refresh
# process holds ~0.35 GB before DuckDB does any work (Python, dbt, pyarrow, pyiceberg); with DuckDB's buffers
# capped by Settings.duckdb_memory_limit (operators past it spill to <warehouse>.duckdb.tmp) it stays under 1 GB
# (docs/performance.md).
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
