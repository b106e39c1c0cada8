"""Bronze: commit staged chunks to the Iceberg tables in group commits, exactly once, with poison isolation.

Concurrent requests each ``submit`` a chunk and wait; one committer thread takes everything queued (after a short
window), commits it with one Iceberg commit per table, and wakes the waiters. A request is therefore acknowledged
only once its data is committed, and commits stay few however many requests arrive.

Staged files are never deleted here: a re-delivered event names files that may already be table data. Files in
``staging/`` that no snapshot references (duplicates, rewritten chunks) are orphans for the maintenance pass.

Exactly once, with any number of committers on one catalog (processes, runtimes, replicas). The unit is a part
(bucket, key, etag, part); ``bronze.ingest_ledger`` lists the parts that are in both ``alert`` and ``cutout``. A
batch commits ``cutout``, then ``alert``, then the ledger, each as a compare-and-swap: the commit carries the
requirement "the table's current snapshot is still the one I checked against" (pyiceberg's own rebase-and-retry
is switched off for these commits). "Is part P already in table T?" is answered from the ledger plus the data
files of T that the ledger does not cover yet; the ledger's table property ``ateda.covered.<T>`` holds the highest
data sequence number of T up to which every file's parts are in the ledger, so only files newer than that (in
flight, or left by a crash between the data and the ledger commits) are read, whatever their age and however many
snapshots came since. When another committer changed a table in between, the commit fails (CommitFailed); the
batch refreshes, re-reads, re-classifies and retries with jitter. Each table thus receives each part once, and
the ledger once. A part left in ``alert`` (so complete in ``cutout``) without its ledger row by a committer that
never came back (older than ``RECOVER_AFTER_S``) is written to the ledger by the next committer. This holds for
every catalog pyiceberg commits to atomically (SQLite, PostgreSQL, REST).

Poison isolation. A chunk whose data cannot be committed (its Parquet cannot be read, its schema cannot be unioned
with the table or its batch) is bad input, not a transient failure: the failing batch is bisected until the chunk
that fails alone is found; that chunk is quarantined (``schema_conflict``, its staged files copied beside a
``.reason.json`` under ``quarantine/schema_conflict/bronze/``) and acknowledged; the other chunks commit. A replay
of a quarantined chunk is acknowledged at once. Catalog or store failures stay transient (TransientError).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException, ResolveError, ValidationError
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table

from ateda.config import Settings
from ateda.errors import BadInput, TransientError
from ateda.keys import segment
from ateda.lake.iceberg import (LEDGER, LSST_ALERT_TABLE, ensure_lsst_table, ensure_tables, existing_lsst_table,
                                load_catalog)
from ateda.lake.storage import arrow_filesystem, lake_store
from ateda.lake.commits import lean_transaction
from ateda.serving.metrics import instruments
from ateda.steps.batching import MicroBatcher

log = logging.getLogger(__name__)
PartKey = tuple[str, str, str, int]
PART_COLUMNS = ("source_bucket", "source_key", "source_etag", "part")
# in commit order: a part in an alert table has all its cutouts. A part's alerts are of one survey (split starts a
# new part when the survey changes), so a part is whole once it is in its alert table (ALERT_TABLES)
DATA_TABLES = ("cutout", "alert", LSST_ALERT_TABLE)
ALERT_TABLES = ("alert", LSST_ALERT_TABLE)
SUMMARY_KEY = "ateda.chunks"
COVERED_KEY = "ateda.covered.{}"  # ledger table property: "<data table uuid>:<sequence number>"
QUARANTINE_PREFIX = "quarantine/schema_conflict/bronze/"
# a batch this big commits as soon as staged chunks stop arriving: 3 commits (alert, cutout, ledger) per 1 500
# alerts keeps to <= 2 Iceberg commits per 1 000 alerts; smaller batches wait for the window to fill them
COMMIT_ENOUGH_ALERTS = 1500
CAS_ATTEMPTS = 30  # compare-and-swap rounds lost to other committers before the batch is retried by the broker
RECOVER_AFTER_S = 600.0  # data without ledger rows older than this was left by a committer that is gone


@dataclass
class Chunk:
    """The ``data`` of one ``alerts.staged`` event."""

    chunk: str
    alerts: int
    sources: list[dict]
    files: dict[str, list[str]]
    nights: list[str]

    @classmethod
    def from_event(cls, data: dict) -> "Chunk":
        return cls(data["chunk"], data["alerts"], data["sources"], data["files"], data.get("nights", []))

    @property
    def arrived_at(self) -> float | None:
        """Earliest arrival of this chunk's objects in the bucket (epoch seconds), for the lag metric."""
        times = [_epoch(s["arrived_at"]) for s in self.sources if s.get("arrived_at")]
        return min(times) if times else None

    @property
    def surveys(self) -> set[str]:
        """The surveys of the chunk's alerts, told by its staged files (split stages one survey per chunk)."""
        return {s for s, table in (("ztf", "alert"), ("lsst", LSST_ALERT_TABLE)) if self.files.get(table)}

    @property
    def parts(self) -> list[PartKey]:
        return [(s["bucket"], s["key"], s["etag"], int(s["part"])) for s in self.sources]


