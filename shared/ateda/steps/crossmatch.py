"""Positional crossmatch of new alerts against catalogs registered in the lake, partitioned by HEALPix.

``ateda catalog add NAME FILE --radius-arcsec R`` reads a Parquet or CSV file with ``ra``, ``dec`` (degrees, ICRS)
and ``id`` columns and writes it to the lake as one Parquet file per HEALPix cell (nested ordering, nside 64 by
default: cells of about 55 arcmin), ``catalogs/NAME/<version>/cell=<n>.parquet``, then the manifest
``catalogs/NAME/catalog.json`` (version = a hash of the content, radius and nside; the radius, nside and the
non-empty cells). A match computes, for each alert, the cells that a cone of the catalog's radius around it touches
(its own cell and the neighbours the radius reaches), reads only those cells' files, and keeps the pairs whose
great-circle distance (Vincenty formula, exact at the poles and across ra = 0/360) is at most the radius.

Both surveys are matched alike: ZTF's alerts (bronze.alert: candid, objectId, the candidate's ra/dec) and Rubin's
(bronze.lsst_alert: the triggering diaSource's diaSourceId as candid, its diaObjectId's digits as objectId, the
diaSource's ra/dec); each match row says its ``survey``, as the ids of the two surveys can be equal. A Rubin alert
without a diaObject (solar-system only) is matched too, its row's objectId NULL (silver keeps it, gold has no
object to put it on).

The crossmatch function finds the alerts of a ``bronze.committed`` event through the ingest ledger (the parts of
the event's ``chunks``) in the alert table of the event's ``survey`` attribute (every survey's without one) and
appends the matches to the Iceberg table ``bronze.crossmatch``, skipping (survey, candid)s already matched against
the same catalog version, so a re-delivered event adds nothing. Each appended row carries ``matched_at`` (when it
was committed): it orders a catalog's versions for silver and is the cluster refresh's "new rows" filter, as
``ingested_at`` is bronze.alert's.

A catalog also applies to the past (``dev.ateda.catalog.registered``, docs/crossmatch.md): the event that
``ateda catalog add`` sends is planned by :func:`plan_backfill` into bounded chunks of the data files of
bronze.alert and bronze.lsst_alert at one snapshot each (:func:`plan_chunks`: at most ``chunk_alerts`` alerts each,
every row of every file in exactly one chunk, each slice naming its survey), each sent as its own event;
:func:`backfill_chunk` matches one chunk against that one catalog version. Every append carries a work key in its
snapshot summary (``ateda.work``: the bronze commit's chunks, surveys and catalog versions, or the backfill chunk),
checked again after a lost commit race, so a re-delivered event appends nothing, in one process or several.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy_healpix import HEALPix
import astropy.units as u
from pyarrow import csv
from pyiceberg.expressions import In
from pyiceberg.exceptions import (CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError,
                                  TableAlreadyExistsError)

from ateda.config import Settings
from ateda.errors import AtedaError, BadInput, ConfigError, TransientError
from ateda.lake.iceberg import (CROSSMATCH, LSST_ALERT_TABLE, TABLE_PROPERTIES, ensure_crossmatch_table,
                                ensure_tables, existing_lsst_table, load_catalog)
from ateda.lake.storage import arrow_filesystem, lake_store

log = logging.getLogger(__name__)
NSIDE = 64
PREFIX = "catalogs/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_commit_lock = threading.Lock()
WORK_KEY = "ateda.work"  # snapshot summary property: the work an append did (its idempotency key)
COMMIT_ATTEMPTS = 8  # a lost optimistic-commit race (another pod appended) is re-checked and retried this often
BACKFILL = "crossmatch/backfill/"  # <catalog>/<version>/<run>/plan.json and chunk-<i>.json: the backfill's ledger
CHUNK_ALERTS = 20000  # default bound of a backfill chunk (alerts)
SURVEYS = ("ztf", "lsst")
LEGACY_SURVEY = "ztf"  # a match row, backfill slice or alert table without a survey is ZTF's (it predates Rubin)
# where a survey's alerts are in bronze: table, alert id (the candid of a match), object id, the struct with ra/dec
ALERT_SOURCES = {"ztf": ("alert", "candid", "objectId", "candidate"),
                 "lsst": (LSST_ALERT_TABLE, "diaSourceId", "diaObjectId", "diaSource")}
# what match() takes: one row per alert, either survey
ALERTS = pa.schema([("candid", pa.int64()), ("objectId", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()),
                    ("night", pa.date32()), ("survey", pa.string())])


class CrossmatchError(AtedaError):
    """A catalog cannot be registered or read."""


# ---------------------------------------------------------------- geometry

def separation_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle distance in arcsec (Vincenty: accurate at every separation, at the poles and across 0/360)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    s1, c1, s2, c2 = np.sin(dec1), np.cos(dec1), np.sin(dec2), np.cos(dec2)
    num = np.hypot(c2 * np.sin(dra), c1 * s2 - s1 * c2 * np.cos(dra))
    den = s1 * s2 + c1 * c2 * np.cos(dra)
    return np.degrees(np.arctan2(num, den)) * 3600.0


def _healpix(nside: int):
    return HEALPix(nside=nside, order="nested")


def cells_of(ra, dec, nside: int = NSIDE) -> np.ndarray:
    return np.asarray(_healpix(nside).lonlat_to_healpix(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg),
                      dtype=np.int64)


def cone_cells(ra: float, dec: float, radius_arcsec: float, nside: int = NSIDE) -> set[int]:
    """The cells a cone touches: the position's own cell and those the radius reaches (padded slightly: the exact
    distance test comes after, a few extra candidates cost nothing)."""

    hp = _healpix(nside)
    pad = radius_arcsec * 1.01 + 0.5
    cells = hp.cone_search_lonlat(float(ra) * u.deg, float(dec) * u.deg, pad * u.arcsec)
    out = {int(c) for c in np.asarray(cells)}
    out.add(int(cells_of([ra], [dec], nside)[0]))
    return out


# ---------------------------------------------------------------- catalogs in the lake

@dataclass
class ReferenceCatalog:
    name: str
    version: str
    radius_arcsec: float
    nside: int
    rows: int
    cells: list[int]
    source: str = ""
    added_at: str = ""

    def cell_key(self, cell: int) -> str:
        return f"{PREFIX}{self.name}/{self.version}/cell={cell}.parquet"

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "radius_arcsec": self.radius_arcsec, "nside": self.nside,
                "rows": self.rows, "cells": self.cells, "source": self.source, "added_at": self.added_at}


def _read_input(path: Path) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        if path.suffix.lower() in (".csv", ".gz") or path.name.lower().endswith(".csv.gz"):
            table = csv.read_csv(path)
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # not CSV, not Parquet, truncated: the user's file
        kind = "CSV" if path.suffix.lower() in (".csv", ".gz") else "Parquet (or name it .csv)"
        raise CrossmatchError(f"{path}: not a readable {kind} file ({str(exc).splitlines()[0][:200]})") from exc
    cols = {c.lower(): c for c in table.column_names}
    missing = [c for c in ("ra", "dec", "id") if c not in cols]
    if missing:
        raise CrossmatchError(f"{path}: missing column(s) {missing} (need ra, dec, id)")
    ra = np.asarray(table[cols["ra"]].to_numpy(zero_copy_only=False), dtype=float)
    dec = np.asarray(table[cols["dec"]].to_numpy(zero_copy_only=False), dtype=float)
    ids = table[cols["id"]].cast(pa.string())
    if ids.null_count:
        raise CrossmatchError(f"{path}: {ids.null_count} row(s) without an id")
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (dec < -90) | (dec > 90)
    if bad.any():
        raise CrossmatchError(f"{path}: {int(bad.sum())} row(s) with a missing or impossible ra/dec")
    if not len(ra):
        raise CrossmatchError(f"{path}: no rows")
    return pa.table({"id": ids, "ra": np.mod(ra, 360.0), "dec": dec})


def add_reference_catalog(settings: Settings, name: str, path: Path, radius_arcsec: float, nside: int = NSIDE) -> ReferenceCatalog:
    """Register (or replace) catalog ``name`` from a Parquet/CSV file; returns its manifest."""

    if not _NAME.match(name):
        raise ConfigError(f"catalog name {name!r}: lower-case letters, digits, '-' and '_'")
    if not radius_arcsec > 0:
        raise ConfigError("--radius-arcsec must be positive")
    if nside <= 0 or nside & (nside - 1):
        raise ConfigError("nside must be a power of two")
    table = _read_input(Path(path))
    digest = hashlib.sha256()
    digest.update("\x00".join(table["id"].to_pylist()).encode())
    for col in ("ra", "dec"):
        digest.update(np.ascontiguousarray(table[col].to_numpy(), dtype=np.float64).tobytes())
    digest.update(f"{nside}:{float(radius_arcsec)!r}".encode())  # another radius gives other matches: a new version
    version = digest.hexdigest()[:16]
    cells = cells_of(table["ra"].to_numpy(), table["dec"].to_numpy(), nside)
    table = table.append_column("cell", pa.array(cells))
    order = np.argsort(cells, kind="stable")
    table, cells = table.take(pa.array(order)), cells[order]
    lake = lake_store(settings)
    info = ReferenceCatalog(name, version, float(radius_arcsec), nside, table.num_rows, [],
                       source=str(path), added_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    bounds = np.flatnonzero(np.diff(cells)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(cells)]):
        if hi <= lo:
            continue
        cell = int(cells[lo])
        buf = io.BytesIO()
        pq.write_table(table.slice(lo, hi - lo).drop_columns(["cell"]), buf, compression="zstd")
        lake.put_bytes(info.cell_key(cell), buf.getvalue())
        info.cells.append(cell)
    # the manifest last: a match never sees a half-written version
    lake.put_bytes(f"{PREFIX}{name}/catalog.json", json.dumps(info.as_dict(), indent=1).encode())
    return info


def list_reference_catalogs(settings: Settings) -> list[ReferenceCatalog]:
    lake = lake_store(settings)
    root = getattr(lake, "root", None)
    if root is not None:  # a local lake: look at the one folder
        folder = Path(root) / PREFIX
        names = sorted(d for d in os.listdir(folder) if (folder / d / "catalog.json").exists()) if folder.is_dir() else []
        keys = [f"{PREFIX}{n}/catalog.json" for n in names]
    else:
        keys = sorted(i.key for i in lake.list(PREFIX) if i.key.count("/") == 2 and i.key.endswith("/catalog.json"))
    out = []
    for k in keys:
        d = json.loads(lake.get_bytes(k))
        out.append(ReferenceCatalog(**d))
    return out


# ---------------------------------------------------------------- matching

@dataclass
class MatchStats:
    cells_read: dict[str, list[int]] = field(default_factory=dict)  # catalog -> cells whose file was read
    candidates: int = 0


def match(settings: Settings, alerts: pa.Table, catalogs: list[ReferenceCatalog] | None = None,
          stats: MatchStats | None = None) -> pa.Table:
    """Matches of ``alerts`` (columns candid, objectId, ra, dec, night and survey, as :data:`ALERTS`; without a
    survey column they are ZTF's) against every registered catalog."""

    catalogs = list_reference_catalogs(settings) if catalogs is None else catalogs
    stats = stats if stats is not None else MatchStats()
    lake = lake_store(settings)
    ra = np.asarray(alerts["ra"].to_numpy(zero_copy_only=False), dtype=float)
    dec = np.asarray(alerts["dec"].to_numpy(zero_copy_only=False), dtype=float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    surveys = (alerts["survey"].to_pylist() if "survey" in alerts.column_names
               else [LEGACY_SURVEY] * alerts.num_rows)
    pieces = []
    for cat in catalogs:
        have = set(cat.cells)
        per_alert = [cone_cells(ra[i], dec[i], cat.radius_arcsec, cat.nside) & have if ok[i] else set()
                     for i in range(len(ra))]
        needed = sorted(set().union(*per_alert)) if per_alert else []
        stats.cells_read[cat.name] = needed
        cell_data = {c: pq.read_table(io.BytesIO(lake.get_bytes(cat.cell_key(c)))) for c in needed}
        cell_np = {c: (t["id"].to_pylist(), t["ra"].to_numpy(), t["dec"].to_numpy()) for c, t in cell_data.items()}
        rows: dict[str, list] = {n: [] for n in CROSSMATCH.names}
        for i, cells in enumerate(per_alert):
            for c in sorted(cells):
                ids, cra, cdec = cell_np[c]
                d = separation_arcsec(ra[i], dec[i], cra, cdec)
                stats.candidates += len(d)
                for j in np.flatnonzero(d <= cat.radius_arcsec):
                    rows["catalog"].append(cat.name)
                    rows["catalog_version"].append(cat.version)
                    rows["candid"].append(alerts["candid"][i].as_py())
                    rows["objectId"].append(alerts["objectId"][i].as_py())
                    rows["match_id"].append(ids[j])
                    rows["match_ra"].append(float(cra[j]))
                    rows["match_dec"].append(float(cdec[j]))
                    rows["dist_arcsec"].append(float(d[j]))
                    rows["night"].append(alerts["night"][i].as_py() if "night" in alerts.column_names else None)
                    rows["matched_at"].append(None)  # set by commit_matches
                    rows["survey"].append(surveys[i] or LEGACY_SURVEY)
        pieces.append(pa.table(rows, schema=CROSSMATCH))
    return pa.concat_tables(pieces) if pieces else CROSSMATCH.empty_table()


# ---------------------------------------------------------------- the alerts of a commit, the Iceberg table

def _as_alerts(rows: pa.Table, survey: str) -> pa.Table:
    """Rows of ``survey``'s alert table (its id, object id, night and ra/dec struct columns) as :data:`ALERTS`:
    a Rubin diaObjectId becomes its decimal digits, gold.object's id of it (NULL stays NULL: solar-system only)."""
    _, alert_id, object_id, position = ALERT_SOURCES[survey]
    pos = rows[position].combine_chunks()
    return pa.table({"candid": rows[alert_id].cast(pa.int64()), "objectId": rows[object_id].cast(pa.string()),
                     "ra": pos.field("ra").cast(pa.float64()), "dec": pos.field("dec").cast(pa.float64()),
                     "night": rows["night"], "survey": pa.array([survey] * rows.num_rows, pa.string())},
                    schema=ALERTS)


def _alert_table(settings: Settings, survey: str):  # noqa: ANN202
    """``survey``'s alert table, None while it does not exist (bronze creates bronze.lsst_alert with Rubin's first
    chunk: a ZTF-only lake has none)."""
    catalog = load_catalog(settings)
    if survey == "lsst":
        return existing_lsst_table(catalog, settings)
    return ensure_tables(catalog, settings)[ALERT_SOURCES[survey][0]]


def event_surveys(survey: str | None) -> list[str]:
    """The surveys a ``bronze.committed`` event is about: its ``survey`` attribute, every survey without one (an
    event from before the attribute; bronze emits one per survey of a batch). An unknown survey: none."""
    if survey is None:
        return list(SURVEYS)
    return [survey] if survey in SURVEYS else []


def alerts_of_commit(settings: Settings, data: dict, survey: str | None = None) -> pa.Table:
    """The alerts (:data:`ALERTS`) of the event's chunks in the alert table(s) of ``survey`` (every survey's when
    None), found through the ingest ledger."""

    chunks = list(data.get("chunks") or [])
    surveys = event_surveys(survey)
    if not chunks or not surveys:
        return ALERTS.empty_table()
    tables = ensure_tables(load_catalog(settings), settings)
    ledger = tables["ingest_ledger"].scan(
        row_filter=In("chunk", chunks),
        selected_fields=("source_bucket", "source_key", "source_etag", "part")).to_arrow()
    parts = set(zip(*(ledger[c].to_pylist() for c in ledger.column_names)))
    if not parts:
        return ALERTS.empty_table()
    keys = sorted({p[1] for p in parts})
    pieces = [ALERTS.empty_table()]
    for name in surveys:
        table = _alert_table(settings, name)
        if table is None:
            continue
        _, alert_id, object_id, position = ALERT_SOURCES[name]
        rows = table.scan(
            row_filter=In("source_key", keys),
            selected_fields=(alert_id, object_id, "night", position, "source_bucket", "source_key", "source_etag",
                             "part")).to_arrow()
        if not rows.num_rows:
            continue
        own = zip(*(rows[c].to_pylist() for c in ("source_bucket", "source_key", "source_etag", "part")))
        pieces.append(_as_alerts(rows.filter(pa.array([k in parts for k in own], pa.bool_())), name))
    return pa.concat_tables(pieces)


def commit_matches(settings: Settings, found: pa.Table, catalogs: list[ReferenceCatalog],
                   candids: list[int], note: str = "", work: str = "") -> tuple[int, int | None]:
    """Append ``found`` minus the (catalog, version, candid) already in the table, once per ``work``.

    ``work`` names what this append does (a bronze commit's chunks, a backfill chunk): it goes in the snapshot's
    summary (``ateda.work``), and an append whose work a snapshot already names is skipped. The check runs again
    after a lost optimistic commit (another process appended first), so two deliveries of one event append once
    even in two pods. Returns (rows appended, bronze.crossmatch's snapshot id afterwards: None while the table has
    no snapshot).
    """

    if not candids or not catalogs:
        return 0, None
    with _commit_lock:  # in one process, the candid check and the append are not raced
        for attempt in range(COMMIT_ATTEMPTS):
            table = ensure_crossmatch_table(settings)
            try:
                return _append_new(table, found, candids, note, work)
            except CommitFailedException as exc:  # another writer committed in between: look again
                log.info("crossmatch commit lost a race (%s), attempt %d", exc, attempt + 1)
                time.sleep(min(0.05 * 2 ** attempt, 2.0))
        raise TransientError(f"bronze.crossmatch: {COMMIT_ATTEMPTS} commits lost to concurrent writers")


def done_work(table, work: str) -> int | None:  # noqa: ANN001
    """The id of a snapshot of ``table`` whose append did ``work``, if any (snapshot summaries: metadata only)."""
    for snap in table.metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if props.get(WORK_KEY) == work:
            return snap.snapshot_id
    return None


def _append_new(table, found: pa.Table, candids: list[int], note: str,  # noqa: ANN001
                work: str) -> tuple[int, int | None]:
    if work and done_work(table, work) is not None:
        snapshot = table.current_snapshot()
        return 0, snapshot.snapshot_id
    done: set[tuple] = set()
    if table.current_snapshot() is not None:
        old = table.scan(row_filter=In("candid", sorted(set(candids))),
                         selected_fields=("catalog", "catalog_version", "survey", "candid")).to_arrow()
        done = set(_match_keys(old))
    if done and found.num_rows:
        found = found.filter(pa.array([k not in done for k in _match_keys(found)], pa.bool_()))
    if found.num_rows:
        now = dt.datetime.now(dt.timezone.utc)
        found = found.set_column(found.schema.get_field_index("matched_at"), CROSSMATCH.field("matched_at"),
                                 pa.array([now] * found.num_rows, CROSSMATCH.field("matched_at").type))
        props = {"ateda.crossmatch": note[:500]} if note else {}
        if work:
            props[WORK_KEY] = work
        table.append(found, snapshot_properties=props)
    snapshot = table.current_snapshot()
    return found.num_rows, (snapshot.snapshot_id if snapshot is not None else None)


def _match_keys(rows: pa.Table):  # noqa: ANN202
    """(catalog, version, survey, candid) of match rows: what one match of one alert is, a NULL survey (a row from
    before the column) being ZTF's."""
    return zip(rows["catalog"].to_pylist(), rows["catalog_version"].to_pylist(),
               [s or LEGACY_SURVEY for s in rows["survey"].to_pylist()], rows["candid"].to_pylist())


def _commit_work(chunks: list[str], catalogs: list[ReferenceCatalog], surveys: list[str]) -> str:
    """The work key of a bronze commit's match: its chunks' alerts of these surveys against these catalog versions
    (a re-delivery after a catalog was re-registered matches the new version; one with the same catalogs appends
    nothing). ZTF's alone keep the key they had before Rubin was matched, so an older delivery is recognised."""
    text = ",".join(sorted(chunks)) + "|" + ",".join(sorted(f"{c.name}@{c.version}" for c in catalogs))
    if list(surveys) != [LEGACY_SURVEY]:
        text += "|" + ",".join(sorted(surveys))
    return "commit:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def crossmatch_commit(settings: Settings, data: dict, stats: MatchStats | None = None,
                      survey: str | None = None) -> dict:
    """The function's work for one ``bronze.committed`` event, of the survey its ``survey`` attribute names
    (:func:`event_surveys`).

    The summary is also the ``data`` of ``dev.ateda.crossmatch.committed``, which the function emits whenever the
    commit's alerts have matches (``matches`` > 0), newly appended or already there from an earlier delivery: a
    re-delivery after a failed emit still tells dbt refresh, and a duplicate event only costs a no-op refresh.
    """
    catalogs = list_reference_catalogs(settings)
    chunks = list(data.get("chunks") or [])
    if not catalogs:
        return {"catalogs": [], "alerts": 0, "matches": 0, "appended": 0, "snapshot_id": None, "nights": [],
                "chunks": chunks}
    alerts = alerts_of_commit(settings, data, survey)
    found = match(settings, alerts, catalogs, stats)
    appended, snapshot_id = commit_matches(settings, found, catalogs, alerts["candid"].to_pylist(),
                                           ",".join(chunks), work=_commit_work(chunks, catalogs,
                                                                               event_surveys(survey)))
    nights = sorted({str(n) for n in found["night"].to_pylist() if n is not None})
    return {"catalogs": [c.name for c in catalogs], "alerts": alerts.num_rows, "matches": found.num_rows,
            "appended": appended, "snapshot_id": snapshot_id, "nights": nights, "chunks": chunks}


# ---------------------------------------------------------------- backfill: a catalog applies to the past too

def registered_data(info: ReferenceCatalog, run: str, chunk_alerts: int = CHUNK_ALERTS) -> dict:
    """The ``data`` of the ``dev.ateda.catalog.registered`` event ``ateda catalog add`` sends: the catalog version
    and the range of work, every alert in bronze, both surveys (the crossmatch function plans it into chunks)."""
    return {"catalog": info.name, "version": info.version, "radius_arcsec": info.radius_arcsec, "run": run,
            "range": {"kind": "bronze", "chunk_alerts": int(chunk_alerts)}}


def plan_chunks(files: list[tuple], max_rows: int) -> list[list[dict]]:
    """Bounded chunks over data files, ``(path, rows)`` or ``(path, rows, survey)``: each chunk holds at most
    ``max_rows`` rows, as ``{"file", "start", "stop"}`` row ranges (and ``"survey"``, when the file names one);
    every row of every file is in exactly one chunk (a file larger than the bound is cut in ranges, small files share
    a chunk). Deterministic: the same files give the same chunks."""
    if max_rows <= 0:
        raise ValueError("max_rows must be positive")
    chunks: list[list[dict]] = []
    current: list[dict] = []
    room = max_rows
    for path, rows, *survey in files:
        start = 0
        while start < rows:
            take = min(room, rows - start)
            piece = {"file": path, "start": start, "stop": start + take}
            current.append({**piece, "survey": survey[0]} if survey else piece)
            start += take
            room -= take
            if room == 0:
                chunks.append(current)
                current, room = [], max_rows
    if current:
        chunks.append(current)
    return chunks


def bronze_alert_files(settings: Settings) -> tuple[dict[str, int | None], list[tuple[str, int, str]]]:
    """The alert tables' current snapshot ids (``{"alert": .., "lsst_alert": ..}``, None while one is empty or
    absent) and their data files as (path, row count, survey): ZTF's first, then Rubin's."""
    snapshot_ids: dict[str, int | None] = {}
    files: list[tuple[str, int, str]] = []
    for survey in SURVEYS:
        name = ALERT_SOURCES[survey][0]
        table = _alert_table(settings, survey)
        snap = table.current_snapshot() if table is not None else None
        snapshot_ids[name] = snap.snapshot_id if snap is not None else None
        if snap is None:
            continue
        own = []
        for task in table.scan(snapshot_id=snap.snapshot_id).plan_files():
            if task.delete_files:  # bronze is append-only; a row-level delete would need a merge this reader lacks
                raise BadInput("merge_on_read", f"bronze.{name} has delete files ({task.file.file_path})")
            own.append((task.file.file_path, int(task.file.record_count), survey))
        files += sorted(own)
    return snapshot_ids, files


def _run_prefix(catalog: str, version: str, run: str) -> str:
    ok = _NAME.match(catalog) and re.fullmatch(r"[0-9a-f]{16}", version) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run)
    if not ok:
        raise BadInput("bad_backfill", f"catalog {catalog!r}, version {version!r}, run {run!r}")
    return f"{BACKFILL}{catalog}/{version}/{run}/"


