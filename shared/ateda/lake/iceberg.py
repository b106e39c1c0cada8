"""The Iceberg catalog and the bronze tables' definitions.

``ATEDA_CATALOG_URI`` picks the catalog: ``sqlite:///...`` / ``postgresql+psycopg2://...`` -> pyiceberg SqlCatalog
(the JDBC catalog's tables), ``http(s)://...`` -> REST (Nessie: ``http://nessie:19120/iceberg``; Lakana:
``http://host:8765`` with ``ATEDA_CATALOG_PREFIX`` = its environment and ``ATEDA_CATALOG_TOKEN``).
"""

from __future__ import annotations

import json
import random
import time

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError,
                                  TableAlreadyExistsError)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import assign_fresh_schema_ids
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.catalog import load_catalog as _load

from ateda.config import Settings
from ateda.errors import TransientError
from ateda.redact import mask
from ateda.lsst.alerts import lsst_alert_schema
from ateda.ztf.alerts import NESTED, canonical_struct

ALERT_BASE = pa.schema([
    ("objectId", pa.string()), ("candid", pa.int64()), ("schemavsn", pa.string()), ("publisher", pa.string()),
    ("night", pa.date32()), ("jd", pa.float64()), ("extra_json", pa.string()),
    ("source_bucket", pa.string()), ("source_key", pa.string()), ("source_etag", pa.string()),
    ("source_member", pa.string()), ("part", pa.int32()), ("ingested_at", pa.timestamp("us", tz="UTC")),
])
CUTOUT = pa.schema([
    ("candid", pa.int64()), ("objectId", pa.string()), ("night", pa.date32()), ("kind", pa.string()),
    ("file_name", pa.string()), ("stamp_data", pa.binary()),
    ("source_bucket", pa.string()), ("source_key", pa.string()), ("source_etag", pa.string()), ("part", pa.int32()),
    ("survey", pa.string()),  # "ztf" | "lsst" (NULL in rows written before Rubin: ZTF's); candid is unique per survey
])
LEDGER = pa.schema([
    ("source_bucket", pa.string()), ("source_key", pa.string()), ("source_etag", pa.string()), ("part", pa.int32()),
    ("alerts", pa.int64()), ("chunk", pa.string()), ("night", pa.date32()),
    ("arrived_at", pa.timestamp("us", tz="UTC")), ("committed_at", pa.timestamp("us", tz="UTC")),
])
# bronze.crossmatch: one row per (catalog, version, alert) match; written by the crossmatch function only, created
# by it on its first match (readers see None before: existing_crossmatch_table). Both surveys: ``survey`` says
# which ("ztf" | "lsst"; NULL in rows written before it existed, which are ZTF's), since a ZTF candid and a Rubin
# diaSourceId can be equal; a Rubin row's candid is the diaSourceId, its objectId the diaObjectId's decimal digits
# (NULL for a solar-system-only alert). New columns go last: an older table is evolved by appending them.
CROSSMATCH_TABLE = "crossmatch"
CROSSMATCH = pa.schema([
    ("catalog", pa.string()), ("catalog_version", pa.string()), ("candid", pa.int64()), ("objectId", pa.string()),
    ("match_id", pa.string()), ("match_ra", pa.float64()), ("match_dec", pa.float64()),
    ("dist_arcsec", pa.float64()), ("night", pa.date32()), ("matched_at", pa.timestamp("us", tz="UTC")),
    ("survey", pa.string()),
])

# pyiceberg re-bases a failed append onto the new snapshot by itself (the table's retries), which would append again
# what another writer just appended: this table's appends are retried by commit_matches, which checks first
NO_RETRIES = {"commit.retry.num-retries": "0"}
TABLES = {"alert": ALERT_BASE, "cutout": CUTOUT, "ingest_ledger": LEDGER}  # alert: created as alert_schema()
# Properties every lake table carries (set at creation; the maintenance pass adds them to older tables): appends
# merge small manifests (bronze commits often: without it every commit adds a manifest that each scan must read),
# each commit deletes the metadata.json files beyond the newest 50 (else one is kept per commit, forever), and
# file removals use snapshot isolation: the only removals are compaction's rewrites (same rows), which must not
# fail because bronze appended meanwhile; they still fail if a file they remove is already gone.
HOUSEKEEPING = {
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "write.delete.isolation-level": "snapshot",
}
TABLE_PROPERTIES = {"commit.retry.num-retries": "10", "write.parquet.compression-codec": "zstd", **HOUSEKEEPING}