@dataclass
class CommitResult:
    duplicate: bool
    snapshot_ids: dict[str, int | None]
    rows: dict[str, int]
    nights: list[str]
    chunks: list[str]
    batch_alerts: int
    rejected: dict | None = None  # the quarantine record, when this chunk was refused as bad input
    surveys: list[str] = field(default_factory=list)  # the surveys of the batch's alerts ("ztf", "lsst")


class GroupCommitter:
    """One per process (any number of processes per catalog). ``submit`` blocks until the chunk's batch is
    committed, or the chunk is quarantined; it raises TransientError when the catalog or store failed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._batcher: MicroBatcher[Chunk, CommitResult] = MicroBatcher(
            self._commit_or_reset, settings.commit_window_ms / 1000.0, settings.commit_max_alerts,
            weight=lambda c: c.alerts, name="bronze-committer", enough=COMMIT_ENOUGH_ALERTS)
        self._tables: dict[str, Table] | None = None
        self._view = _View(settings)
        self._lake = None

    def submit(self, chunk: Chunk, timeout: float = 280.0) -> CommitResult:
        return self._batcher.submit(chunk, timeout)

    # -- isolation

    def _commit_or_reset(self, chunks: list[Chunk]) -> list[CommitResult]:
        results: dict[int, CommitResult] = {}
        todo = []
        for i, chunk in enumerate(chunks):
            record = self._quarantined(chunk)
            if record is not None:  # a replay of a chunk refused before: acknowledged, nothing to do
                results[i] = _rejected(record, duplicate=True)
            else:
                todo.append(i)
        for i, res in zip(todo, self._isolate([chunks[i] for i in todo])):
            results[i] = res
        return [results[i] for i in range(len(chunks))]

    def _isolate(self, batch: list[Chunk]) -> list[CommitResult]:
        """Commit ``batch``; on a failure caused by the data, bisect until the chunk that fails alone is found."""
        if not batch:
            return []
        try:
            return self._commit(batch)
        except Exception as exc:  # noqa: BLE001
            self._reset()
            if not _is_data_error(exc):
                log.exception("bronze commit failed (transient)")
                if isinstance(exc, TransientError):
                    raise
                raise TransientError(f"commit failed: {exc}") from exc
            if len(batch) == 1:
                return [self._quarantine(batch[0], exc)]
            log.warning("bronze batch of %d chunks failed on its data (%s): bisecting", len(batch), _short(exc))
            mid = len(batch) // 2
            return self._isolate(batch[:mid]) + self._isolate(batch[mid:])

    def _reset(self) -> None:
        self._tables = None  # reload the catalog next time

    def _lake_store(self):  # noqa: ANN202
        if self._lake is None:

            self._lake = lake_store(self.settings)
        return self._lake

    def _record_key(self, chunk: Chunk) -> str:
        return f"{QUARANTINE_PREFIX}{segment(str(chunk.chunk))}.reason.json"

    def _quarantined(self, chunk: Chunk) -> dict | None:
        lake = self._lake_store()
        key = self._record_key(chunk)
        if lake.head(key) is None:
            return None
        return json.loads(lake.get_bytes(key))

    def _quarantine(self, chunk: Chunk, exc: BaseException) -> CommitResult:
        """Keep the chunk's staged files and the error under quarantine/, count it, acknowledge it."""
        lake = self._lake_store()
        base = self._record_key(chunk).removesuffix(".reason.json")
        reason = exc.reason if isinstance(exc, BadInput) else "schema_conflict"
        kept = []
        for table, uris in chunk.files.items():
            for n, uri in enumerate(uris):
                try:
                    data = _read_capped(uri, self.settings)
                except Exception:  # noqa: BLE001 - the record still names it
                    continue
                key = f"{base}/{segment(table)}-{n}.parquet"
                lake.put_bytes(key, data)
                kept.append(lake.uri(key))
        src = chunk.sources[0] if chunk.sources else {}
        record = {
            "source": {"bucket": src.get("bucket"), "key": src.get("key"), "etag": src.get("etag")},
            "sources": [{k: s.get(k) for k in ("bucket", "key", "etag", "part", "alerts")} for s in chunk.sources],
            "member": None,
            "chunk": chunk.chunk,
            "reason": reason,
            "detail": f"{type(exc).__name__}: {exc}"[:2000],
            "alerts_kept": 0,
            "staged_files": chunk.files,
            "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quarantine_uri": lake.uri(base) if kept else None,
        }
        lake.put_bytes(f"{base}.reason.json", json.dumps(record, indent=1).encode())
        instruments().rejected.labels("bronze", reason).inc()
        log.warning("bronze quarantined chunk %s (%s): %s", chunk.chunk, reason, _short(exc))
        return _rejected(record, duplicate=False)

    # -- one batch, exactly once

    def _ensure(self, rubin: bool = False) -> dict[str, Table]:
        """The bronze tables, refreshed; ``lsst_alert`` when it exists, created when ``rubin`` (a batch holds
        Rubin alerts)."""
        if self._tables is None:
            catalog = load_catalog(self.settings)
            self._tables = dict(ensure_tables(catalog, self.settings))
            lsst = existing_lsst_table(catalog, self.settings)
            if lsst is not None:
                self._tables[LSST_ALERT_TABLE] = lsst
        else:
            for name, table in self._tables.items():
                self._tables[name] = table.refresh()
        if rubin and LSST_ALERT_TABLE not in self._tables:
            self._tables[LSST_ALERT_TABLE] = ensure_lsst_table(load_catalog(self.settings), self.settings)
        return self._tables

    def _commit(self, batch: list[Chunk]) -> list[CommitResult]:
        for chunk in batch:
            _check_staged(chunk, self._lake_store())
        for attempt in range(CAS_ATTEMPTS):
            try:
                return self._attempt(batch)
            except CommitFailedException as exc:  # another committer moved a table: re-read, re-classify
                log.info("bronze commit lost a race (%s), retrying", _short(exc))
                time.sleep(random.uniform(0.02, 0.1) * min(attempt + 1, 10))  # jitter: racers drift apart
        raise TransientError(f"bronze commit lost {CAS_ATTEMPTS} races in a row")

    def _attempt(self, batch: list[Chunk]) -> list[CommitResult]:
        tables = self._ensure(rubin=any(c.files.get(LSST_ALERT_TABLE) for c in batch))
        ledger = tables["ingest_ledger"]
        done = self._view.ledger_parts(ledger)
        plans: dict[str, _TablePlan] = {}
        data_tables = [name for name in DATA_TABLES if name in tables]
        for name in data_tables:
            table = tables[name]
            covered = _covered(ledger, table)
            pending = self._view.uncovered(table, covered)
            plans[name] = _TablePlan(name, covered, pending, done | self._view.parts_in(pending))
            plans[name].classify(batch)
        for name in data_tables:  # everything that can fail on the data, before anything is committed
            plans[name].prepare(tables[name], self.settings)
        snapshot_ids: dict[str, int | None] = {}
        rows: dict[str, int] = {}
        for name in data_tables:
            tables[name], rows[name] = plans[name].commit(tables[name])
            snapshot_ids[name] = _snapshot_id(tables[name])
        ledger, rows["ingest_ledger"] = self._commit_ledger(ledger, tables, plans, batch, done)
        tables["ingest_ledger"] = ledger
        snapshot_ids["ingest_ledger"] = _snapshot_id(ledger)
        todo = [c for c in batch if any(p not in done for p in c.parts)]  # the rest was in the ledger already
        instruments().batch_size.observe(sum(c.alerts for c in todo))
        nights = sorted({n for c in todo for n in c.nights})
        surveys = sorted({s for c in todo for s in c.surveys})
        return [CommitResult(duplicate=c not in todo, snapshot_ids=snapshot_ids, rows=rows, nights=nights,
                             chunks=[t.chunk for t in todo], batch_alerts=sum(t.alerts for t in todo),
                             surveys=surveys)
                for c in batch]

    def _commit_ledger(self, ledger: Table, tables: dict[str, Table], plans: dict[str, "_TablePlan"],
                       batch: list[Chunk], done: set[PartKey]) -> tuple[Table, int]:
        """Ledger rows for the batch's parts not yet in it (all are now in both data tables), plus rows for parts
        a vanished committer left in both data tables; the covered sequence numbers advance. One CAS commit."""
        now = datetime.now(timezone.utc)
        new_rows: dict[PartKey, dict] = {}
        for chunk in batch:
            night = date.fromisoformat(min(chunk.nights)) if chunk.nights else None
            for src in chunk.sources:
                p = (src["bucket"], src["key"], src["etag"], int(src["part"]))
                if p in done or p in new_rows:
                    continue
                arrived = src.get("arrived_at")
                new_rows[p] = {"source_bucket": p[0], "source_key": p[1], "source_etag": p[2], "part": p[3],
                               "alerts": src["alerts"], "chunk": chunk.chunk, "night": night,
                               "arrived_at": datetime.fromisoformat(arrived) if arrived else None,
                               "committed_at": now}
        for p, row in self._view.abandoned(plans, done, tables, now).items():
            new_rows.setdefault(p, row)
        ledger_parts = done | set(new_rows)
        props = {}
        for name in plans:
            plan = plans[name]
            seq = plan.covered_after(tables[name], ledger_parts, self._view)
            if seq > plan.covered:
                props[COVERED_KEY.format(name)] = f"{tables[name].metadata.table_uuid}:{seq}"
        if not new_rows and not props:
            return ledger, 0
        tx = lean_transaction(_cas(ledger))
        if props:
            tx.set_properties(props)
        if new_rows:
            rows = pa.Table.from_pylist(list(new_rows.values()), schema=LEDGER)
            tx.append(rows, snapshot_properties={SUMMARY_KEY: ",".join(sorted({r["chunk"] for r in new_rows.values()}))})
        ledger = _commit_tx(tx, ledger)
        if new_rows:
            instruments().commits.labels("ingest_ledger").inc()
            instruments().commit_rows.labels("ingest_ledger").inc(len(new_rows))
        return ledger, len(new_rows)


