"""Bronze: commit staged chunks to the Iceberg tables in group commits, idempotently.

Concurrent requests each ``submit`` a chunk and wait; one committer thread takes everything queued (after a short
window), commits it with one Iceberg commit per table, and wakes the waiters. A request is therefore acknowledged
only once its data is committed, and commits stay few however many requests arrive.

Staged files are never deleted here: a re-delivered event names files that may already be table data. Files in
``staging/`` that no snapshot references (duplicates, rewritten chunks) are orphans for the maintenance pass.

Idempotency: the unit is a part (bucket, key, etag, part), recorded in ``bronze.ingest_ledger``. Chunks whose parts
are all committed are duplicates; entirely new chunks are registered as they are (``add_files``, no rewrite); mixed
chunks are filtered and rewritten. Each data commit also names its chunks in the snapshot summary
(``ateda.chunks``), so a crash between the data commit and the ledger commit is repaired by the re-delivery.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table

from .batching import MicroBatcher
from .catalog import LEDGER, ensure_tables, load_catalog
from .config import Settings
from .errors import TransientError
from .metrics import m

log = logging.getLogger(__name__)
PartKey = tuple[str, str, str, int]
SUMMARY_KEY = "ateda.chunks"
# a batch this big commits as soon as staged chunks stop arriving: 3 commits (alert, cutout, ledger) per 1 500
# alerts keeps to <= 2 Iceberg commits per 1 000 alerts; smaller batches wait for the window to fill them
COMMIT_ENOUGH_ALERTS = 1500


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


class GroupCommitter:
    """One per process. ``submit`` blocks until the chunk's batch is committed (or raises TransientError)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._batcher: MicroBatcher[Chunk, CommitResult] = MicroBatcher(
            self._commit_or_reset, settings.commit_window_ms / 1000.0, settings.commit_max_alerts,
            weight=lambda c: c.alerts, name="bronze-committer", enough=COMMIT_ENOUGH_ALERTS)
        self._tables: dict[str, Table] | None = None
        self._ledger: set[PartKey] = set()
        self._ledger_snapshot: int | None = -1
        self._merged_schemas: set[str] = set()

    def submit(self, chunk: Chunk, timeout: float = 280.0) -> CommitResult:
        return self._batcher.submit(chunk, timeout)

    def _commit_or_reset(self, chunks: list[Chunk]) -> list[CommitResult]:
        try:
            return self._commit(chunks)
        except Exception as exc:  # everything in the batch is retried by the broker
            log.exception("bronze commit failed")
            self._tables = None  # reload the catalog next time
            self._merged_schemas.clear()  # a failed transaction may have carried a schema union: redo it
            if isinstance(exc, TransientError):
                raise
            raise TransientError(f"commit failed: {exc}") from exc

    def _ensure(self) -> dict[str, Table]:
        if self._tables is None:
            catalog = load_catalog(self.settings)
            self._tables = ensure_tables(catalog, self.settings)
        else:
            for name, table in self._tables.items():
                self._tables[name] = table.refresh()
        return self._tables

    def _load_ledger(self, ledger: Table) -> None:
        snap = ledger.current_snapshot()
        snap_id = snap.snapshot_id if snap else None
        if snap_id == self._ledger_snapshot:
            return
        rows = ledger.scan(selected_fields=("source_bucket", "source_key", "source_etag", "part")).to_arrow()
        self._ledger = set(zip(*(rows[c].to_pylist() for c in rows.column_names)))
        self._ledger_snapshot = snap_id

    # -- one batch

    def _commit(self, batch: list[Chunk]) -> list[CommitResult]:
        tables = self._ensure()
        self._load_ledger(tables["ingest_ledger"])
        plan = _Plan()
        for chunk in batch:
            plan.classify(chunk, self._ledger)
        snapshot_ids: dict[str, int | None] = {}
        rows: dict[str, int] = {}
        for name in ("alert", "cutout"):
            rows[name], snapshot_ids[name] = self._commit_data(tables[name], name, plan)
        rows["ingest_ledger"], snapshot_ids["ingest_ledger"] = self._commit_ledger(tables["ingest_ledger"], plan)
        m().batch_size.observe(sum(c.alerts for c in plan.todo))
        return [plan.result(chunk, snapshot_ids, rows) for chunk in batch]

    def _commit_data(self, table: Table, name: str, plan: "_Plan") -> tuple[int, int | None]:
        done = _chunks_in_summaries(table)  # committed before a crash that lost the ledger rows
        todo = [c for c in plan.todo if c.chunk not in done]
        files = [f for c in todo if c.chunk not in plan.keep for f in c.files.get(name, [])]
        rewrite = [_read_filtered(f, plan.keep[c.chunk], self.settings) for c in todo if c.chunk in plan.keep
                   for f in c.files.get(name, [])]
        rewrite = [t for t in rewrite if t.num_rows]
        if files or rewrite:
            schema = _unified([_read_schema(f, self.settings) for f in files] + [t.schema for t in rewrite])
            props = {SUMMARY_KEY: ",".join(c.chunk for c in todo)}
            evolve = self._needs_union(name, schema)
            self._with_retry(name, lambda: _commit_files(table, files, rewrite, props, schema if evolve else None))
            m().commits.labels(name).inc()
        n = sum(_num_rows(f, self.settings) for f in files) + sum(t.num_rows for t in rewrite)
        m().commit_rows.labels(name).inc(n)
        snap = table.current_snapshot()
        return n, snap.snapshot_id if snap else None

    def _commit_ledger(self, table: Table, plan: "_Plan") -> tuple[int, int | None]:
        if not plan.ledger_rows:
            snap = table.current_snapshot()
            return 0, snap.snapshot_id if snap else None
        rows = pa.Table.from_pylist(plan.ledger_rows, schema=LEDGER)
        props = {SUMMARY_KEY: ",".join(c.chunk for c in plan.todo)}
        self._with_retry("ingest_ledger", lambda: table.append(rows, snapshot_properties=props))
        m().commits.labels("ingest_ledger").inc()
        m().commit_rows.labels("ingest_ledger").inc(rows.num_rows)
        self._ledger.update(plan.committed_parts)
        snap_id = table.current_snapshot().snapshot_id
        self._ledger_snapshot = snap_id
        return rows.num_rows, snap_id

    def _needs_union(self, name: str, schema: pa.Schema) -> bool:
        """True unless this process already merged this exact schema into the table (union is idempotent)."""
        fp = f"{name}:{hash(schema.to_string())}"
        if fp in self._merged_schemas:
            return False
        self._merged_schemas.add(fp)
        return True

    def _with_retry(self, name: str, fn) -> None:  # noqa: ANN001
        """pyiceberg retries conflicting appends itself; this covers a catalog that is briefly unreachable."""
        for attempt in range(3):
            try:
                fn()
                return
            except Exception as exc:
                m().commit_retries.labels(name).inc()
                if attempt == 2:
                    raise TransientError(f"commit to {name} failed: {exc}") from exc
                time.sleep(0.2 * 2 ** attempt)