def plan_backfill(settings: Settings, data: dict) -> list[dict]:
    """The chunk events' ``data`` for a registration event: bronze.alert and bronze.lsst_alert at their current
    snapshots, cut by :func:`plan_chunks` (a chunk may hold slices of both). The plan is written first
    (``plan.json``) and reused by a re-delivery, so the chunks of one run never change. A registration superseded by
    a newer version of the catalog plans nothing."""
    lake = lake_store(settings)
    prefix = _run_prefix(data["catalog"], data["version"], data["run"])
    try:
        plan = json.loads(lake.get_bytes(prefix + "plan.json"))
    except FileNotFoundError:
        plan = None
    if plan is None:
        current = _current_version(settings, data["catalog"])
        max_rows = int(data["range"].get("chunk_alerts") or CHUNK_ALERTS)
        snapshot_ids, files = bronze_alert_files(settings) if current == data["version"] else ({}, [])
        chunks = plan_chunks(files, max_rows)
        plan = {"catalog": data["catalog"], "version": data["version"], "run": data["run"],
                "superseded": current != data["version"], "snapshot_id": snapshot_ids.get("alert"),
                "snapshot_ids": snapshot_ids,
                "alerts": sum(f[1] for f in files), "chunk_alerts": max_rows, "chunks": chunks}
        lake.put_bytes(prefix + "plan.json", json.dumps(plan).encode())
    n = len(plan["chunks"])
    return [{"catalog": data["catalog"], "version": data["version"], "radius_arcsec": data["radius_arcsec"],
             "run": data["run"], "range": {"kind": "files", "snapshot_id": plan["snapshot_id"],
                                           "snapshot_ids": plan.get("snapshot_ids", {}), "chunk": i,
                                           "chunks": n, "slices": chunk}}
            for i, chunk in enumerate(plan["chunks"])]