class _TablePlan:
    """What a batch does to one data table: per chunk, skip (its parts are all there), register its staged files
    (none of its parts are there) or filter and rewrite them (some are)."""

    def __init__(self, name: str, covered: int, pending: list["_DataFile"], present: set[PartKey]) -> None:
        self.name = name
        self.covered = covered
        self.pending = pending
        self.present = present
        self.todo: dict[str, Chunk] = {}
        self.keep: dict[str, set[PartKey]] = {}  # chunk id -> parts to keep, for mixed chunks only
        self.files: list[str] = []
        self.rewrite: list[pa.Table] = []
        self.schema: pa.Schema | None = None
        self.evolve = False
        self.rows = 0

    def classify(self, batch: list[Chunk]) -> None:
        seen: set[PartKey] = set()
        for chunk in batch:
            parts = chunk.parts
            new = [p for p in parts if p not in self.present and p not in seen]
            if not new:
                continue
            seen.update(new)
            if len(new) < len(parts):
                self.keep[chunk.chunk] = set(new)
            self.todo[chunk.chunk] = chunk

    def prepare(self, table: Table, settings: Settings) -> None:
        """Read schemas, filter mixed chunks, and dry-run the schema union: a data error surfaces here."""
        chunks = list(self.todo.values())
        self.files = [f for c in chunks if c.chunk not in self.keep for f in c.files.get(self.name, [])]
        rewrite = [_read_filtered(f, self.keep[c.chunk], settings) for c in chunks if c.chunk in self.keep
                   for f in c.files.get(self.name, [])]
        self.rewrite = [t for t in rewrite if t.num_rows]
        if not self.files and not self.rewrite:
            return
        footers = [_read_footer(f, settings) for f in self.files]  # one read per file: schema and row count
        self.schema = _unified([m.schema.to_arrow_schema() for m in footers] + [t.schema for t in self.rewrite])
        self.evolve = _needs_union(table, self.name, self.schema)
        self.rows = sum(m.num_rows for m in footers) + sum(t.num_rows for t in self.rewrite)

    def commit(self, table: Table) -> tuple[Table, int]:
        if not self.files and not self.rewrite:
            return table, 0
        props = {SUMMARY_KEY: ",".join(self.todo)}
        tx = lean_transaction(_cas(table))
        if self.evolve:
            with tx.update_schema() as upd:
                upd.union_by_name(self.schema)
        if self.files:
            tx.add_files(self.files, snapshot_properties=props, check_duplicate_files=False)
        if self.rewrite:
            tx.append(pa.concat_tables(self.rewrite, promote_options="permissive"), snapshot_properties=props)
        table = _commit_tx(tx, table)
        instruments().commits.labels(self.name).inc()
        instruments().commit_rows.labels(self.name).inc(self.rows)
        return table, self.rows

    def covered_after(self, table: Table, ledger_parts: set[PartKey], view: "_View") -> int:
        """The highest sequence number of ``table`` up to which every data file's parts are in the ledger."""
        if self.todo and self.files + self.rewrite:  # our own commit: its parts all get ledger rows
            last = table.metadata.last_sequence_number
        else:
            last = max([self.covered] + [f.seq for f in self.pending])
        gaps = [f.seq for f in self.pending if not view.file_parts(f.path).keys() <= ledger_parts]
        return max(self.covered, min(gaps) - 1 if gaps else last)


