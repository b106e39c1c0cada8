"""The local bucket source: watches the bucket (a folder, or an S3 bucket by listing) and emits
``dev.ateda.object.created`` for new objects, coalescing objects that arrive together into one event
(up to ``ATEDA_BATCH_MAX_OBJECTS``), as the MinIO bridge does with webhooks in the cluster.

An object is announced once per (key, etag); what was announced is remembered in ``$ATEDA_HOME/state/``.

Only complete input is announced. On a bucket folder a file counts as complete once its size and mtime held still
for ``ATEDA_WATCH_GRACE_S`` (default 2 s); a writer that may pause longer writes under a temporary name and renames
(names starting with ``.`` or ending in ``.part`` / ``.tmp`` are never announced). S3 objects are complete by
definition. A name that could not be a safe object key (``keys.check_key``: control characters, ...) is
quarantined (``unsafe_key``, the name kept as data), never announced.

A batch whose announcement fails is retried with backoff while other objects keep being announced; after
``GIVE_UP_AFTER`` failures its objects are recorded as failed (``state/watcher.sqlite``, shown by ``ateda status``)
and retried only every ``RETRY_FAILED_S``. :meth:`BucketWatcher.health` says how the watcher is doing.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ateda.config import Settings
from ateda.errors import BadInput, TransientError
from ateda.events import catalogue as events, transport
from ateda.keys import check_key
from ateda.lake.quarantine import quarantine
from ateda.lake.storage import LocalStore, ObjectInfo, ObjectStore, _cached_etag, bucket_store, lake_store
from ateda.serving.metrics import instruments
from ateda.ztf.alerts import Source

log = logging.getLogger(__name__)

GIVE_UP_AFTER = 5  # failed announcements of an object before it is recorded as failed
RETRY_FAILED_S = 300.0  # a failed object is tried again this often (or at once when the file changes)
MAX_BACKOFF_S = 30.0
STALL_AFTER_S = 30.0  # no successful scan for this long: the watcher is stalled
TEMP_SUFFIXES = (".part", ".tmp")


def is_temporary(key: str) -> bool:
    """A name a writer uses while the file is incomplete: a dot-file or ``*.part`` / ``*.tmp`` (then renamed)."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


@dataclass
class _Failing:
    mtime: float
    attempts: int
    next_try: float  # time.monotonic()
    error: str
    since: float  # time.time() of the first failure