def _current_version(settings: Settings, name: str) -> str | None:
    try:
        return json.loads(lake_store(settings).get_bytes(f"{PREFIX}{name}/catalog.json"))["version"]
    except FileNotFoundError:
        return None


def _read_slices(settings: Settings, slices: list[dict]) -> pa.Table:
    """The alerts (:data:`ALERTS`) of the rows of ``slices``, each of its ``survey``'s alert table (ZTF's when it
    names none: a plan from before Rubin was matched); only the row groups they reach are read."""
    pieces = []
    for sl in slices:
        fs, local = arrow_filesystem(sl["file"].removeprefix("file://"), settings)
        try:
            pf = pq.ParquetFile(local, filesystem=fs)
        except FileNotFoundError as exc:  # compacted and expired since the plan: this run cannot finish
            raise BadInput("backfill_file_gone", f"{sl['file']}: register the catalog again") from exc
        start, stop, offset = int(sl["start"]), int(sl["stop"]), 0
        groups, first = [], None
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if offset < stop and offset + n > start:
                groups.append(g)
                first = offset if first is None else first
            offset += n
        if not groups:
            continue
        survey = sl.get("survey") or LEGACY_SURVEY
        if survey not in ALERT_SOURCES:
            raise BadInput("bad_backfill", f"{sl['file']}: unknown survey {survey!r}")
        _, alert_id, object_id, position = ALERT_SOURCES[survey]
        t = pf.read_row_groups(groups, columns=[alert_id, object_id, "night", position])
        pieces.append(_as_alerts(t.slice(start - first, stop - start), survey))
    return pa.concat_tables([ALERTS.empty_table(), *pieces])