@dataclass(frozen=True)
class _DataFile:
    path: str
    seq: int
    snapshot_id: int | None


@dataclass
class _View:
    """This process's cache of what it has read: ledger parts per ledger file, parts per uncovered data file."""

    settings: Settings
    ledger_files: dict[str, list[PartKey]] = field(default_factory=dict)
    ledger_snapshot: int | None = -1
    parts: set[PartKey] = field(default_factory=set)
    data: dict[str, dict[PartKey, tuple[int, date | None]]] = field(default_factory=dict)
    manifests: dict[str, list[_DataFile]] = field(default_factory=dict)  # manifest files are immutable

    def ledger_parts(self, ledger: Table) -> set[PartKey]:
        snap = ledger.current_snapshot()
        snap_id = snap.snapshot_id if snap else None
        if snap_id == self.ledger_snapshot:
            return self.parts
        live = [t.file.file_path for t in ledger.scan().plan_files()] if snap else []
        new = [path for path in live if path not in self.ledger_files]
        for path in new:
            rows = _read_columns(path, PART_COLUMNS, self.settings)
            self.ledger_files[path] = list(zip(*(rows[c].to_pylist() for c in PART_COLUMNS)))
        gone = set(self.ledger_files) - set(live)
        for path in gone:  # compacted away: rebuild from the live files
            del self.ledger_files[path]
        if gone or self.ledger_snapshot == -1:
            self.parts = {p for parts in self.ledger_files.values() for p in parts}
        else:
            self.parts = self.parts | {p for path in new for p in self.ledger_files[path]}
        self.ledger_snapshot = snap_id
        return self.parts

    def uncovered(self, table: Table, covered: int) -> list[_DataFile]:
        """Live data files of ``table`` with a data sequence number above ``covered``."""
        snap = table.current_snapshot()
        if snap is None:
            return []
        out = []
        for mf in snap.manifests(table.io):
            if mf.content != ManifestContent.DATA or (mf.sequence_number or 0) <= covered:
                continue
            if mf.manifest_path not in self.manifests:
                self.manifests[mf.manifest_path] = [
                    _DataFile(e.data_file.file_path, e.sequence_number or 0, e.snapshot_id)
                    for e in mf.fetch_manifest_entry(table.io, discard_deleted=True)]
            out.extend(f for f in self.manifests[mf.manifest_path] if f.seq > covered)
        return out

    def file_parts(self, path: str) -> dict[PartKey, tuple[int, date | None]]:
        """Rows and first night per part in one data file (read once)."""
        if path not in self.data:
            rows = _read_columns(path, PART_COLUMNS + ("night",), self.settings)
            out: dict[PartKey, tuple[int, date | None]] = {}
            for *p, night in zip(*(rows[c].to_pylist() for c in PART_COLUMNS + ("night",))):
                n, first = out.get(tuple(p), (0, None))
                out[tuple(p)] = (n + 1, night if first is None or (night and night < first) else first)
            self.data[path] = out
        return self.data[path]

    def parts_in(self, files: list[_DataFile]) -> set[PartKey]:
        return {p for f in files for p in self.file_parts(f.path)}

    def abandoned(self, plans: dict[str, _TablePlan], done: set[PartKey], tables: dict[str, Table],
                  now: datetime) -> dict[PartKey, dict]:
        """Ledger rows for parts in bronze.alert (hence complete in bronze.cutout, committed first), absent from the
        ledger, committed by a committer that did not come back (data older than RECOVER_AFTER_S)."""
        def old(f: _DataFile, table: Table) -> bool:
            snap = table.metadata.snapshot_by_id(f.snapshot_id) if f.snapshot_id else None
            return snap is None or snap.timestamp_ms < (now.timestamp() - RECOVER_AFTER_S) * 1000

        rows = {}
        pending = [(f, name) for name in ALERT_TABLES if name in plans for f in plans[name].pending]
        for f, name in pending:  # cutouts are committed before alerts, and a part is in one alert table: complete
            if not old(f, tables[name]):
                continue
            for p, (n, night) in self.file_parts(f.path).items():
                if p not in done:
                    rows[p] = {"source_bucket": p[0], "source_key": p[1], "source_etag": p[2], "part": p[3],
                               "alerts": n, "chunk": _chunk_of(f.path), "night": night, "arrived_at": None,
                               "committed_at": now}
        return rows