def alert_schema() -> pa.Schema:
    """bronze.alert as created: ALERT_BASE plus ``candidate`` (struct), ``prv_candidates`` and ``fp_hists``
    (list<struct>) with every field of ZTF 4.02 in the decoder's types, so that a reader of the Iceberg table
    (StarRocks) binds every field the models use even on a lake that only ever received old-schema alerts (their
    files lack the newer fields: NULL). Fields of older schemas that 4.02 dropped are unioned in by the bronze
    commit when a file carries them."""

    nested = [pa.field(top, canonical_struct(kind) if top == "candidate" else pa.list_(canonical_struct(kind)))
              for top, kind in NESTED.items()]
    base = [f for f in ALERT_BASE if f.name != "ingested_at"]
    return pa.schema(base + nested + [ALERT_BASE.field("ingested_at")])  # the decoder's column order


def catalog_properties(settings: Settings) -> dict[str, str]:
    props: dict[str, str] = {"warehouse": settings.warehouse}
    uri = settings.catalog_uri
    if uri.startswith(("http://", "https://")):
        props.update(type="rest", uri=uri)
        if settings.catalog_prefix:
            props["prefix"] = settings.catalog_prefix
        if settings.catalog_token:
            props["token"] = settings.catalog_token
    else:
        props.update(type="sql", uri=uri)
        if uri.startswith("sqlite"):
            props["init_catalog_tables"] = "true"
    if settings.uses_s3:
        props.update({
            "s3.endpoint": settings.s3_endpoint, "s3.region": settings.s3_region,
            "s3.access-key-id": settings.s3_access_key, "s3.secret-access-key": settings.s3_secret_key,
            "s3.path-style-access": "true",
        })
    return props


def load_catalog(settings: Settings) -> Catalog:
    for attempt in range(3):
        try:
            return _load(settings.catalog_name, **catalog_properties(settings))
        except Exception as exc:  # connection refused, auth...: the catalog is unavailable
            # the SQL catalog creates its own tables on first use: a process that raced another there sees
            # "already exists", and the next try finds them
            if "already exists" in str(exc) and attempt < 2:
                time.sleep(random.uniform(0.05, 0.2))
                continue
            secrets = (settings.s3_secret_key, settings.s3_access_key, settings.catalog_token)
            raise TransientError(mask(f"catalog unavailable at {settings.catalog_uri}: {exc}", secrets)) from exc
    raise AssertionError("unreachable")


def ensure_tables(catalog: Catalog, settings: Settings) -> dict[str, Table]:
    """Create the namespace and the bronze tables if needed (idempotent; safe against concurrent creators).

    Creation races are harmless: a namespace or table another process created first (AlreadyExists, or the SQL
    catalog's IntegrityError) is loaded instead. A table is created with its partition spec in one commit, so no
    process ever sees it unpartitioned."""
    ns = settings.namespace
    try:
        catalog.create_namespace(ns)
    except NamespaceAlreadyExistsError:
        pass
    except Exception:  # noqa: BLE001 - a concurrent creator won (IntegrityError): fine if it exists now
        if not catalog.namespace_exists(ns):
            raise
    return {name: _ensure_table(catalog, f"{ns}.{name}", name) for name in TABLES}


LSST_ALERT_TABLE = "lsst_alert"  # Rubin alerts: created by bronze with the first Rubin chunk (docs/rubin.md)


def existing_lsst_table(catalog: Catalog, settings: Settings) -> Table | None:
    """bronze.lsst_alert if it exists, else None (readers never create it: its schema is the union of every Rubin
    schema version, ~1,800 fields, which a ZTF-only lake has no use for)."""
    try:
        return catalog.load_table(f"{settings.namespace}.{LSST_ALERT_TABLE}")
    except NoSuchTableError:
        return None


