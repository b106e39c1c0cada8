"""The dbt refresh function's logic: durable requests, one debounced background run, a cross-process lock.

A ``bronze.committed`` request is only *recorded* (a small JSON marker in the lake, ``refresh/requests/``) and
acknowledged at once: a dbt run can outlive a Knative request (300 s), so it never runs inside one. One worker
thread per process (started lazily by the first request, never at import) waits until no request has arrived for
``ATEDA_REFRESH_DEBOUNCE_MS`` (default 5000; at most ``ATEDA_REFRESH_MAX_WAIT_MS`` after the first pending one,
default 60000, so a steady stream still refreshes), then, holding an exclusive ``flock`` on
``$ATEDA_HOME/refresh/dbt-refresh-<target>.lock`` (two processes never run dbt on the same target at once), runs
:func:`run_dbt_models` once for every request pending at that moment, emits ``dev.ateda.silver.refreshed`` and
deletes those markers. A failed run is retried ``ATEDA_REFRESH_RETRIES`` times (default 3) with exponential backoff
(``ATEDA_REFRESH_BACKOFF_MS``, default 1000); so is a failed emit after a successful run (only the emit: dbt does
not run again for it). When the attempts are exhausted the last triggering event is written as a dead letter
(:mod:`ateda.lake.deadletters`: ``dead-letter/ateda-dbt-refresh/<time>-<id>.json``, the cause base64 in
``knativeerrordata`` as Knative writes it, so ``ateda replay`` re-sends it)
and the markers are dropped.

Nothing stays stale: markers left by a crashed or interrupted process are served by the next process's worker as
soon as that process gets any request (:meth:`RefreshWorker.resume`; the function server calls it before its first
request of any kind, so the runtime's readiness probe is enough), without waiting for a new ``bronze.committed``.
Every run is recorded in the lake (``refresh/state/<target>.json``, :func:`ateda.warehouse.build.read_refresh_state`)
and, after a successful run, the gauge ``ateda_copy_conflicts`` is set from ``silver.copy_conflict`` (when the
model exists).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ateda.config import RefreshSettings, Settings
from ateda.lake import deadletters
from ateda.lake.locks import file_lock
from ateda.lake.storage import lake_store
from ateda.serving.metrics import instruments
from ateda.warehouse.build import COPY_CONFLICTS, REFRESH_REQUESTS, refresh_models

log = logging.getLogger(__name__)
SILVER_REFRESHED = "dev.ateda.silver.refreshed"
REQUESTS = REFRESH_REQUESTS
FUNCTION = "dbt-refresh"
SUBSCRIBER = "ateda-dbt-refresh"  # its Knative Service: the folder of its dead letters (it cannot know the Trigger)
DEAD_LETTERS = f"dead-letter/{SUBSCRIBER}/"


def run_dbt_models(settings: Settings, target: str = "local"):
    """The dbt run itself (module level so that tests can count or fake it)."""

    return refresh_models(settings, target=target)


RefreshConfig = RefreshSettings  # the section of Settings (ATEDA_REFRESH_*, ATEDA_DBT_TARGET); tests build their own


def run_lock(settings: Settings, target: str):  # noqa: ANN201
    """One refresh worker runs per target and home at a time (the warehouse also locks each dbt run itself)."""

    return file_lock(Path(settings.home) / "refresh" / f"dbt-refresh-{target}.lock")


class RefreshWorker:
    """``request(event)`` records and returns; a background thread debounces and runs the refresh."""

    def __init__(self, settings: Settings, emit: Callable[[str, dict, str], None],
                 config: RefreshSettings | None = None) -> None:

        self.settings = settings
        self.config = config or settings.refresh
        self.emit = emit
        self.lake = lake_store(settings)
        self.runs = 0  # completed (successful) runs, for tests and logs
        self._cond = threading.Condition()
        self._last = 0.0
        self._first = 0.0
        self._thread: threading.Thread | None = None
        self._stop = False
        self._resumed = False

    # -- request side (inside the HTTP request: cheap, durable)

    def request(self, event: dict) -> str:
        key = f"{REQUESTS}{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"  # sorts in arrival order
        self.lake.put_bytes(key, json.dumps(event, default=str).encode())
        self.wake()
        return key

    def wake(self) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._first:
                self._first = now
            self._last = now
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="dbt-refresh", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def resume(self) -> bool:
        """Serve the requests a previous process left pending (a crash, Ctrl-C during the debounce): once per
        worker, start the thread when markers are waiting. Cheap after the first call. Returns whether it started."""
        with self._cond:
            if self._resumed:
                return False
            self._resumed = True
        try:
            waiting = self._pending()
        except Exception as exc:  # noqa: BLE001 - the lake is down: the next request tries again
            log.warning("could not list pending refresh requests: %s", exc)
            with self._cond:
                self._resumed = False
            return False
        if not waiting:
            return False
        log.info("resuming %d refresh request(s) left pending", len(waiting))
        self.wake()
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- the worker thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    quiet = self._last + self.config.debounce_s - now
                    capped = self._first + self.config.max_wait_s - now
                    left = min(quiet, capped)
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop:
                    return
                self._first = 0.0
            try:
                self.run_pending()
            except Exception:
                log.exception("dbt refresh worker")
            with self._cond:  # a request that came in during the run starts a new debounce period
                if not self._first:
                    try:
                        left = self._pending()
                    except Exception:  # noqa: BLE001
                        left = []
                    if not left:
                        self._thread = None
                        return
                    self._first = self._last = time.monotonic()

    def _pending(self) -> list[str]:
        root = getattr(self.lake, "root", None)
        if root is not None:  # a local lake: list the one folder, not the whole lake
            folder = Path(root) / REQUESTS
            names = os.listdir(folder) if folder.is_dir() else []
            return sorted(REQUESTS + n for n in names if n.endswith(".json") and not n.startswith("."))
        return sorted(i.key for i in self.lake.list(REQUESTS) if i.key.endswith(".json"))

    def run_pending(self) -> dict | None:
        """One refresh for every request pending now (under the lock); returns the emitted data, if any."""
        with run_lock(self.settings, self.config.target):
            keys = self._pending()  # read under the lock: another process may have served them meanwhile
            if not keys:
                return None
            ok, result = self._attempts("dbt refresh", lambda: run_dbt_models(self.settings, self.config.target))
            if not ok:
                self._dead_letter(keys, result)
                self._drop(keys)
                return None
            self.runs += 1
            set_copy_conflicts(result)
            data = silver_refreshed_data(result, keys, self._events(keys))
            # the run is done: only the event is retried (the broker may be down), never dbt
            ok, error = self._attempts("emitting silver.refreshed",
                                       lambda: self.emit(SILVER_REFRESHED, data, data["target"]))
            if not ok:
                self._dead_letter(keys, f"dbt refresh succeeded, emitting {SILVER_REFRESHED} failed: {error}")
                self._drop(keys)
                return None
            self._drop(keys)
            return data

    def _attempts(self, what: str, fn: Callable[[], object]) -> tuple[bool, object]:
        """``fn()`` with ``retries`` retries and exponential backoff: (True, its value) or (False, the last error)."""
        error = ""
        for attempt in range(self.config.retries + 1):
            try:
                return True, fn()
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: attempt %d failed: %s", what, attempt + 1, error)
                if attempt < self.config.retries:
                    time.sleep(self.config.backoff_s * 2 ** attempt)
        return False, error

    def _events(self, keys: list[str]) -> list[dict]:
        out = []
        for k in keys:
            try:
                out.append(json.loads(self.lake.get_bytes(k)))
            except Exception as exc:  # noqa: BLE001 - a marker deleted meanwhile
                log.debug("refresh marker %s gone: %s", k, exc)
        return out

    def _drop(self, keys: list[str]) -> None:
        for k in keys:
            with contextlib.suppress(Exception):
                self.lake.delete(k)

    def _dead_letter(self, keys: list[str], error: str) -> None:
        evts = self._events(keys)
        event = dict(evts[-1]) if evts else {"specversion": "1.0", "id": uuid.uuid4().hex, "type": "unknown",
                                             "source": f"/ateda/{FUNCTION}"}
        deadletters.write(self.lake, SUBSCRIBER, event, FUNCTION, 500, error)
        log.error("dbt refresh dead-lettered after %d attempts: %s", self.config.retries + 1, error)


def set_copy_conflicts(result) -> int | None:  # noqa: ANN001
    """The gauge ``ateda_copy_conflicts`` from the run's row count of :data:`COPY_CONFLICTS` (None: no such model
    yet, the gauge is left alone)."""
    rows = (result.as_dict() if hasattr(result, "as_dict") else dict(result)).get("rows") or {}
    n = rows.get(COPY_CONFLICTS)
    if n is None:
        return None
    instruments().copy_conflicts.set(int(n))
    return int(n)


def silver_refreshed_data(result, keys: list[str], evts: list[dict]) -> dict:
    """The ``data`` of ``dev.ateda.silver.refreshed`` from a :class:`ateda.warehouse.build.RefreshResult`."""
    d = result.as_dict() if hasattr(result, "as_dict") else dict(result)
    snaps = []
    for e in evts:
        sid = ((e.get("data") or {}).get("snapshot_ids") or {}).get("alert")
        if sid is not None and sid not in snaps:
            snaps.append(sid)
    return {
        "target": d.get("target", "local"),
        "seconds": float(d.get("seconds", 0.0)),
        "new_files": int(d.get("new_files") or 0),
        "models": {k: {"status": str(v.get("status")), "rows_affected": v.get("rows_affected")}
                   for k, v in (d.get("models") or {}).items()},
        "rows": {k: int(v) for k, v in (d.get("rows") or {}).items() if v is not None},
        "requests": len(keys),
        "bronze_snapshot_ids": snaps,
    }