_UNIONS: dict[tuple, bool] = {}  # (table, its schema, the input schema) -> does the union change the table?


def _needs_union(table: Table, name: str, schema: pa.Schema) -> bool:
    """Dry-run of the union by name (raises on a conflict: a data error), remembered per schema pair."""
    current = table.schema()
    key = (str(table.metadata.table_uuid), name, current.schema_id, schema.to_string())
    if key not in _UNIONS:
        _UNIONS[key] = table.update_schema().union_by_name(schema)._apply().as_struct() != current.as_struct()
        if len(_UNIONS) > 1000:
            _UNIONS.clear()
    return _UNIONS[key]


def _rejected(record: dict, duplicate: bool) -> CommitResult:
    return CommitResult(duplicate=duplicate, snapshot_ids={}, rows={}, nights=[], chunks=[], batch_alerts=0,
                        rejected=record)


def _cas(table: Table) -> Table:
    """The same table, with pyiceberg's rebase-and-retry on conflict switched off for commits made through it:
    a commit then fails (CommitFailedException) if the table changed since ``table`` was loaded."""
    props = {**table.metadata.properties, "commit.retry.num-retries": "0"}
    return Table(table.name(), table.metadata.model_copy(update={"properties": props}), table.metadata_location,
                 table.io, table.catalog)