class _RateLimitedLog:
    """Log one line per kind of message at most every ``every`` seconds, saying how many were held back."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last, held = self._last.get(kind, (-1e18, 0))
        if now - last < self.every:
            self._last[kind] = (last, held + 1)
            return
        self._last[kind] = (now, 0)
        log.warning(msg + (f" ({held} similar message(s) held back)" if held else ""), *args)


class BucketWatcher:
    def __init__(self, settings: Settings, sink: str, interval: float = 0.2, full_every: float = 10.0,
                 token: str | None = None, backoff: float = 0.5, stall_after: float = STALL_AFTER_S) -> None:
        """``backoff``: the wait after a batch's first failed announcement (doubled each time, at most
        ``MAX_BACKOFF_S``); ``token``: the broker's (default ``settings.broker_token``, else as transport.post finds);
        ``stall_after``: seconds without a successful scan before :meth:`health` says ``stalled``."""
        self.settings = settings
        self.backoff = backoff
        self.stall_after = stall_after
        self.sink = sink
        self.token = token if token is not None else (settings.broker_token or None)
        self.interval = interval
        self.full_every = full_every
        self.grace = settings.watch_grace_s
        self._last_full = 0.0
        self.store: ObjectStore = bucket_store(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards what health() reads from another thread
        # key -> (size, mtime, time.monotonic() when first seen with them), until announced
        self._seen: dict[str, tuple[int, float, float]] = {}
        self._failing: dict[str, _Failing] = {}
        self._refused: dict[str, BadInput] = {}  # key -> why the store refused it (this scan)
        self._log = _RateLimitedLog()
        db = Path(settings.home) / "state" / "watcher.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db, check_same_thread=False)
        self._db.execute("create table if not exists announced (key text primary key, etag text, mtime real)")
        self._db.execute("create table if not exists quarantined (key text primary key, mtime real, reason text)")
        self._db.execute("create table if not exists failed "
                         "(key text primary key, mtime real, attempts integer, error text, since real)")
        self._announced: dict[str, float] = dict(self._db.execute("select key, mtime from announced"))
        self._announced.update(self._db.execute("select key, mtime from quarantined"))
        for key, mtime, attempts, error, since in self._db.execute("select * from failed"):
            self._failing[key] = _Failing(mtime, attempts, 0.0, error, since)  # tried again once at start
        self.announced_count = 0
        self.quarantined_count = 0
        self.failures = 0  # failed announcement attempts (batches)
        self.last_scan: float | None = None  # time.time() of the last scan that listed the bucket
        self.last_announce: float | None = None  # time.time() of the last successful announcement
        self._started_at: float | None = None

    def start(self) -> "BucketWatcher":
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="bucket-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 (a listing error: the next scan tries again)
                self._log.warning("scan", "bucket scan failed (will retry): %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.interval)

    # -- what to look at

    def _candidates(self, present: set[str]) -> Iterator[ObjectInfo]:
        """Objects worth a look: on a folder, only names not yet announced are stat'ed, except on a full pass
        (every ``full_every`` s) that also notices re-uploads; an S3 listing carries everything anyway.
        Every name listed is added to ``present``."""
        if not isinstance(self.store, LocalStore):
            for info in self.store.list():
                present.add(info.key)
                yield info
            return
        full = time.monotonic() - self._last_full > self.full_every
        if full:
            self._last_full = time.monotonic()
        for key in self.store.names():
            present.add(key)
            if is_temporary(key):
                continue  # written under a temporary name: announced once renamed
            if full or key not in self._announced:
                try:
                    info = self.store.stat(key)
                except BadInput as err:  # a name the store refuses (scan() quarantines it): the listed entry
                    self._refused[key] = err
                    info = self._lstat(key)
                if info is not None:
                    yield info

    def _lstat(self, key: str) -> ObjectInfo | None:
        """Size and mtime of a listed entry the store refuses to stat (its name, or a symlink out of the root),
        without following links: ``key`` comes from the folder's own listing."""
        try:
            st = os.lstat(os.path.join(self.store.root, key))
        except OSError:
            return None
        return ObjectInfo(key, st.st_size, "", st.st_mtime)

    def _read_refused(self, key: str) -> bytes | None:
        """The first bytes of a listed regular file the store refuses to open (never through a symlink)."""
        if not isinstance(self.store, LocalStore):
            return None
        try:
            fd = os.open(os.path.join(self.store.root, key), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            return fh.read(self.settings.quarantine_copy_bytes)

    def _complete(self, info: ObjectInfo, mono: float) -> bool:
        """An S3 object, or a file this watcher saw keep its size and mtime for the grace period (observed, not
        trusted from the mtime: a clock-skewed or mtime-preserving writer still gets the whole grace)."""
        if self.settings.uses_s3 or self.grace <= 0 or self._put_by_store(info):
            return True
        before = self._seen.get(info.key)
        if before is None or before[:2] != (info.size, info.mtime):
            self._seen[info.key] = (info.size, info.mtime, mono)
            return False
        return mono - before[2] >= self.grace

    def _put_by_store(self, info: ObjectInfo) -> bool:
        """Written by ``LocalStore.put_*`` (``ateda ingest``): complete by construction (temp file + rename), as
        the ETag it cached with that very size and mtime says."""
        if not isinstance(self.store, LocalStore):
            return False
        path = Path(self.store.root, info.key)
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == info.size and _cached_etag(path, st) is not None

    def scan(self) -> int:
        """One pass: announce every new, complete object. Returns how many were announced."""
        ready: list[ObjectInfo] = []
        mono = time.monotonic()
        present: set[str] = set()
        for info in self._candidates(present):
            if self._announced.get(info.key) == info.mtime:
                continue  # a re-upload (new mtime) is announced again; bronze knows identical content
            failing = self._failing.get(info.key)
            if failing is not None and failing.mtime == info.mtime and mono < failing.next_try:
                continue  # backing off
            if not self._complete(info, mono):
                continue
            try:
                refused = self._refused.pop(info.key, None)
                if refused is not None:
                    raise refused
                check_key(info.key)
            except BadInput as err:
                self._quarantine_name(info, err)
                continue
            ready.append(info)
        self._refused.clear()
        with self._lock:
            for key in [k for k in self._seen if k not in present]:  # gone (renamed, deleted) before announced
                del self._seen[key]
            for key in [k for k in self._failing if k not in present]:  # gone from the bucket
                self._forget_failure(key)
        announced = 0
        for i in range(0, len(ready), self.settings.batch_max_objects):
            announced += self._try_announce(ready[i:i + self.settings.batch_max_objects])
        self.last_scan = time.time()
        instruments().watcher_last_scan.set(self.last_scan)
        instruments().watcher_failing.set(len(self._failing))
        return announced

    # -- announcing

    def _try_announce(self, batch: list[ObjectInfo]) -> int:
        """Announce ``batch``; on failure, back off its objects (a batch the broker refuses as bad is split to find
        the object it refuses). Returns how many were announced."""
        try:
            self._announce(batch)
            return len(batch)
        except Exception as exc:  # noqa: BLE001 (whatever it is, it must not block the next batch)
            self.failures += 1
            instruments().watcher_failures.inc()
            # the broker answered (or the event could not even be built): find the object at fault by halves; an
            # unreachable broker fails every batch alike, so its batch just waits
            unreachable = isinstance(exc, TransientError) and not isinstance(exc, transport.Refused)
            if not unreachable and len(batch) > 1:
                half = len(batch) // 2
                return self._try_announce(batch[:half]) + self._try_announce(batch[half:])
            error = f"{type(exc).__name__}: {exc}"[:500]
            self._log.warning("announce", "could not announce %d object(s) (first %r), will retry: %s",
                              len(batch), batch[0].key, error)
            self._record_failure(batch, error)
            return 0

    def _record_failure(self, batch: list[ObjectInfo], error: str) -> None:
        mono, now = time.monotonic(), time.time()
        gave_up = []
        with self._lock:
            for info in batch:
                f = self._failing.get(info.key)
                if f is None or f.mtime != info.mtime:
                    f = self._failing[info.key] = _Failing(info.mtime, 0, 0.0, error, now)
                f.attempts += 1
                f.error = error
                if f.attempts >= GIVE_UP_AFTER:
                    f.next_try = mono + RETRY_FAILED_S
                    gave_up.append((info.key, f.mtime, f.attempts, f.error, f.since))
                else:
                    wait = min(MAX_BACKOFF_S, self.backoff * 2 ** (f.attempts - 1))
                    f.next_try = mono + wait * random.uniform(0.8, 1.2)  # jitter: failed batches do not meet again
        if gave_up:
            self._db.executemany("insert or replace into failed values (?, ?, ?, ?, ?)", gave_up)
            self._db.commit()
            self._log.warning("gave-up", "%d object(s) recorded as failed after %d attempts (first %r): %s; "
                              "retried every %.0f s or when the file changes", len(gave_up), GIVE_UP_AFTER,
                              gave_up[0][0], error, RETRY_FAILED_S)

    def _forget_failure(self, key: str) -> None:
        if self._failing.pop(key, None) is not None:
            self._db.execute("delete from failed where key = ?", (key,))
            self._db.commit()

    def _announce(self, batch: list[ObjectInfo]) -> None:
        objects = []
        for info in batch:
            etag = info.etag or (self.store.head(info.key) or info).etag
            objects.append({"key": info.key, "etag": etag, "size": info.size, "mtime": info.mtime,
                            "time": datetime.fromtimestamp(info.mtime, timezone.utc).isoformat()})
        data = {"bucket": self.settings.bucket,
                "objects": [{k: v for k, v in o.items() if k != "mtime"} for o in objects]}
        # the subject is for people (encoded in the header by transport.to_binary); the keys travel in the data
        subject = objects[0]["key"] if len(objects) == 1 else f"{objects[0]['key']} (+{len(objects) - 1})"
        transport.post(self.sink, events.make_event(events.OBJECT_CREATED, "/ateda/bucket-watcher", data, subject),
                    token=self.token)
        self._db.executemany("insert or replace into announced values (?, ?, ?)",
                             [(o["key"], o["etag"], o["mtime"]) for o in objects])
        self._db.commit()
        with self._lock:
            for o in objects:
                self._announced[o["key"]] = o.pop("mtime")
                self._seen.pop(o["key"], None)
                self._forget_failure(o["key"])
            self.announced_count += len(objects)
            self.last_announce = time.time()

    def _quarantine_name(self, info: ObjectInfo, err: BadInput) -> None:
        """A name no store should take: keep a quarantine record (the name as data, a capped copy of the bytes when
        they can be read) and never announce it, until the file changes."""

        lake = lake_store(self.settings)
        try:
            with self.store.open(info.key) as fh:
                payload: bytes | None = fh.read(self.settings.quarantine_copy_bytes)  # a capped copy
        except BadInput:  # the store refuses the name: read the listed file itself (no link followed)
            payload = self._read_refused(info.key)
        except Exception:  # noqa: BLE001 (unreadable: the record alone says what happened)
            payload = None
        try:
            src = Source(self.settings.bucket, info.key, info.etag, datetime.fromtimestamp(
                info.mtime, timezone.utc).isoformat())
            quarantine(lake, src, err, None, payload, 0)
        except Exception as exc:  # noqa: BLE001 (counted as a failure: retried with backoff, visible in status)
            self._log.warning("quarantine", "could not quarantine %r: %s: %s", info.key, type(exc).__name__, exc)
            self._record_failure([info], f"quarantine failed: {type(exc).__name__}: {exc}"[:500])
            return
        self._db.execute("insert or replace into quarantined values (?, ?, ?)", (info.key, info.mtime, err.reason))
        self._db.commit()
        self._log.warning("unsafe", "quarantined bucket object %r: %s", info.key, err)
        with self._lock:
            self._announced[info.key] = info.mtime
            self._seen.pop(info.key, None)
            self._forget_failure(info.key)
            self.quarantined_count += 1

    # -- health

    def health(self, show: int = 20) -> dict:
        """How the watcher is doing: ``state`` is ``ok``, ``failing`` (objects whose announcement fails) or
        ``stalled`` (no successful scan for ``stall_after`` seconds, or the thread is gone)."""
        now = time.time()
        with self._lock:
            failing = sorted(self._failing.items(), key=lambda kv: kv[1].since)
            rows = [{"key": k, "attempts": f.attempts, "error": f.error,
                     "since": datetime.fromtimestamp(f.since, timezone.utc).isoformat(timespec="seconds"),
                     "given_up": f.attempts >= GIVE_UP_AFTER} for k, f in failing[:show]]
            alive = self._thread is not None and self._thread.is_alive()
            age = None if self.last_scan is None else round(now - self.last_scan, 1)
            since_start = now - (self.last_scan or self._started_at or now)
            stalled = self._thread is not None and (not alive or since_start > self.stall_after)
            return {
                "state": "stalled" if stalled else "failing" if failing else "ok",
                "last_scan": _iso(self.last_scan), "last_scan_age_s": age,
                "last_announce": _iso(self.last_announce),
                "announced": self.announced_count, "quarantined": self.quarantined_count,
                "failures": self.failures,
                "failing": len(failing), "given_up": sum(1 for _, f in failing if f.attempts >= GIVE_UP_AFTER),
                "failing_objects": rows,
            }


def announced_mtimes(settings: Settings) -> dict[str, float]:
    """Key -> mtime of each object the home's watcher announced (or quarantined by name), read from its state by
    any process (``ateda ingest`` waits until its uploads are announced)."""
    db = Path(settings.home) / "state" / "watcher.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict([*con.execute("select key, mtime from announced"), *con.execute("select key, mtime from quarantined")])
    except sqlite3.OperationalError:  # the watcher has not created its tables yet
        return {}
    finally:
        con.close()


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