class _Plan:
    """What a batch does with each chunk: skip (duplicate), register (new) or filter and rewrite (mixed)."""

    def __init__(self) -> None:
        self.todo: list[Chunk] = []
        self.dropped: list[Chunk] = []
        self.keep: dict[str, set[PartKey]] = {}  # chunk id -> parts to keep, for mixed chunks only
        self.committed_parts: set[PartKey] = set()
        self.ledger_rows: list[dict] = []
        self._seen: set[PartKey] = set()
        self._now = datetime.now(timezone.utc)

    def classify(self, chunk: Chunk, ledger: set[PartKey]) -> None:
        parts = chunk.parts
        new = [p for p in parts if p not in ledger and p not in self._seen]
        if not new:
            self.dropped.append(chunk)
            return
        if len(new) < len(parts):
            self.keep[chunk.chunk] = set(new)
        self.todo.append(chunk)
        self._seen.update(new)
        self.committed_parts.update(new)
        night = date.fromisoformat(min(chunk.nights)) if chunk.nights else None
        by_part = {(s["bucket"], s["key"], s["etag"], int(s["part"])): s for s in chunk.sources}
        for b, k, e, p in new:
            src = by_part[(b, k, e, p)]
            arrived = src.get("arrived_at")
            self.ledger_rows.append({"source_bucket": b, "source_key": k, "source_etag": e, "part": p,
                                     "alerts": src["alerts"], "chunk": chunk.chunk, "night": night,
                                     "arrived_at": datetime.fromisoformat(arrived) if arrived else None,
                                     "committed_at": self._now})

    def result(self, chunk: Chunk, snapshot_ids: dict, rows: dict) -> CommitResult:
        return CommitResult(
            duplicate=chunk in self.dropped, snapshot_ids=snapshot_ids, rows=rows,
            nights=sorted({n for c in self.todo for n in c.nights}),
            chunks=[c.chunk for c in self.todo], batch_alerts=sum(c.alerts for c in self.todo))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    return schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas, promote_options="permissive")


def _commit_files(table: Table, files: list[str], rewrite: list[pa.Table], props: dict[str, str],
                  evolve: pa.Schema | None) -> None:
    """One atomic commit: evolve the schema (union by name) if asked, register files, append rewritten rows."""
    with table.transaction() as tx:
        if evolve is not None:
            with tx.update_schema() as upd:
                upd.union_by_name(evolve)
        if files:
            tx.add_files(files, snapshot_properties=props, check_duplicate_files=False)
        if rewrite:
            tx.append(pa.concat_tables(rewrite, promote_options="permissive"), snapshot_properties=props)


def _chunks_in_summaries(table: Table, recent: int = 50) -> set[str]:
    out: set[str] = set()
    for snap in table.metadata.snapshots[-recent:]:
        summary = snap.summary.additional_properties if snap.summary else {}
        if summary.get(SUMMARY_KEY):
            out.update(summary[SUMMARY_KEY].split(","))
    return out


def _fs_path(uri: str, settings: Settings):  # noqa: ANN202
    from .storage import arrow_filesystem

    return arrow_filesystem(uri, settings)


def _read_schema(uri: str, settings: Settings) -> pa.Schema:
    fs, path = _fs_path(uri, settings)
    return pq.read_schema(path, filesystem=fs)


def _num_rows(uri: str, settings: Settings) -> int:
    fs, path = _fs_path(uri, settings)
    return pq.read_metadata(path, filesystem=fs).num_rows


def _read_filtered(uri: str, keep: set[PartKey], settings: Settings) -> pa.Table:
    fs, path = _fs_path(uri, settings)
    table = pq.read_table(path, filesystem=fs)
    keys = zip(*(table[c].to_pylist() for c in ("source_bucket", "source_key", "source_etag", "part")))
    mask = pa.array([k in keep for k in keys])
    return table.filter(mask)