def backfill_chunk(settings: Settings, data: dict, stats: MatchStats | None = None) -> dict:
    """Match one backfill chunk against the one catalog version it names and append the new matches (once: the
    chunk is the append's work key); records the chunk as done (``chunk-<i>.json``). Returns the summary, also
    the ``data`` of ``dev.ateda.crossmatch.committed`` when there are matches."""
    rng = data["range"]
    prefix = _run_prefix(data["catalog"], data["version"], data["run"])
    chunk, chunks = int(rng["chunk"]), int(rng["chunks"])
    work = f"backfill:{data['catalog']}:{data['version']}:{data['run']}:{chunk}"
    catalogs = [c for c in list_reference_catalogs(settings) if c.name == data["catalog"]]
    superseded = not catalogs or catalogs[0].version != data["version"]
    lake = lake_store(settings)
    done_key = f"{prefix}chunk-{chunk:06d}.json"
    try:
        alerts = _read_slices(settings, rng["slices"]) if not superseded else _read_slices(settings, [])
    except BadInput as exc:  # recorded, so that the caller waiting on the run learns it at once
        record = {"failed": exc.reason, "detail": exc.detail, "done_at": time.time()}
        lake.put_bytes(done_key, json.dumps(record).encode())
        raise
    found = match(settings, alerts, catalogs, stats) if not superseded else CROSSMATCH.empty_table()
    matched = sorted(set(zip(found["survey"].to_pylist(), found["candid"].to_pylist())))
    appended, snapshot_id = commit_matches(settings, found, catalogs, [c for _, c in matched],
                                           f"backfill {data['catalog']}", work)
    nights = sorted({str(n) for n in found["night"].to_pylist() if n is not None})
    summary = {"catalogs": [data["catalog"]], "alerts": alerts.num_rows, "matches": found.num_rows,
               "appended": appended, "snapshot_id": snapshot_id, "nights": nights, "chunks": [],
               "backfill": {"catalog": data["catalog"], "version": data["version"], "run": data["run"],
                            "chunk": chunk, "chunks": chunks, "matched_alerts": len(matched),
                            "superseded": superseded}}
    # the first delivery's record stays (a re-delivery appended nothing); a failed one is replaced
    if lake.head(done_key) is None or "failed" in json.loads(lake.get_bytes(done_key)):
        lake.put_bytes(done_key, json.dumps({**summary, "done_at": time.time()}).encode())
    return summary


