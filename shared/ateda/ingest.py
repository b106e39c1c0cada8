"""``ateda ingest``: put files in the bucket, wait until the pipeline is done with them, summarise each stage.

One-shot equals running: an ingest attaches to the home's runtime (``ateda up``) with a lease, or starts a temporary
one that runs every function ``ateda up`` runs (split, bronze, crossmatch, dbt refresh, maintenance) and lives until
the last ingest attached to it is done (:func:`attach`). It then waits until every file is committed to bronze (or
rejected), and, unless ``bronze_only``, until the pipeline is idle (:func:`wait_idle`): no delivery in flight or
retrying in the broker and no pending refresh request, so silver and gold include the files.

Bucket keys keep the path: a file inside a folder argument ``DIR`` is keyed ``<prefix><DIR's name>/<path in DIR>``,
a file argument ``<prefix><its name>`` (:func:`plan`). A key that already holds other bytes is refused before
anything is uploaded (:class:`KeyConflict`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ateda.config import Settings
from ateda.errors import AtedaError, TransientError
from ateda.events import catalogue as events
from ateda.keys import UnsafeName, printable
from ateda.lake import deadletters
from ateda.lake.iceberg import ensure_tables, existing_crossmatch_table, existing_lsst_table, load_catalog
from ateda.lake.quarantine import quarantine
from ateda.lake.storage import arrow_filesystem, bucket_store, lake_store, md5_file
from ateda.local.home import Lease, RuntimeBusy, gate, live_leases, lock_holder
from ateda.local.runtime import Runtime, default_functions, running_runtime, runtime_health
from ateda.local.watcher import announced_mtimes, is_temporary
from ateda.warehouse.build import pending_requests, read_refresh_state
from ateda.warehouse.queries import connect_science
from ateda.ztf.alerts import Source

log = logging.getLogger(__name__)
BRONZE_QUARANTINE = "quarantine/schema_conflict/bronze/"  # chunks bronze refused (ateda.steps.bronze.QUARANTINE_PREFIX)
TEMPORARY_DEBOUNCE_S = 1.0  # a temporary runtime's refresh debounce: the ingest waits for it, so keep it short
GOLD_TABLES = ("object", "lightcurve")  # counted in the summary (a count(*) each)


@dataclass
class Uploaded:
    key: str
    etag: str
    size: int
    refused: dict | None = None  # the quarantine record when the bucket refused the name (never uploaded)
    mtime: float | None = None  # the object's mtime in the bucket once uploaded (what the watcher announces)


@dataclass
class IngestSummary:
    files: int = 0
    bytes: int = 0
    alerts: int = 0  # alerts of these files in bronze (committed by this run or an earlier one)
    by_survey: dict[str, int] = field(default_factory=dict)  # those alerts per survey ("ztf", "lsst")
    objects: int = 0
    nights: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    commits: int | None = 0  # bronze batch commits that carried this run's alerts (one Iceberg commit per table each)
    new_alerts: int = 0  # alerts this run committed (0 when every file was already in bronze)
    crossmatch: dict | None = None  # {"catalogs": n, "matches": n} (None: bronze only)
    refresh: dict | None = None  # {"ran": bool, "seconds": s, "failed": str | None, "gold_rows": {...}}
    runtime: dict | None = None  # {"pid": the runtime's process, "started": this ingest started it (temporary)}
    bronze_only: bool = False  # crossmatch and refresh were not waited for

    @property
    def alerts_per_second(self) -> float:
        return self.new_alerts / self.seconds if self.seconds else 0.0

    @property
    def all_rejected(self) -> bool:
        """Files were given, and not one alert of them is in bronze."""
        return self.files > 0 and self.alerts == 0

    def as_dict(self) -> dict:
        return {**self.__dict__, "alerts_per_second": round(self.alerts_per_second, 1)}


# ---------------------------------------------------------------- what goes where in the bucket

class NothingToIngest(AtedaError):
    """The arguments name no file (empty folders)."""


class InputRefused(AtedaError):
    """An input ``ateda ingest`` refuses before anything is uploaded (the user's to fix)."""


class KeyConflict(InputRefused):
    """Two inputs, or an input and what the bucket already holds, would share a key with different bytes."""


@dataclass(frozen=True)
class Planned:
    path: Path
    key: str


def expand(paths: list[Path]) -> list[Path]:
    """Files named, and the files inside folders named (sorted). A path that does not exist is the user's mistake:
    FileNotFoundError before anything is started or uploaded."""
    return [p.path for p in plan(paths, check_empty=False)]


def _arg_name(arg: Path) -> str:
    return arg.name or arg.resolve().name  # "." or "dir/" name their folder


def plan(paths: list[Path], prefix: str = "", check_empty: bool = True) -> list[Planned]:
    """Each input file with its bucket key: ``<prefix><folder argument's name>/<path inside it>`` for a file found in
    a folder argument (dot-files, dot-folders and ``*.part`` / ``*.tmp`` skipped), ``<prefix><name>`` for a file
    argument (a name the watcher never announces is refused). The same file named twice is planned once; two
    different files with one key raise :class:`KeyConflict` unless their bytes are equal. No file at all raises
    :class:`NothingToIngest` (``check_empty``). A missing path raises FileNotFoundError."""
    out: dict[str, Planned] = {}
    for arg in paths:
        if not arg.exists():
            raise FileNotFoundError(2, "No such file or directory", str(arg))
        if arg.is_dir():
            base = _arg_name(arg)
            found = [Planned(f, f"{prefix}{base}/{f.relative_to(arg).as_posix()}")
                     for f in sorted(arg.rglob("*")) if f.is_file() and not _hidden(f.relative_to(arg))]
        elif is_temporary(arg.name):
            raise InputRefused(f"{arg}: a dot-file or *.part / *.tmp name is never announced by the bucket watcher; "
                              f"rename it to ingest it")
        else:
            found = [Planned(arg, f"{prefix}{arg.name}")]
        for item in found:
            other = out.get(item.key)
            if other is None:
                out[item.key] = item
            elif other.path.resolve() != item.path.resolve() and not _same_bytes(other.path, item.path):
                raise KeyConflict(f"{other.path} and {item.path} would both be bucket key {item.key!r} with different "
                                  f"bytes; ingest them in separate runs with --prefix, or rename one")
    if check_empty and not out:
        raise NothingToIngest(f"no file in {', '.join(str(p) for p in paths)}: nothing to ingest")
    return list(out.values())


def _hidden(rel: Path) -> bool:
    """Inside a folder argument: a dot-file or a file in a dot-folder (``.DS_Store``, ``.git/``), or a name a
    writer uses while a file is incomplete (``*.part``, ``*.tmp``): skipped, as the bucket watcher never announces
    them."""
    return any(part.startswith(".") for part in rel.parts) or is_temporary(rel.name)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and md5_file(a) == md5_file(b)


def check_bucket(settings: Settings, planned: list[Planned]) -> None:
    """Raise :class:`KeyConflict` if a key already holds other bytes than its file (identical bytes are fine: a
    re-ingest). Only keys that exist are hashed."""
    store = bucket_store(settings)
    for item in planned:
        try:
            info = store.head(item.key)
        except UnsafeName:  # quarantined by name at upload
            continue
        if info is None:
            continue
        if info.size != item.path.stat().st_size or info.etag != md5_file(item.path):
            where = store.uri(item.key)
            raise KeyConflict(f"bucket key {item.key!r} ({where}) already holds other bytes than {item.path}; "
                              f"use --prefix to ingest it under another key")


def upload(settings: Settings, files: list[Path] | list[Planned], prefix: str = "",
           progress=None) -> list[Uploaded]:  # noqa: ANN001
    """Copy the planned files (or plain paths, keyed ``<prefix><name>``) into the bucket; returns keys and ETags."""
    store = bucket_store(settings)
    done = []
    for f in files:
        item = f if isinstance(f, Planned) else Planned(f, f"{prefix}{f.name}")
        try:
            etag = store.put_file(item.key, item.path)
        except UnsafeName as err:  # a name no store takes (a newline, bytes that are not UTF-8): quarantined, by name
            done.append(_refuse(settings, item.key, item.path, err))
        else:
            info = store.stat(item.key) if hasattr(store, "stat") else store.head(item.key)
            done.append(Uploaded(item.key, etag, item.path.stat().st_size, mtime=info.mtime if info else None))
        if progress:
            progress(1)
    return done


def _refuse(settings: Settings, key: str, path: Path, err: UnsafeName) -> Uploaded:
    """Quarantine a file the bucket refused by name: the name is kept as data (never a path), its bytes capped."""
    with open(path, "rb") as fh:  # the record's JSON keeps even undecodable bytes, as \udcXX escapes
        record = quarantine(lake_store(settings), Source(settings.bucket, key, ""), err, None, fh, 0,
                            copy_limit=settings.quarantine_copy_bytes)
    return Uploaded(key, "", path.stat().st_size, refused={k: record[k] for k in ("reason", "member", "detail")})


# ---------------------------------------------------------------- the runtime: attach with a lease

class Attachment:
    """An ingest's hold on the home's runtime: a lease, and the runtime itself when this process started it.

    ``broker`` (the ingress URL, ``…/ateda/ateda``), ``token`` and ``info`` (the state file) name the runtime.
    :meth:`check` (called while waiting) starts a runtime again if the one attached to went away (its owner was
    stopped): the broker's spool and the watcher's state are in the home, so the work resumes."""

    def __init__(self, settings: Settings, functions: list | None = None, progress=None) -> None:  # noqa: ANN001
        self.settings = settings
        self.functions = functions
        self.progress = progress
        self.home = Path(settings.home)
        self.runtime: Runtime | None = None
        self.info: dict = {}
        self.lease: Lease | None = None
        self._next_check = 0.0

    @property
    def broker(self) -> str:
        return self.info["broker"]

    sink = broker  # the name Runtime uses for the same URL

    @property
    def token(self) -> str:
        return self.info.get("token") or ""

    @property
    def started(self) -> bool:
        """This process runs the runtime (a temporary one)."""
        return self.runtime is not None

    def open(self) -> "Attachment":
        self.home.mkdir(parents=True, exist_ok=True)
        with gate(self.home):
            self.lease = Lease(self.home)
            try:
                self._connect()
            except BaseException:
                self.lease.release()
                raise
        return self

    def _connect(self, wait_s: float = 120.0) -> None:
        """Under the gate: attach to the running runtime, else start a temporary one. A runtime that holds the lock
        but does not answer (starting, or stopping) is waited for, up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = lock_holder(self.home)
            if holder is not None:
                info = running_runtime(self.settings)
                if info is not None and Path(self.home, "runtime.json").exists():
                    self.info = info
                    return
                if time.monotonic() > deadline:
                    raise RuntimeBusy(self.home, holder)
                time.sleep(0.2)
                continue
            fast = replace(self.settings.refresh, debounce_s=min(self.settings.refresh.debounce_s,
                                                                 TEMPORARY_DEBOUNCE_S))
            rt = Runtime(replace(self.settings, refresh=fast), functions=self.functions or default_functions())
            try:
                rt.start()
            except RuntimeBusy:  # taken meanwhile (an `ateda up`): attach to it
                continue
            self.runtime = rt
            self.info = {"pid": os.getpid(), "broker": rt.sink, "functions": dict(rt.urls),
                         "token": rt.settings.broker_token}
            return

    def check(self) -> None:
        """Every few seconds: if the runtime attached to is gone, start one (this process then owns it)."""
        if self.runtime is not None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + 2.0
        if running_runtime(self.settings) is not None:
            return
        with gate(self.home):
            self._connect()
        if self.runtime is not None and self.progress:
            self.progress("the runtime this ingest used stopped; started another one to finish")

    def close(self, interrupted: bool = False) -> None:
        """Release the lease; a runtime this process started stops once no other ingest holds a lease (at once when
        ``interrupted``: the attached ingests start their own)."""
        told = False
        try:
            while self.runtime is not None and not interrupted:
                with gate(self.home):
                    others = live_leases(self.home, besides=self.lease)
                    if not others:
                        (self.home / "runtime.json").unlink(missing_ok=True)  # nobody attaches any more
                        break
                if not told and self.progress:
                    self.progress(f"waiting for {others} other ingest(s) using this runtime")
                    told = True
                time.sleep(0.5)
        finally:
            if self.lease is not None:
                self.lease.release()
                self.lease = None
            if self.runtime is not None:
                self.runtime.stop()
                self.runtime = None


@contextlib.contextmanager
def attach(settings: Settings, functions: list | None = None, progress=None) -> Iterator[Attachment]:  # noqa: ANN001
    """Attach to the home's runtime (``ateda up``, or another ingest's temporary one) with a lease, or start a
    temporary runtime running ``functions`` (default: every function of ``ateda up``) that lives until the last
    attached caller is done. Yields the :class:`Attachment` (broker URL, token)."""
    att = Attachment(settings, functions, progress).open()
    try:
        yield att
    except BaseException as exc:
        att.close(interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    att.close()


def ensure_runtime(settings: Settings):  # noqa: ANN201
    """The home's runtime for the caller's duration: :func:`attach` (kept under its old name)."""
    return attach(settings)


# ---------------------------------------------------------------- waiting: bronze, then the whole pipeline

def wait_committed(settings: Settings, uploaded: list[Uploaded], timeout: float = 3600.0,
                   progress=None, tick: Callable[[], None] | None = None,  # noqa: ANN001
                   ledger: "_LedgerFollower | None" = None) -> dict[tuple[str, str], dict]:
    """Block until each object's part count is known (split manifests) and all its parts are in the ledger.

    Returns, per (key, etag), ``{"parts": n, "rejected": [...]}`` merged over every manifest that names it.
    Polling is incremental: only manifests and ledger data files not seen before are read. A part that bronze
    refused as bad input (quarantined chunk) counts as done, with its reason among the object's rejections. The
    catalog being unreachable is waited out (polls back off up to 5 s), never an error. ``tick`` is called at each
    poll (the attachment's check).
    """
    lake = lake_store(settings)
    pending = {(u.key, u.etag) for u in uploaded if not u.refused}
    objects: dict[tuple[str, str], dict] = {(u.key, u.etag): {"parts": 0, "rejected": [u.refused]}
                                            for u in uploaded if u.refused}
    if progress and objects:
        progress(len(objects))
    read: set[str] = set()
    refused: set[tuple[str, str, int]] = set()
    ledger = ledger or _LedgerFollower(settings)
    letters = _DeadLetters(lake)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        if tick:
            tick()
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


def wait_announced(settings: Settings, uploaded: list[Uploaded], timeout: float,
                   tick: Callable[[], None] | None = None, poll_s: float = 0.2) -> None:
    """Block until the bucket watcher has announced every uploaded object as it is now (a re-upload of identical
    bytes is announced again: its re-split is work of this run, even if bronze already had every part)."""
    waiting = {u.key: u.mtime for u in uploaded if not u.refused and u.mtime is not None}
    deadline = time.monotonic() + timeout
    while waiting:
        if tick:
            tick()
        seen = announced_mtimes(settings)
        waiting = {k: m for k, m in waiting.items() if seen.get(k) is None or seen[k] < m - 1e-3}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} object(s) not announced by the bucket watcher after {timeout:.0f}s, "
                               f"e.g. {sorted(waiting)[:3]}")
        time.sleep(poll_s)


def pending_refreshes(settings: Settings) -> int:
    """Refresh requests recorded and not yet served (the refresh worker's markers, ``refresh/requests/`` in the
    lake: ``ateda.steps.dbt_refresh.REQUESTS``)."""
    return pending_requests(settings)


def _backlog(att: Attachment) -> int | None:
    """Deliveries the broker has accepted and not yet acknowledged or dead-lettered (None: it does not answer)."""
    try:
        return sum(runtime_health(att.info, timeout=5)["backlog"].values())
    except Exception:  # noqa: BLE001 - the runtime is stopping or restarting: ``att.check()`` takes over
        return None


REFRESH_LETTERS = "dead-letter/ateda-dbt-refresh/"


def wait_idle(settings: Settings, att: Attachment, timeout: float = 3600.0, poll_s: float = 0.5,
              stable: int = 2) -> dict:
    """Block until the pipeline is idle: the broker holds no delivery (in flight or retrying) and no refresh request
    is pending, seen together on ``stable`` consecutive polls (a refresh marker outlives the delivery that wrote it,
    and a marker is deleted only after the refresh's event is accepted, so the two never both look idle while work
    goes on). Returns what the refresh stage did: ``ran`` (a pending request was seen and served), ``seconds``
    waited, ``run_seconds`` (the last dbt run's own time, from the recorded refresh state), ``failed`` (a refresh
    dead letter that appeared meanwhile, or the last run failed; else None). Raises TimeoutError."""
    lake = lake_store(settings)
    letters_before = {k for k in deadletters.keys(lake) if k.startswith(REFRESH_LETTERS)}
    start = time.monotonic()
    deadline = start + timeout
    seen_pending, calm = False, 0
    while calm < stable:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline was still busy after {timeout:.0f}s (crossmatch or refresh)")
        att.check()
        markers = pending_refreshes(settings)
        backlog = _backlog(att)
        markers_after = pending_refreshes(settings)
        seen_pending = seen_pending or bool(markers or markers_after)
        calm = calm + 1 if (markers == 0 and backlog == 0 and markers_after == 0) else 0
        if calm < stable:
            time.sleep(poll_s)
    new = [k for k in deadletters.keys(lake) if k.startswith(REFRESH_LETTERS) and k not in letters_before]
    failed = None
    if new:
        letter = next(deadletters.letters(lake, new[:1]))
        failed = f"{len(new)} refresh dead letter(s), e.g. {letter.key}: {printable(letter.error[:300])}"
    last = (read_refresh_state(settings, settings.refresh.target) or {}).get("last_run") or {}
    if failed is None and seen_pending and last.get("ok") is False:
        failed = f"the last refresh failed: {printable(str(last.get('error'))[:300])}"
    return {"ran": seen_pending and failed is None, "seconds": round(time.monotonic() - start, 1),
            "run_seconds": last.get("seconds") if seen_pending else None, "failed": failed}


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
        self.file_of: dict[tuple[str, str, int], str] = {}  # part -> the ledger data file that recorded it first
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
            for part in zip(rows["source_key"].to_pylist(), rows["source_etag"].to_pylist(), rows["part"].to_pylist()):
                self._parts.add(part)
                self.file_of.setdefault(part, path)
            self._files.add(path)
        self._snapshot = snap.snapshot_id  # only once every file of this snapshot was read
        return self._parts



def summarise(settings: Settings, uploaded: list[Uploaded], manifests: dict, seconds: float,
              commits: int | None, new_parts: set | None = None, outage_s: float = 300.0,
              stages: bool = False) -> IngestSummary:
    """The summary, read from bronze.alert (a catalog outage is waited out for up to ``outage_s``); with
    ``stages``, also the crossmatch matches of these alerts and the gold tables' row counts."""
    deadline = time.monotonic() + outage_s
    delay = 0.5
    while True:
        try:
            return _summarise(settings, uploaded, manifests, seconds, commits, new_parts, stages)
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
               commits: int | None, new_parts: set | None, stages: bool) -> IngestSummary:
    alerts = _bronze_alerts(settings)
    mine = {(u.key, u.etag) for u in uploaded}
    keys = list(zip(alerts["source_bucket"].to_pylist(), alerts["source_key"].to_pylist(),
                    alerts["source_etag"].to_pylist(), alerts["part"].to_pylist()))
    mask = [b == settings.bucket and (k, e) in mine for b, k, e, _ in keys]
    new = sum(1 for (b, k, e, p), m in zip(keys, mask) if m and (k, e, p) in (new_parts or set()))
    alerts = alerts.filter(mask) if alerts.num_rows else alerts
    rejected = [{"key": key, **r} for (key, _), m in manifests.items() for r in m["rejected"]]
    surveys = alerts["survey"].to_pylist()
    summary = IngestSummary(
        files=len(uploaded), bytes=sum(u.size for u in uploaded), alerts=alerts.num_rows,
        by_survey={s: surveys.count(s) for s in sorted(set(surveys))},
        objects=len(set(zip(surveys, alerts["objectId"].to_pylist())) - {(s, None) for s in surveys}),
        nights=sorted({str(n) for n in alerts["night"].to_pylist()}),
        rejected=rejected, seconds=seconds, commits=commits, new_alerts=new)
    if stages:  # the crossmatch matches both surveys' alerts
        summary.crossmatch = _matches(settings, set(zip(surveys, alerts["candid"].to_pylist())))
    return summary


