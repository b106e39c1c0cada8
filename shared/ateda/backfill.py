"""``ateda catalog add``'s second half: a newly registered catalog applies to the alerts already in bronze.

:func:`run_backfill` sends ``dev.ateda.catalog.registered`` (both surveys' alerts) to the home's runtime (a temporary one when none runs,
as ``ateda ingest`` does), waits until the crossmatch function has matched every planned chunk (the ledger in the
lake, ``crossmatch/backfill/<catalog>/<version>/<run>/``) and, when there were matches, until silver and gold hold
them (the chunks' ``crossmatch.committed`` events trigger the dbt refresh). docs/crossmatch.md has the flow.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from ateda.config import Settings
from ateda.errors import AtedaError
from ateda.events import catalogue as events, transport
from ateda.ingest import ensure_runtime
from ateda.keys import printable
from ateda.lake import deadletters
from ateda.lake.iceberg import existing_crossmatch_table
from ateda.lake.storage import lake_store
from ateda.local.runtime import running_runtime
from ateda.steps.crossmatch import (CHUNK_ALERTS, LEGACY_SURVEY, BackfillProgress, ReferenceCatalog,
                                    backfill_progress, bronze_alert_files, registered_data)
from ateda.warehouse.build import connect
from ateda.warehouse.location import WarehouseError

POLL_S = 0.5
NEEDED = ("ateda-crossmatch", "ateda-dbt-refresh")  # the functions a backfill runs through


class BackfillFailed(AtedaError):
    """The backfill's events were dead-lettered, or the runtime cannot run it: waiting longer cannot help."""


@dataclass
class BackfillSummary:
    catalog: str
    version: str
    run: str = ""
    alerts_in_bronze: int = 0
    chunks: int = 0
    matched_alerts: int = 0  # past alerts with at least one match
    matches: int = 0
    appended: int = 0
    superseded: bool = False
    refreshed: bool = False  # silver and gold hold the matches
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def backfill_runtime(settings: Settings):  # noqa: ANN201
    """The one place the backfill gets a runtime: the home's running one, else a temporary one for the caller's
    duration, exactly as ``ateda ingest`` gets its own."""
    return ensure_runtime(settings)


def run_backfill(settings: Settings, info: ReferenceCatalog, chunk_alerts: int = CHUNK_ALERTS,
                 timeout: float = 3600.0) -> BackfillSummary:
    """Match the registered catalog ``info`` against every alert in bronze, ZTF's and Rubin's, through the
    crossmatch function, and wait until silver and gold hold the matches of both. Nothing in bronze yet: nothing to
    do (no runtime is started)."""
    start = time.monotonic()
    out = BackfillSummary(info.name, info.version)
    _, files = bronze_alert_files(settings)
    if not files:
        out.refreshed = True
        return out
    out.run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    deadline = start + timeout
    with backfill_runtime(settings):
        runtime = running_runtime(settings)
        missing = [f for f in NEEDED if f not in ((runtime or {}).get("functions") or {})]
        if runtime is None or missing:
            raise BackfillFailed(f"the runtime of {settings.home} does not run {', '.join(missing) or 'at all'}: "
                                 "restart `ateda up`")
        letters = _Letters(settings, out.run)
        event = events.make_event(events.CATALOG_REGISTERED, "/ateda/cli", registered_data(info, out.run, chunk_alerts),
                                  f"{info.name}@{info.version}")
        events.validate(event)
        transport.post(runtime["broker"], event, token=runtime.get("token") or "")
        progress = _wait_chunks(settings, info, out.run, letters, deadline)
        out.alerts_in_bronze, out.chunks = progress.alerts_in_bronze, progress.chunks
        out.matched_alerts, out.matches, out.appended = progress.matched_alerts, progress.matches, progress.appended
        out.superseded = progress.superseded
        if progress.matches and settings.refresh.target == "local":
            _wait_refreshed(settings, info, letters, deadline)
        out.refreshed = settings.refresh.target == "local"  # the cluster's warehouse is StarRocks: not read here
    out.seconds = time.monotonic() - start
    return out


def _wait_chunks(settings: Settings, info: ReferenceCatalog, run: str, letters: "_Letters",
                 deadline: float) -> BackfillProgress:
    while True:
        progress = backfill_progress(settings, info.name, info.version, run)
        if progress.failed:
            raise BackfillFailed(f"{len(progress.failed)} chunk(s) could not be read, e.g. {progress.failed[0]}")
        if progress.finished:
            return progress
        letters.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill of {info.name}: {progress.done} of {progress.chunks or '?'} chunk(s) done "
                               "when the timeout came; the runtime carries on (`ateda status`)")
        time.sleep(POLL_S)


def matches_in_bronze(settings: Settings, info: ReferenceCatalog) -> int:
    """Distinct (survey, candid, match_id) of this catalog version in bronze.crossmatch, both surveys (a NULL
    survey is ZTF's): what silver holds once refreshed."""
    table = existing_crossmatch_table(settings)
    if table is None or table.current_snapshot() is None:
        return 0
    names = set(table.schema().column_names)
    fields = ("catalog", "catalog_version", "candid", "match_id") + (("survey",) if "survey" in names else ())
    rows = table.scan(selected_fields=fields).to_arrow()
    surveys = rows["survey"].to_pylist() if "survey" in names else [None] * rows.num_rows
    keys = zip(rows["catalog"].to_pylist(), rows["catalog_version"].to_pylist(), surveys, rows["candid"].to_pylist(),
               rows["match_id"].to_pylist())
    return len({(s or LEGACY_SURVEY, c, m) for cat, v, s, c, m in keys if cat == info.name and v == info.version})


def matches_in_silver(settings: Settings, info: ReferenceCatalog) -> int | None:
    """Rows of this catalog version in silver.crossmatch_catalog (both surveys); None while the warehouse cannot be
    read yet (no refresh has run, or one holds it)."""
    import duckdb  # heavy: only to name its errors (the warehouse module opens the connection)

    try:
        with connect(settings) as con:
            return con.execute("select count(*) from silver.crossmatch_catalog where catalog = ? "
                               "and catalog_version = ?", [info.name, info.version]).fetchone()[0]
    except (WarehouseError, duckdb.CatalogException):  # no warehouse or no silver table yet, or a refresh writes
        return None


def _wait_refreshed(settings: Settings, info: ReferenceCatalog, letters: "_Letters", deadline: float) -> None:
    want = matches_in_bronze(settings, info)
    while True:
        have = matches_in_silver(settings, info)
        if have is not None and have >= want:
            return
        letters.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"silver holds {have or 0} of the {want} matches of {info.name} when the timeout "
                               "came; the refresh carries on (`ateda status`)")
        time.sleep(POLL_S)


class _Letters:
    """Dead letters that appear while the backfill waits: one of its own events, or a dbt refresh's, stops it."""

    def __init__(self, settings: Settings, run: str) -> None:
        self.lake = lake_store(settings)
        self.run = run
        self.seen = set(deadletters.keys(self.lake))

    def check(self) -> None:
        new = [k for k in deadletters.keys(self.lake) if k not in self.seen]
        self.seen.update(new)
        for letter in deadletters.letters(self.lake, new):
            data = letter.event.get("data") or {}
            mine = letter.event.get("type") == events.CATALOG_REGISTERED and data.get("run") == self.run
            if mine or letter.dest == "ateda-dbt-refresh":
                raise BackfillFailed(f"dead-lettered: {letter.key}: HTTP {letter.code} {printable(letter.error[:300])}"
                                     ". Fix the cause, then `ateda replay` (or register the catalog again).")
