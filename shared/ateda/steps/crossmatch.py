"""Positional crossmatch of new alerts against catalogs registered in the lake, partitioned by HEALPix.

``ateda catalog add NAME FILE --radius-arcsec R`` reads a Parquet or CSV file with ``ra``, ``dec`` (degrees, ICRS)
and ``id`` columns and writes it to the lake as one Parquet file per HEALPix cell (nested ordering, nside 64 by
default: cells of about 55 arcmin), ``catalogs/NAME/<version>/cell=<n>.parquet``, then the manifest
``catalogs/NAME/catalog.json`` (version = a hash of the content, radius and nside; the radius, nside and the
non-empty cells). A match computes, for each alert, the cells that a cone of the catalog's radius around it touches
(its own cell and the neighbours the radius reaches), reads only those cells' files, and keeps the pairs whose
great-circle distance (Vincenty formula, exact at the poles and across ra = 0/360) is at most the radius.

The crossmatch function finds the alerts of a ``bronze.committed`` event through the ingest ledger (the parts of
the event's ``chunks``) and appends the matches to the Iceberg table ``bronze.crossmatch``, skipping candids already
matched against the same catalog version, so a re-delivered event adds nothing. Each appended row carries
``matched_at`` (when it was committed): it orders a catalog's versions for silver and is the cluster refresh's
"new rows" filter, as ``ingested_at`` is bronze.alert's.
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
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

from ateda.config import Settings
from ateda.errors import AtedaError, ConfigError
from ateda.lake.iceberg import TABLE_PROPERTIES, ensure_tables, load_catalog
from ateda.lake.storage import lake_store

log = logging.getLogger(__name__)
NSIDE = 64
PREFIX = "catalogs/"
TABLE = "crossmatch"
CROSSMATCH = pa.schema([
    ("catalog", pa.string()), ("catalog_version", pa.string()), ("candid", pa.int64()), ("objectId", pa.string()),
    ("match_id", pa.string()), ("match_ra", pa.float64()), ("match_dec", pa.float64()),
    ("dist_arcsec", pa.float64()), ("night", pa.date32()), ("matched_at", pa.timestamp("us", tz="UTC")),
])
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_commit_lock = threading.Lock()


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
    if path.suffix.lower() in (".csv", ".gz") or path.name.lower().endswith(".csv.gz"):

        table = csv.read_csv(path)
    else:
        table = pq.read_table(path)
    cols = {c.lower(): c for c in table.column_names}
    missing = [c for c in ("ra", "dec", "id") if c not in cols]
    if missing:
        raise CrossmatchError(f"{path}: missing column(s) {missing} (need ra, dec, id)")
    ra = np.asarray(table[cols["ra"]].to_numpy(zero_copy_only=False), dtype=float)
    dec = np.asarray(table[cols["dec"]].to_numpy(zero_copy_only=False), dtype=float)
    ids = table[cols["id"]].cast(pa.string())
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (dec < -90) | (dec > 90)
    if bad.any():
        raise CrossmatchError(f"{path}: {int(bad.sum())} row(s) with a missing or impossible ra/dec")
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
    """Matches of ``alerts`` (columns candid, objectId, ra, dec, night) against every registered catalog."""

    catalogs = list_reference_catalogs(settings) if catalogs is None else catalogs
    stats = stats if stats is not None else MatchStats()
    lake = lake_store(settings)
    ra = np.asarray(alerts["ra"].to_numpy(zero_copy_only=False), dtype=float)
    dec = np.asarray(alerts["dec"].to_numpy(zero_copy_only=False), dtype=float)
    ok = np.isfinite(ra) & np.isfinite(dec)
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
        pieces.append(pa.table(rows, schema=CROSSMATCH))
    return pa.concat_tables(pieces) if pieces else CROSSMATCH.empty_table()


# ---------------------------------------------------------------- the alerts of a commit, the Iceberg table

def alerts_of_commit(settings: Settings, data: dict) -> pa.Table:
    """candid, objectId, ra, dec, night of the alerts of the event's chunks (found through the ingest ledger)."""


    chunks = list(data.get("chunks") or [])
    empty = pa.table({"candid": pa.array([], pa.int64()), "objectId": pa.array([], pa.string()),
                      "ra": pa.array([], pa.float64()), "dec": pa.array([], pa.float64()),
                      "night": pa.array([], pa.date32())})
    if not chunks:
        return empty
    tables = ensure_tables(load_catalog(settings), settings)
    ledger = tables["ingest_ledger"].scan(
        row_filter=In("chunk", chunks),
        selected_fields=("source_bucket", "source_key", "source_etag", "part")).to_arrow()
    parts = set(zip(*(ledger[c].to_pylist() for c in ledger.column_names)))
    if not parts:
        return empty
    keys = sorted({p[1] for p in parts})
    rows = tables["alert"].scan(
        row_filter=In("source_key", keys),
        selected_fields=("candid", "objectId", "night", "candidate", "source_bucket", "source_key", "source_etag",
                         "part")).to_arrow()
    if not rows.num_rows:
        return empty
    own = zip(*(rows[c].to_pylist() for c in ("source_bucket", "source_key", "source_etag", "part")))
    rows = rows.filter(pa.array([k in parts for k in own]))
    cand = rows["candidate"].combine_chunks()
    return pa.table({"candid": rows["candid"], "objectId": rows["objectId"],
                     "ra": cand.field("ra").cast(pa.float64()), "dec": cand.field("dec").cast(pa.float64()),
                     "night": rows["night"]})