_SUMMARY_COLUMNS = ("candid", "objectId", "night", "source_bucket", "source_key", "source_etag", "part")


def _bronze_alerts(settings: Settings) -> pa.Table:
    """Every alert in bronze, both surveys, as (survey, candid, objectId, night, source, part): ZTF's candid and
    objectId; Rubin's diaSourceId and diaObjectId (as text)."""
    catalog = load_catalog(settings)
    ztf = ensure_tables(catalog, settings)["alert"].scan(selected_fields=_SUMMARY_COLUMNS).to_arrow()
    pieces = [ztf.select(list(_SUMMARY_COLUMNS)).append_column("survey", pa.array(["ztf"] * ztf.num_rows,
                                                                                 pa.string()))]
    lsst = existing_lsst_table(catalog, settings)
    if lsst is not None:
        rows = lsst.scan(selected_fields=("diaSourceId", "diaObjectId", *_SUMMARY_COLUMNS[2:])).to_arrow()
        pieces.append(pa.table({
            "candid": rows["diaSourceId"], "objectId": rows["diaObjectId"].cast(pa.string()),
            **{c: rows[c] for c in _SUMMARY_COLUMNS[2:]},
            "survey": pa.array(["lsst"] * rows.num_rows, pa.string())}))
    return pa.concat_tables([x.cast(pieces[0].schema) for x in pieces])