def ensure_lsst_table(catalog: Catalog, settings: Settings) -> Table:
    """bronze.lsst_alert, created with every shipped Rubin schema's fields and partitioned by night (dayObs)."""
    return _ensure_table(catalog, f"{settings.namespace}.{LSST_ALERT_TABLE}", LSST_ALERT_TABLE)


def _ensure_table(catalog: Catalog, ident: str, name: str) -> Table:
    try:
        return catalog.load_table(ident)
    except NoSuchTableError:
        pass
    # the Iceberg schema with its ids (pyiceberg's own conversion of an Arrow schema), so the spec can name "night"
    arrow = alert_schema() if name == "alert" else lsst_alert_schema() if name == LSST_ALERT_TABLE else TABLES[name]
    schema = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(arrow))
    spec = UNPARTITIONED_PARTITION_SPEC
    if name != "ingest_ledger":  # partitioned by night from its first commit: no reader ever sees it unpartitioned
        night = schema.find_field("night").field_id
        spec = PartitionSpec(PartitionField(source_id=night, field_id=1000, transform=IdentityTransform(),
                                            name="night"))
    try:
        # one create with its spec (not a staged create-transaction: REST servers may not implement those)
        catalog.create_table(ident, schema=schema, partition_spec=spec, properties=TABLE_PROPERTIES)
    except TableAlreadyExistsError:
        pass
    except Exception:  # noqa: BLE001 - a concurrent creator won (IntegrityError, CommitFailed): load it
        try:
            return catalog.load_table(ident)
        except NoSuchTableError:
            pass
        raise
    return catalog.load_table(ident)


COMPACTED_KEY = "ateda.compacted"  # snapshot property of a compaction: {"removed": [...], "added": [...]}


def compaction_lineage(table) -> list[tuple[list[str], list[str]]]:  # noqa: ANN001
    """(removed files, added files) of every compaction among the table's live snapshots, oldest first."""
    out = []
    for snap in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms):
        props = snap.summary.additional_properties if snap.summary else {}
        if COMPACTED_KEY in props:
            d = json.loads(props[COMPACTED_KEY])
            out.append((d["removed"], d["added"]))
    return out


def ensure_crossmatch_table(settings: Settings) -> Table:
    """bronze.crossmatch, created (partitioned by night) or brought to the current schema."""
    catalog = load_catalog(settings)
    ident = f"{settings.namespace}.{CROSSMATCH_TABLE}"
    try:
        return _with_current_schema(catalog.load_table(ident))
    except NoSuchTableError:
        pass
    try:
        catalog.create_namespace(settings.namespace)
    except NamespaceAlreadyExistsError:
        pass
    try:
        table = catalog.create_table(ident, schema=CROSSMATCH, properties={**TABLE_PROPERTIES, **NO_RETRIES})
        with table.update_spec() as spec:
            spec.add_identity("night")
        return table
    except TableAlreadyExistsError:
        return catalog.load_table(ident)


def _with_current_schema(table: Table) -> Table:
    """A table created before a column of CROSSMATCH existed (``matched_at``, ``survey``) gets it (NULL in its old
    rows: readers take a NULL survey as ZTF's); one created before the work keys gets :data:`NO_RETRIES`. Two pods
    evolving it at once: the loser finds the winner's schema."""
    if set(CROSSMATCH.names) - set(table.schema().column_names):
        try:
            with table.update_schema() as upd:
                upd.union_by_name(CROSSMATCH)
        except CommitFailedException:
            table = table.refresh()
            if set(CROSSMATCH.names) - set(table.schema().column_names):
                raise
    if any(table.properties.get(k) != v for k, v in NO_RETRIES.items()):
        with table.transaction() as tx:
            tx.set_properties(NO_RETRIES)
    return table


def existing_crossmatch_table(settings: Settings) -> Table | None:
    """bronze.crossmatch if it exists, else None (readers do not create it; :func:`ensure_crossmatch_table` does)."""


    try:
        return load_catalog(settings).load_table(f"{settings.namespace}.{CROSSMATCH_TABLE}")
    except NoSuchTableError:
        return None