def ensure_table(settings: Settings):
    catalog = load_catalog(settings)
    ident = f"{settings.namespace}.{TABLE}"
    try:
        return _with_current_schema(catalog.load_table(ident))
    except NoSuchTableError:
        pass
    try:
        catalog.create_namespace(settings.namespace)
    except NamespaceAlreadyExistsError:
        pass
    try:
        table = catalog.create_table(ident, schema=CROSSMATCH, properties=TABLE_PROPERTIES)
        with table.update_spec() as spec:
            spec.add_identity("night")
        return table
    except TableAlreadyExistsError:
        return catalog.load_table(ident)


def _with_current_schema(table):  # noqa: ANN001, ANN202
    """A table created before a column of CROSSMATCH existed (``matched_at``) gets it (NULL in its old rows)."""
    if set(CROSSMATCH.names) - set(table.schema().column_names):
        with table.update_schema() as upd:
            upd.union_by_name(CROSSMATCH)
    return table


def existing_table(settings: Settings):  # noqa: ANN201
    """bronze.crossmatch if it exists, else None (readers do not create it; :func:`ensure_table` does)."""


    try:
        return load_catalog(settings).load_table(f"{settings.namespace}.{TABLE}")
    except NoSuchTableError:
        return None


def commit_matches(settings: Settings, found: pa.Table, catalogs: list[ReferenceCatalog],
                   candids: list[int], note: str = "") -> tuple[int, int | None]:
    """Append ``found`` minus the (catalog, version, candid) already in the table.

    Returns (rows appended, bronze.crossmatch's snapshot id afterwards: None while the table has no snapshot).
    """

    if not candids or not catalogs:
        return 0, None
    with _commit_lock:  # one process per service (max-scale 1): check-then-append is not raced
        table = ensure_table(settings)
        done: set[tuple] = set()
        if table.current_snapshot() is not None:
            old = table.scan(row_filter=In("candid", sorted(set(candids))),
                             selected_fields=("catalog", "catalog_version", "candid")).to_arrow()
            done = set(zip(old["catalog"].to_pylist(), old["catalog_version"].to_pylist(), old["candid"].to_pylist()))
        if done and found.num_rows:
            keys = zip(found["catalog"].to_pylist(), found["catalog_version"].to_pylist(), found["candid"].to_pylist())
            found = found.filter(pa.array([k not in done for k in keys]))
        if found.num_rows:
            now = dt.datetime.now(dt.timezone.utc)
            found = found.set_column(found.schema.get_field_index("matched_at"), CROSSMATCH.field("matched_at"),
                                     pa.array([now] * found.num_rows, CROSSMATCH.field("matched_at").type))
            table.append(found, snapshot_properties={"ateda.crossmatch": note[:500]} if note else {})
        snapshot = table.current_snapshot()
        return found.num_rows, (snapshot.snapshot_id if snapshot is not None else None)


def crossmatch_commit(settings: Settings, data: dict, stats: MatchStats | None = None) -> dict:
    """The function's work for one ``bronze.committed`` event.

    The summary is also the ``data`` of ``dev.ateda.crossmatch.committed``, which the function emits whenever the
    commit's alerts have matches (``matches`` > 0), newly appended or already there from an earlier delivery: a
    re-delivery after a failed emit still tells dbt refresh, and a duplicate event only costs a no-op refresh.
    """
    catalogs = list_reference_catalogs(settings)
    chunks = list(data.get("chunks") or [])
    if not catalogs:
        return {"catalogs": [], "alerts": 0, "matches": 0, "appended": 0, "snapshot_id": None, "nights": [],
                "chunks": chunks}
    alerts = alerts_of_commit(settings, data)
    found = match(settings, alerts, catalogs, stats)
    appended, snapshot_id = commit_matches(settings, found, catalogs, alerts["candid"].to_pylist(),
                                           ",".join(chunks))
    nights = sorted({str(n) for n in found["night"].to_pylist() if n is not None})
    return {"catalogs": [c.name for c in catalogs], "alerts": alerts.num_rows, "matches": found.num_rows,
            "appended": appended, "snapshot_id": snapshot_id, "nights": nights, "chunks": chunks}