@dataclass
class BackfillProgress:
    planned: bool = False
    superseded: bool = False
    alerts_in_bronze: int = 0
    chunks: int = 0
    done: int = 0
    alerts: int = 0  # alerts matched so far (read)
    matched_alerts: int = 0  # alerts with at least one match
    matches: int = 0
    appended: int = 0
    failed: list[str] = field(default_factory=list)  # why chunks could not be read (bad input, not retried)

    @property
    def finished(self) -> bool:
        return self.planned and self.done >= self.chunks


def backfill_progress(settings: Settings, catalog: str, version: str, run: str) -> BackfillProgress:
    """What the ledger says of one backfill run: planned?, chunks done, matches so far."""
    lake = lake_store(settings)
    prefix = _run_prefix(catalog, version, run)
    out = BackfillProgress()
    try:
        plan = json.loads(lake.get_bytes(prefix + "plan.json"))
    except FileNotFoundError:
        return out
    out.planned, out.superseded = True, bool(plan.get("superseded"))
    out.alerts_in_bronze, out.chunks = int(plan["alerts"]), len(plan["chunks"])
    for info in lake.list(prefix):
        if info.key.rsplit("/", 1)[-1].startswith("chunk-"):
            d = json.loads(lake.get_bytes(info.key))
            out.done += 1
            if "failed" in d:
                out.failed.append(f"{d['failed']}: {d.get('detail', '')}"[:300])
                continue
            out.alerts += d["alerts"]
            out.matched_alerts += d["backfill"]["matched_alerts"]
            out.matches += d["matches"]
            out.appended += d["appended"]
    return out
