"""``ateda ingest``: put files in the bucket, wait until every one is committed to bronze (or rejected), summarise."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ateda.config import Settings
from ateda.errors import AtedaError, TransientError
from ateda.events import catalogue as events
from ateda.keys import UnsafeName, printable
from ateda.lake import deadletters
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.quarantine import quarantine
from ateda.lake.storage import arrow_filesystem, bucket_store, lake_store
from ateda.local.runtime import Runtime, ingestion_functions, running_runtime
from ateda.ztf.alerts import Source

log = logging.getLogger(__name__)
BRONZE_QUARANTINE = "quarantine/schema_conflict/bronze/"  # chunks bronze refused (ateda.steps.bronze.QUARANTINE_PREFIX)

@dataclass
class Uploaded:
    key: str
    etag: str
    size: int
    refused: dict | None = None  # the quarantine record when the bucket refused the name (never uploaded)


@dataclass
class IngestSummary:
    files: int = 0
    bytes: int = 0
    alerts: int = 0
    objects: int = 0
    nights: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    commits: int | None = 0

    @property
    def alerts_per_second(self) -> float:
        return self.alerts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "alerts_per_second": round(self.alerts_per_second, 1)}


def expand(paths: list[Path]) -> list[Path]:
    """Files named, and the files inside folders named (sorted). A path that does not exist is the user's mistake:
    FileNotFoundError before anything is started or uploaded."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(2, "No such file or directory", str(p))
        out.extend(sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    return out


def upload(settings: Settings, files: list[Path], prefix: str = "", progress=None) -> list[Uploaded]:  # noqa: ANN001
    """Copy ``files`` into the bucket under ``prefix``; returns their keys and ETags."""
    store = bucket_store(settings)
    done = []
    for f in files:
        key = f"{prefix}{f.name}"
        try:
            etag = store.put_file(key, f)
        except UnsafeName as err:  # a name no store takes (a newline, bytes that are not UTF-8): quarantined, by name
            done.append(_refuse(settings, key, f, err))
        else:
            done.append(Uploaded(key, etag, f.stat().st_size))
        if progress:
            progress(1)
    return done


def _refuse(settings: Settings, key: str, path: Path, err: UnsafeName) -> Uploaded:
    """Quarantine a file the bucket refused by name: the name is kept as data (never a path), its bytes capped."""
    with open(path, "rb") as fh:  # the record's JSON keeps even undecodable bytes, as \udcXX escapes
        record = quarantine(lake_store(settings), Source(settings.bucket, key, ""), err, None, fh, 0,
                            copy_limit=settings.quarantine_copy_bytes)
    return Uploaded(key, "", path.stat().st_size, refused={k: record[k] for k in ("reason", "member", "detail")})


def wait_committed(settings: Settings, uploaded: list[Uploaded], timeout: float = 3600.0,
                   progress=None) -> dict[tuple[str, str], dict]:  # noqa: ANN001
    """Block until each object's part count is known (split manifests) and all its parts are in the ledger.

    Returns, per (key, etag), ``{"parts": n, "rejected": [...]}`` merged over every manifest that names it.
    Polling is incremental: only manifests and ledger data files not seen before are read. A part that bronze
    refused as bad input (quarantined chunk) counts as done, with its reason among the object's rejections. The
    catalog being unreachable is waited out (polls back off up to 5 s), never an error.
    """
    lake = lake_store(settings)
    pending = {(u.key, u.etag) for u in uploaded if not u.refused}
    objects: dict[tuple[str, str], dict] = {(u.key, u.etag): {"parts": 0, "rejected": [u.refused]}
                                            for u in uploaded if u.refused}
    if progress and objects:
        progress(len(objects))
    read: set[str] = set()
    refused: set[tuple[str, str, int]] = set()
    ledger = _LedgerFollower(settings)
    letters = _DeadLetters(lake)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        letters.check()
        _read_manifests(lake, settings.bucket, read, objects)
        _read_bronze_rejections(lake, settings.bucket, read, objects, refused)
        known = {k: objects[k]["parts"] for k in pending if objects.get(k, {}).get("parts") is not None}
        done_now = {k for k, n in known.items() if n == 0}
        if len(done_now) < len(known):
            committed = ledger.parts_or_last()  # the catalog down: what was known, and wait (the broker retries)
            done_now |= {k for k, n in known.items()
                         if all((k[0], k[1], p) in committed or (k[0], k[1], p) in refused for p in range(n))}
        pending -= done_now
        if progress and done_now:
            progress(len(done_now))
        if pending:
            time.sleep(ledger.poll_s)
    if pending:
        raise TimeoutError(f"{len(pending)} object(s) not committed after {timeout:.0f}s, e.g. {sorted(pending)[:3]}")
    return {(u.key, u.etag): objects[(u.key, u.etag)] for u in uploaded}


def _read_manifests(lake, bucket: str, read: set[str], objects: dict) -> None:  # noqa: ANN001
    for info in lake.list(f"manifests/{bucket}/"):
        if info.key in read or not info.key.endswith(".json"):
            continue
        read.add(info.key)
        for obj in json.loads(lake.get_bytes(info.key))["objects"]:
            entry = objects.setdefault((obj["key"], obj["etag"]), {"parts": None, "rejected": []})
            if obj["parts"] is not None:
                entry["parts"] = obj["parts"]
            entry["rejected"].extend(r for r in obj["rejected"] if r not in entry["rejected"])


def _read_bronze_rejections(lake, bucket: str, read: set[str], objects: dict,  # noqa: ANN001
                            refused: set[tuple[str, str, int]]) -> None:
    for info in lake.list(BRONZE_QUARANTINE):
        if info.key in read or not info.key.endswith(".reason.json"):
            continue
        read.add(info.key)
        record = json.loads(lake.get_bytes(info.key))
        for src in record.get("sources", []):
            if src.get("bucket") != bucket:
                continue
            refused.add((src["key"], src["etag"], int(src["part"])))
            entry = objects.setdefault((src["key"], src["etag"]), {"parts": None, "rejected": []})
            rejection = {"reason": record["reason"], "member": None, "detail": record.get("detail", "")[:300]}
            if rejection not in entry["rejected"]:
                entry["rejected"].append(rejection)


class IngestFailed(AtedaError):
    """Events of this ingest were dead-lettered: waiting longer cannot help (fix, then ``ateda replay``)."""


class _DeadLetters:
    """Dead letters that appear while an ingest waits (checked every few seconds), in any format. Only letters of
    the events an ingest waits on (``object.created`` to split, ``alerts.staged`` to bronze) stop it: a refresh or
    crossmatch letter does not keep its alerts out of bronze (``ateda status`` counts it)."""

    WAITED_ON = (events.OBJECT_CREATED, events.ALERTS_STAGED)

    def __init__(self, lake) -> None:  # noqa: ANN001
        self.lake = lake
        self.seen = set(deadletters.keys(lake))
        self.next_check = 0.0

    def check(self) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + 2.0
        new = [k for k in deadletters.keys(self.lake) if k not in self.seen]
        self.seen.update(new)
        mine = [x for x in deadletters.letters(self.lake, new) if x.event.get("type") in self.WAITED_ON]
        if mine:
            letter = mine[0]
            raise IngestFailed(f"{len(mine)} event(s) dead-lettered, e.g. {letter.key}: HTTP {letter.code} "
                               f"{printable(letter.error[:300])}. Fix the cause, then `ateda replay`.")


class _LedgerFollower:
    """The committed parts of one bucket, reading each ledger data file once (the ledger is append-only)."""

    POLL_S = 0.5
    MAX_POLL_S = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._table = None
        self._snapshot: int | None = None
        self._files: set[str] = set()
        self._parts: set[tuple[str, str, int]] = set()
        self.poll_s = self.POLL_S
        self.outages = 0  # polls that found the catalog unreachable

    def parts_or_last(self) -> set[tuple[str, str, int]]:
        """``parts()``; while the catalog is unreachable, the parts known so far (polls back off, one note)."""
        try:
            parts = self.parts()
        except TransientError as exc:
            if not self.outages:
                log.warning("ateda ingest: catalog unreachable, waiting (%s)", str(exc)[:200])
            self.outages += 1
            self.poll_s = min(self.poll_s * 2, self.MAX_POLL_S)
            return self._parts
        if self.outages:
            log.warning("ateda ingest: catalog reachable again after %d failed poll(s)", self.outages)
        self.outages, self.poll_s = 0, self.POLL_S
        return parts

    def parts(self) -> set[tuple[str, str, int]]:
        """Raises TransientError when the catalog or the lake cannot be read."""
        try:
            return self._poll()
        except TransientError:
            self._table = None
            raise
        except Exception as exc:  # noqa: BLE001 - database errors, I/O errors: the catalog is unavailable
            self._table = None
            raise TransientError(f"ledger poll failed: {type(exc).__name__}: {str(exc)[:300]}") from exc

    def _poll(self) -> set[tuple[str, str, int]]:
        if self._table is None:
            self._table = ensure_tables(load_catalog(self.settings), self.settings)["ingest_ledger"]
        table = self._table.refresh()
        snap = table.current_snapshot()
        if snap is None or snap.snapshot_id == self._snapshot:
            return self._parts
        for task in table.scan().plan_files():
            path = task.file.file_path
            if path in self._files:
                continue
            fs, local = arrow_filesystem(path.removeprefix("file://"), self.settings)
            rows = pq.read_table(local, filesystem=fs, columns=["source_bucket", "source_key", "source_etag", "part"])
            rows = rows.filter(pc.equal(rows["source_bucket"], self.settings.bucket))
            self._parts.update(zip(rows["source_key"].to_pylist(), rows["source_etag"].to_pylist(),
                                   rows["part"].to_pylist()))
            self._files.add(path)
        self._snapshot = snap.snapshot_id  # only once every file of this snapshot was read
        return self._parts


def summarise(settings: Settings, uploaded: list[Uploaded], manifests: dict, seconds: float,
              commits: int, outage_s: float = 300.0) -> IngestSummary:
    """The summary, read from bronze.alert (a catalog outage is waited out for up to ``outage_s``)."""
    deadline = time.monotonic() + outage_s
    delay = 0.5
    while True:
        try:
            return _summarise(settings, uploaded, manifests, seconds, commits)
        except TransientError:
            if time.monotonic() > deadline:
                raise
        except Exception as exc:  # noqa: BLE001 - a database error: the catalog is unavailable
            if time.monotonic() > deadline:
                raise TransientError(f"cannot read bronze.alert: {type(exc).__name__}") from exc
        log.warning("ateda ingest: catalog unreachable while summarising, retrying in %.1f s", delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _summarise(settings: Settings, uploaded: list[Uploaded], manifests: dict, seconds: float,
               commits: int) -> IngestSummary:
    tables = ensure_tables(load_catalog(settings), settings)
    alerts = tables["alert"].scan(selected_fields=("objectId", "night", "source_key", "source_etag")).to_arrow()
    mine = {(u.key, u.etag) for u in uploaded}
    mask = [k in mine for k in zip(alerts["source_key"].to_pylist(), alerts["source_etag"].to_pylist())]
    alerts = alerts.filter(mask) if alerts.num_rows else alerts
    rejected = [{"key": key, **r} for (key, _), m in manifests.items() for r in m["rejected"]]
    return IngestSummary(
        files=len(uploaded), bytes=sum(u.size for u in uploaded), alerts=alerts.num_rows,
        objects=len(set(alerts["objectId"].drop_null().to_pylist())),
        nights=sorted({str(n) for n in alerts["night"].to_pylist()}),
        rejected=rejected, seconds=seconds, commits=commits)


def iceberg_commits(settings: Settings) -> int | None:
    """Snapshots across the bronze tables (each commit adds one); None if the catalog is unreachable."""
    try:
        tables = ensure_tables(load_catalog(settings), settings)
        return sum(len(t.refresh().metadata.snapshots) for t in tables.values())
    except Exception:  # noqa: BLE001 - TransientError or a database error: the catalog is unavailable
        return None


def ensure_runtime(settings: Settings):  # noqa: ANN201
    """The running runtime if ``ateda up`` runs on this home, else one started for the caller's duration: the
    ingestion functions only (a background dbt refresh would be cut short when the caller exits; `ateda refresh`
    or `ateda up` run the science functions)."""
    return nullcontext() if running_runtime(settings) else Runtime(settings, functions=ingestion_functions())


def run_ingest(settings: Settings, paths: list[Path], prefix: str = "", timeout: float = 3600,
               quiet: bool = False) -> IngestSummary:
    """Upload ``paths`` (files, folders, tarballs) under ``prefix`` and wait until each is committed to bronze or
    rejected; runs the ingestion functions for the duration when no ``ateda up`` runs on this home."""
    files = expand(paths)
    with ensure_runtime(settings):
        commits0 = iceberg_commits(settings)  # None while the catalog is unreachable
        start = time.perf_counter()
        with tqdm(total=len(files), desc="upload", unit="file", disable=quiet, file=sys.stderr) as bar:
            uploaded = upload(settings, files, prefix, bar.update)
        with tqdm(total=len(files), desc="commit", unit="file", disable=quiet, file=sys.stderr) as bar:
            manifests = wait_committed(settings, uploaded, timeout, bar.update)
        seconds = time.perf_counter() - start
    commits1 = iceberg_commits(settings)
    return summarise(settings, uploaded, manifests, seconds,
                     None if commits0 is None or commits1 is None else commits1 - commits0)