def _commit_tx(tx, table: Table) -> Table:  # noqa: ANN001
    """Commit ``tx`` (made on ``_cas(table)``); returns the table as of exactly that commit."""
    try:
        return tx.commit_transaction()
    except Exception:  # a lost race (CommitFailed) or the catalog unavailable (locked, down): a failed attempt
        instruments().commit_retries.labels(table.name()[-1]).inc()
        raise


def _covered(ledger: Table, table: Table) -> int:
    value = ledger.metadata.properties.get(COVERED_KEY.format(table.name()[-1]), "")
    uuid, _, seq = value.rpartition(":")
    return int(seq) if uuid == str(table.metadata.table_uuid) and seq.isdigit() else 0


def _snapshot_id(table: Table) -> int | None:
    snap = table.current_snapshot()
    return snap.snapshot_id if snap else None


_STAGED = re.compile(r"/staging/([0-9a-f]+)/")


def _chunk_of(path: str) -> str:
    match = _STAGED.search(path)
    return match.group(1) if match else "recovered"


def _check_staged(chunk: Chunk, lake) -> None:  # noqa: ANN001
    """Staged files must be Parquet under the lake's ``staging/``: an event cannot make bronze read elsewhere."""
    root = lake.uri("staging")
    for uris in chunk.files.values():
        for uri in uris:
            if not isinstance(uri, str) or not uri.startswith(root + "/") or "/../" in uri or "\x00" in uri:
                raise BadInput("unsafe_key", f"staged file outside {root}/: {str(uri)[:200]!r}")


