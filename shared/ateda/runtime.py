"""The embedded default runtime: the same functions and Triggers as in the cluster, on one machine.

Starts the functions as real functions-framework HTTP servers (gunicorn; split with several worker processes),
the local broker (routing by ``knative/`` Triggers) and the bucket watcher. ``ateda up`` runs it until stopped;
``ateda ingest`` starts one for its own duration when none is running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .broker import Broker
from .config import Settings
from .routing import knative_dir, load_triggers
from .storage import lake_store
from .watcher import BucketWatcher


# glibc's dynamic mmap threshold lets the freed 45 KB stamps and multi-MB chunk buffers fragment the heap, so a
# long-running worker's RSS creeps up chunk after chunk; a fixed threshold returns big blocks to the OS at once.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}


def functions_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "functions"


@dataclass(frozen=True)
class FunctionSpec:
    service: str  # Knative Service name (what Triggers reference)
    folder: str
    signature: str = "cloudevent"
    workers: int = 1
    threads: int = 8
    parallelism: int = 4  # concurrent deliveries from the local broker


def ingestion_functions(split_workers: int | None = None) -> list[FunctionSpec]:
    """split: one worker process per core (decoding is CPU-bound); bronze: one process so requests share commits."""
    workers = split_workers or max(2, os.cpu_count() or 2)
    return [
        FunctionSpec("ateda-split", "split", workers=workers, threads=1, parallelism=workers * 2),
        FunctionSpec("ateda-bronze", "bronze", workers=1, threads=64, parallelism=64),
    ]


def default_functions(split_workers: int | None = None) -> list[FunctionSpec]:
    """Ingestion plus the science functions that follow bronze commits."""
    return ingestion_functions(split_workers) + [
        # one process each: the refresh worker thread and the crossmatch duplicate check are per process
        FunctionSpec("ateda-dbt-refresh", "dbt_refresh", workers=1, threads=4, parallelism=4),
        FunctionSpec("ateda-crossmatch", "crossmatch", workers=1, threads=2, parallelism=2),
        # one pass at a time (containerConcurrency 1 in the cluster)
        FunctionSpec("ateda-maintenance", "maintenance", workers=1, threads=1, parallelism=1),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Runtime:
    settings: Settings
    functions: list[FunctionSpec] = field(default_factory=default_functions)
    watch: bool = True
    backoff_scale: float = 1.0
    duplicate_deliveries: bool = False
    validate_events: bool = False
    procs: list[subprocess.Popen] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    broker: Broker | None = None
    watcher: BucketWatcher | None = None
    pinger: "Pinger | None" = None

    def start(self) -> "Runtime":
        home = Path(self.settings.home)
        home.mkdir(parents=True, exist_ok=True)
        lake = lake_store(self.settings)
        running = {f.service for f in self.functions}
        # the Triggers of the functions this runtime runs (a runtime may run a subset, e.g. ingestion only)
        triggers = [t for t in load_triggers(knative_dir()) if t.subscriber in running]
        self.broker = Broker(triggers, self.urls, home / "broker" / "spool", lake,
                             parallelism={f.service: f.parallelism for f in self.functions},
                             backoff_scale=self.backoff_scale, duplicate=self.duplicate_deliveries,
                             validate=self.validate_events)
        sink = f"{self.broker.url}/ateda/ateda"
        for spec in self.functions:
            self.urls[spec.service] = self._spawn(spec, sink)
        for url in self.urls.values():
            _wait_http(url)
        self.broker.start()
        if self.watch:
            self.watcher = BucketWatcher(self.settings, sink).start()
        every = float(os.environ.get("ATEDA_MAINTENANCE_EVERY_S") or 3600)
        if "ateda-maintenance" in running and every > 0:
            self.pinger = Pinger(sink, every).start()
        (home / "runtime.json").write_text(json.dumps({"pid": os.getpid(), "broker": sink, "functions": self.urls}))
        return self

    @property
    def sink(self) -> str:
        assert self.broker is not None
        return f"{self.broker.url}/ateda/ateda"

    def _spawn(self, spec: FunctionSpec, sink: str) -> str:
        port = free_port()
        metrics_dir = tempfile.mkdtemp(prefix=f"metrics-{spec.folder}-", dir=self.settings.home)
        env = {**os.environ, **self.settings.as_env(), "K_SINK": sink, "WORKERS": str(spec.workers),
               "THREADS": str(spec.threads), "PROMETHEUS_MULTIPROC_DIR": metrics_dir, **MALLOC_ENV,
               "ATEDA_METRICS_PORT": os.environ.get(f"ATEDA_METRICS_PORT_{spec.folder.upper()}", "0")}
        log = open(Path(self.settings.home) / f"{spec.folder}.log", "ab")
        cmd = [sys.executable, "-m", "functions_framework", "--target", "handle",
               "--source", str(functions_dir() / spec.folder / "main.py"),
               "--signature-type", spec.signature, "--host", "127.0.0.1", "--port", str(port)]
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=_die_with_parent))
        return f"http://127.0.0.1:{port}"

    def idle(self) -> bool:
        return self.broker is not None and self.broker.idle()

    def stop(self) -> None:
        if self.pinger:
            self.pinger.stop()
        if self.watcher:
            self.watcher.stop()
        if self.broker:
            self.broker.stop()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        (Path(self.settings.home) / "runtime.json").unlink(missing_ok=True)

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()


class Pinger:
    """The PingSource of the embedded runtime: sends the PingSource's event (same type, source and data as
    ``knative/35-pingsource.yaml``) to the broker every ``every`` seconds, the first one ``every`` after start."""

    def __init__(self, sink: str, every: float) -> None:
        import threading

        self.sink, self.every = sink, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="maintenance-pinger", daemon=True)

    def start(self) -> "Pinger":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                ping(self.sink)
            except Exception as exc:  # noqa: BLE001 (the broker may be restarting: the next tick tries again)
                print(f"maintenance ping not delivered: {exc}", file=sys.stderr)


def ping(sink: str) -> dict:
    """Send one maintenance ping, as the PingSource would; returns the event."""
    import yaml

    from . import events

    (source,) = [d for p in sorted(knative_dir().glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
                 if d and d.get("kind") == "PingSource"]
    meta = source["metadata"]
    event = events.make_event(events.PING, f"/apis/v1/namespaces/{meta['namespace']}/pingsources/{meta['name']}",
                              json.loads(source["spec"]["data"]))
    events.post(sink, event)
    return event


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the runtime's process dies, so no function server is orphaned."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: `stop()` still terminates the children on a normal exit
        pass


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"function at {url} did not start in {timeout:.0f}s")


def running_runtime(settings: Settings) -> dict | None:
    """The runtime another process (``ateda up``) runs on this ATEDA_HOME, if it answers."""
    path = Path(settings.home) / "runtime.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    try:
        requests.get(info["broker"], timeout=1)
    except requests.RequestException:
        return None
    return info