def _matches(settings: Settings, alerts: set[tuple[str, int]]) -> dict:
    """How many crossmatch rows these (survey, candid) alerts have (against every registered catalog, this run or
    before); a row without a survey (written before the column) is ZTF's."""
    table = existing_crossmatch_table(settings)
    if table is None or table.current_snapshot() is None:
        return {"matches": 0}
    has_survey = "survey" in table.schema().column_names
    rows = table.scan(selected_fields=("candid", "survey") if has_survey else ("candid",)).to_arrow()
    surveys = rows["survey"].to_pylist() if has_survey else [None] * rows.num_rows
    return {"matches": sum(1 for s, c in zip(surveys, rows["candid"].to_pylist()) if (s or "ztf", c) in alerts)}


def gold_rows(settings: Settings) -> dict[str, int] | None:
    """Row counts of the gold tables the summary shows (None when there is no warehouse yet)."""
    try:
        con = connect_science(settings)
    except Exception:  # noqa: BLE001 - no warehouse file yet, or duckdb cannot open it: nothing to count
        return None
    try:
        return {t: con.execute(f"select count(*) from gold.{t}").fetchone()[0] for t in GOLD_TABLES}
    except Exception:  # noqa: BLE001 - gold not built (a refresh that failed): nothing to count
        return None
    finally:
        con.close()