_DATA_ERRORS = (ValidationError, ResolveError, ValueError, RecursionError, BadInput, pa.ArrowException)


def _is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` says the chunk's data is unusable (schema unreadable or not unionable, a type conflict);
    False for the catalog or the store being unavailable (retry later)."""
    if isinstance(exc, (TransientError, CommitFailedException)):
        return False
    if isinstance(exc, OSError):  # pyarrow reports an unreadable Parquet footer/schema as an OSError
        text = str(exc).lower()
        return "parquet" in text and not any(w in text for w in ("connection", "timeout", "aws error", "network"))
    return isinstance(exc, _DATA_ERRORS)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    return schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas, promote_options="permissive")


def _fs_path(uri: str, settings: Settings):  # noqa: ANN202

    return arrow_filesystem(uri.removeprefix("file://"), settings)


def _read_columns(uri: str, columns: tuple[str, ...], settings: Settings) -> pa.Table:
    fs, path = _fs_path(uri, settings)
    return pq.read_table(path, filesystem=fs, columns=list(columns))


def _read_capped(uri: str, settings: Settings) -> bytes:
    fs, path = _fs_path(uri, settings)
    with fs.open_input_stream(path) as fh:
        return fh.read(settings.quarantine_copy_bytes)


def _read_footer(uri: str, settings: Settings) -> pq.FileMetaData:
    fs, path = _fs_path(uri, settings)
    return pq.read_metadata(path, filesystem=fs)


def _read_filtered(uri: str, keep: set[PartKey], settings: Settings) -> pa.Table:
    fs, path = _fs_path(uri, settings)
    table = pq.read_table(path, filesystem=fs)
    keys = zip(*(table[c].to_pylist() for c in PART_COLUMNS))
    mask = pa.array([k in keep for k in keys])
    return table.filter(mask)
