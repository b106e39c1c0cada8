"""The local bucket source: watches the bucket (a folder, or an S3 bucket by listing) and emits
``dev.ateda.object.created`` for new objects, coalescing objects that arrive together into one event
(up to ``ATEDA_BATCH_MAX_OBJECTS``), as the MinIO bridge does with webhooks in the cluster.

An object is announced once per (key, etag); what was announced is remembered in ``$ATEDA_HOME/state/``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import events
from .config import Settings
from .storage import LocalStore, ObjectInfo, ObjectStore, bucket_store

log = logging.getLogger(__name__)


class BucketWatcher:
    def __init__(self, settings: Settings, sink: str, interval: float = 0.2, full_every: float = 10.0) -> None:
        self.settings = settings
        self.sink = sink
        self.interval = interval
        self.full_every = full_every
        self._last_full = 0.0
        self.store: ObjectStore = bucket_store(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, tuple[int, float]] = {}  # key -> (size, mtime) when first seen, until announced
        db = Path(settings.home) / "state" / "watcher.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db, check_same_thread=False)
        self._db.execute("create table if not exists announced (key text primary key, etag text, mtime real)")
        self._announced: dict[str, float] = dict(self._db.execute("select key, mtime from announced"))
        self.announced_count = 0

    def start(self) -> "BucketWatcher":
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
            except Exception:
                log.exception("bucket scan failed (will retry)")
            self._stop.wait(self.interval)

    def _candidates(self) -> Iterator[ObjectInfo]:
        """Objects worth a look: on a folder, only names not yet announced are stat'ed, except on a full pass
        (every ``full_every`` s) that also notices re-uploads; an S3 listing carries everything anyway."""
        if not isinstance(self.store, LocalStore):
            yield from self.store.list()
            return
        full = time.monotonic() - self._last_full > self.full_every
        if full:
            self._last_full = time.monotonic()
        for key in self.store.names():
            if full or key not in self._announced:
                info = self.store.stat(key)
                if info is not None:
                    yield info

    def scan(self) -> int:
        """One pass: announce every new, stable object. Returns how many were announced."""
        ready: list[ObjectInfo] = []
        now = time.time()
        for info in self._candidates():
            if self._announced.get(info.key) == info.mtime:
                continue  # a re-upload (new mtime) is announced again; bronze knows identical content
            before = self._seen.get(info.key)
            self._seen[info.key] = (info.size, info.mtime)
            # stable: unchanged since the previous scan, or written more than a second ago
            if before == (info.size, info.mtime) or now - info.mtime > 1.0 or self.settings.uses_s3:
                ready.append(info)
        for i in range(0, len(ready), self.settings.batch_max_objects):
            self._announce(ready[i:i + self.settings.batch_max_objects])
        return len(ready)

    def _announce(self, batch: list[ObjectInfo]) -> None:
        objects = []
        for info in batch:
            etag = info.etag or (self.store.head(info.key) or info).etag
            objects.append({"key": info.key, "etag": etag, "size": info.size, "mtime": info.mtime,
                            "time": datetime.fromtimestamp(info.mtime, timezone.utc).isoformat()})
        data = {"bucket": self.settings.bucket,
                "objects": [{k: v for k, v in o.items() if k != "mtime"} for o in objects]}
        subject = objects[0]["key"] if len(objects) == 1 else f"{objects[0]['key']} (+{len(objects) - 1})"
        events.post(self.sink, events.make_event(events.OBJECT_CREATED, "/ateda/bucket-watcher", data, subject))
        self._db.executemany("insert or replace into announced values (?, ?, ?)",
                             [(o["key"], o["etag"], o["mtime"]) for o in objects])
        self._db.commit()
        for o in objects:
            self._announced[o["key"]] = o.pop("mtime")
            self._seen.pop(o["key"], None)
        self.announced_count += len(objects)