def iceberg_commits(settings: Settings) -> int | None:
    """Snapshots across the bronze tables (each commit adds one); None if the catalog is unreachable."""
    try:
        tables = ensure_tables(load_catalog(settings), settings)
        return sum(len(t.refresh().metadata.snapshots) for t in tables.values())
    except Exception:  # noqa: BLE001 - TransientError or a database error: the catalog is unavailable
        return None


def run_ingest(settings: Settings, paths: list[Path], prefix: str = "", timeout: float = 3600,
               quiet: bool = False, bronze_only: bool = False) -> IngestSummary:
    """Upload ``paths`` (files, folders, tarballs) under ``prefix`` (keys: :func:`plan`) and wait until each is
    committed to bronze or rejected, then (unless ``bronze_only``) until the pipeline is idle (crossmatch and
    refresh done). Attaches to the home's runtime, or runs a temporary one (:func:`attach`). Raises
    FileNotFoundError, :class:`NothingToIngest` or :class:`InputRefused` (:class:`KeyConflict`) before anything is
    started or uploaded; ``timeout`` (seconds) bounds the whole wait."""
    planned = plan(paths, prefix)
    check_bucket(settings, planned)
    say = None if quiet else (lambda line: print(f"ateda ingest: {line}", file=sys.stderr, flush=True))
    with attach(settings, progress=say) as att:
        if say:
            say(f"{'started a temporary runtime' if att.started else 'attached to the runtime'} "
                f"(pid {att.info.get('pid')}, broker {att.broker})")
        ledger = _LedgerFollower(settings)
        before = set(ledger.parts_or_last())  # what bronze held before: this run reports only what it adds
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        with tqdm(total=len(planned), desc="upload", unit="file", disable=quiet, file=sys.stderr) as bar:
            uploaded = upload(settings, planned, progress=bar.update)
        with tqdm(total=len(planned), desc="commit", unit="file", disable=quiet, file=sys.stderr) as bar:
            manifests = wait_committed(settings, uploaded, timeout, bar.update, tick=att.check, ledger=ledger)
        wait_announced(settings, uploaded, max(1.0, deadline - time.monotonic()), tick=att.check)
        seconds = time.perf_counter() - start
        mine = {(u.key, u.etag) for u in uploaded}
        new_parts = {p for p in ledger.parts_or_last() - before if (p[0], p[1]) in mine}
        commits = len({ledger.file_of[p] for p in new_parts if p in ledger.file_of})
        runtime = {"pid": att.info.get("pid"), "started": att.started}
        refresh = None
        if not bronze_only:
            if say:
                say("bronze done; waiting for crossmatch and the silver/gold refresh")
            refresh = wait_idle(settings, att, max(1.0, deadline - time.monotonic()))
    summary = summarise(settings, uploaded, manifests, seconds, commits, new_parts, stages=not bronze_only)
    summary.runtime, summary.bronze_only = runtime, bronze_only
    if refresh is not None:
        refresh["gold_rows"] = gold_rows(settings)
        summary.refresh = refresh
    return summary
