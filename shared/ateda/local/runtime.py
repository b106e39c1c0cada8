"""The embedded default runtime: the same functions and Triggers as in the cluster, on one machine.

Starts the functions as real functions-framework HTTP servers (gunicorn; split with several worker processes),
the local broker (routing by ``knative/`` Triggers) and the bucket watcher. ``ateda up`` runs it until stopped;
``ateda ingest`` starts one when none is running, which lives until the last ingest attached to it is done.

One runtime per home (:mod:`ateda.local.home`): :meth:`Runtime.start` takes the home's runtime lock (a second runtime
is refused with the holder's PID) and :meth:`Runtime.stop` stops every child: each function server runs in its own
process group, which gets SIGTERM, then SIGKILL after ``stop_grace_s``. The groups are also recorded in
``$ATEDA_HOME/runtime.children``, so a runtime that starts after a crashed one ends the crashed one's leftovers, and
the per-server Prometheus folders (``$ATEDA_HOME/metrics-*``) are removed on stop and, left by a crash, at start.

A supervisor restarts a function server that dies (on the same port, with backoff), as Kubernetes restarts a
container. The broker's ingress takes a token (``ATEDA_BROKER_TOKEN``, or a random one per run) that the function
servers get in their environment; the runtime's state file (``$ATEDA_HOME/runtime.json``, mode 0600) holds it for
``ateda status`` / ``ateda replay``.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import requests
import yaml

from ateda.config import REPO_ROOT, LocalSettings, Settings, child_env, local_settings
from ateda.events import catalogue as events, transport
from ateda.events.routing import knative_dir, load_triggers
from ateda.lake.storage import lake_store
from ateda.local.broker import Broker
from ateda.local.home import RuntimeLock, group_members, stop_groups
from ateda.local.watcher import BucketWatcher
from ateda.serving.metrics import instruments


# glibc's dynamic mmap threshold lets the freed 45 KB stamps and multi-MB chunk buffers fragment the heap, so a
# long-running worker's RSS creeps up chunk after chunk; a fixed threshold returns big blocks to the OS at once.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}


def functions_dir() -> Path:
    return REPO_ROOT / "functions"


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


RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # wait before restart n (the last one repeats)
STABLE_AFTER_S = 60.0  # a server up this long has its backoff reset


@dataclass
class _Server:
    """One function server under supervision."""

    spec: FunctionSpec
    port: int
    proc: subprocess.Popen | None = None
    state: str = "starting"  # starting | up | restarting | stopped
    restarts: int = 0
    consecutive: int = 0  # restarts since it was last up for STABLE_AFTER_S
    started: float = 0.0  # time.monotonic() of the last spawn
    restart_at: float = 0.0  # time.monotonic() when a dead server is spawned again
    last_exit: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict:
        return {"state": self.state, "pid": self.proc.pid if self.proc else None, "restarts": self.restarts,
                "last_exit": self.last_exit, "url": self.url}


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
    servers: dict[str, _Server] = field(default_factory=dict)
    supervise_every: float = 0.25
    # the runtime's own knobs (maintenance ping interval, metrics ports): the environment's when it starts, unless given
    local: LocalSettings | None = None
    stop_grace_s: float = 10.0  # a child still running this long after SIGTERM gets SIGKILL
    progress: Callable[[str], None] | None = None  # told each step of start and stop (``ateda up`` prints them)
    lock_wait_s: float = 0.0  # wait this long for the home's runtime lock (a runtime that is stopping)

    def start(self) -> "Runtime":
        self.local = self.local or local_settings()
        home = Path(self.settings.home)
        home.mkdir(parents=True, exist_ok=True)
        self._lock = RuntimeLock(home).acquire(self.lock_wait_s)  # RuntimeBusy if another runtime runs here
        try:
            return self._start(home)
        except BaseException:
            self.stop()
            raise

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def _start(self, home: Path) -> "Runtime":
        self._metrics_dirs: list[str] = []
        _end_leftovers(home)
        if not self.settings.uses_s3:  # the folder the watcher watches, and `ateda up` announces
            (self.settings.bucket_root / self.settings.bucket).mkdir(parents=True, exist_ok=True)
        # the broker's ingress token: configured, or one per run; the function servers get it in their env
        self.settings = replace(self.settings, broker_token=self.settings.broker_token or secrets.token_urlsafe(32))
        lake = lake_store(self.settings)
        running = {f.service for f in self.functions}
        # the Triggers of the functions this runtime runs (a runtime may run a subset, e.g. ingestion only)
        triggers = [t for t in load_triggers(knative_dir()) if t.subscriber in running]
        self.broker = Broker(triggers, self.urls, home / "broker" / "spool", lake,
                             parallelism={f.service: f.parallelism for f in self.functions},
                             backoff_scale=self.backoff_scale, duplicate=self.duplicate_deliveries,
                             validate=self.validate_events, token=self.settings.broker_token, status=self.health)
        sink = f"{self.broker.url}/ateda/ateda"
        self._stopping = threading.Event()
        for spec in self.functions:
            server = self.servers[spec.service] = _Server(spec, free_port())
            self._spawn(server, sink)
            self.urls[spec.service] = server.url
        self._write_children()
        for server in self.servers.values():
            _wait_http(server.url)
            server.state = "up"
            self._say(f"{spec_line(server.spec)} up at {server.url} (pid {server.proc.pid})")
        self.broker.start()
        self._say(f"broker at {self.sink}")
        if self.watch:
            self.watcher = BucketWatcher(self.settings, sink, token=self.settings.broker_token).start()
            where = self.settings.bucket if self.settings.uses_s3 else self.settings.bucket_root / self.settings.bucket
            self._say(f"watching bucket {where}")
        every = self.local.maintenance_every_s
        if "ateda-maintenance" in running and every > 0:
            self.pinger = Pinger(sink, every).start()
        self._write_state()
        self._supervisor = threading.Thread(target=self._supervise, args=(sink,), name="supervisor", daemon=True)
        self._supervisor.start()
        return self

    @property
    def sink(self) -> str:
        assert self.broker is not None
        return f"{self.broker.url}/ateda/ateda"

    def _write_children(self) -> None:
        """The process groups of this runtime's servers, for the next runtime on the home if this one crashes."""
        path = Path(self.settings.home) / CHILDREN
        tmp = path.with_name(f".{CHILDREN}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runtime": os.getpid(), "groups": [p.pid for p in self.procs]}))
        os.replace(tmp, path)

    def _write_state(self) -> None:
        """``runtime.json``, readable by this user only (it holds the broker token)."""
        path = Path(self.settings.home) / "runtime.json"
        tmp = path.with_name(f".runtime.json.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "broker": self.sink, "functions": self.urls,
                       "token": self.settings.broker_token}, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _spawn(self, server: _Server, sink: str) -> None:
        spec = server.spec
        name = Path(spec.folder).name  # a folder under functions/, or a path (a test's own function)
        metrics_dir = tempfile.mkdtemp(prefix=f"metrics-{name}-", dir=self.settings.home)
        self._metrics_dirs.append(metrics_dir)
        env = child_env(self.settings, K_SINK=sink, WORKERS=str(spec.workers), THREADS=str(spec.threads),
                        PROMETHEUS_MULTIPROC_DIR=metrics_dir, **MALLOC_ENV,
                        ATEDA_METRICS_PORT=str(self.local.metrics_port(spec.folder)))
        cmd = [sys.executable, "-m", "functions_framework", "--target", "handle",
               "--source", str(functions_dir() / spec.folder / "main.py"),
               "--signature-type", spec.signature, "--host", "127.0.0.1", "--port", str(server.port)]
        with open(Path(self.settings.home) / f"{name}.log", "ab") as log:
            # its own process group: a restart also ends the workers of a server whose master was killed
            server.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=_die_with_parent, start_new_session=True)
        server.started = time.monotonic()
        self.procs.append(server.proc)

    # -- supervision

    def _supervise(self, sink: str) -> None:
        """Restart any function server that exits (on its port, with backoff); mark it up once it answers."""
        while not self._stopping.wait(self.supervise_every):
            for server in list(self.servers.values()):
                try:
                    self._check(server, sink)
                except Exception as exc:  # noqa: BLE001 (never lose the supervisor; try again next tick)
                    print(f"supervisor: {server.spec.service}: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _check(self, server: _Server, sink: str) -> None:
        now = time.monotonic()
        proc = server.proc
        if server.state in ("up", "starting") and proc is not None and proc.poll() is not None:
            server.last_exit = proc.returncode
            _kill_group(proc)  # its workers, if the master died alone
            if proc in self.procs:
                self.procs.remove(proc)
            if now - server.started > STABLE_AFTER_S:
                server.consecutive = 0
            wait = RESTART_BACKOFF_S[min(server.consecutive, len(RESTART_BACKOFF_S) - 1)]
            server.state, server.restart_at = "restarting", now + wait
            print(f"supervisor: {server.spec.service} (pid {proc.pid}) exited with {proc.returncode}; "
                  f"restarting in {wait:.1f} s", file=sys.stderr, flush=True)
        elif server.state == "restarting" and now >= server.restart_at:
            server.restarts += 1
            server.consecutive += 1
            instruments().restarts.labels(server.spec.service).inc()
            if server.consecutive > 2:  # it keeps dying at start: perhaps its port was taken meanwhile
                server.port = free_port()
                self.urls[server.spec.service] = server.url  # the broker reads this dict at each attempt
                self._write_state()
            self._spawn(server, sink)
            self._write_children()
            server.state = "starting"
        elif server.state == "starting" and _answers(server.url):
            server.state = "up"

    def health(self) -> dict:
        """Each function server's state, pid and restarts, and the bucket watcher's health (the broker's GET)."""
        info: dict = {"functions": {name: s.health() for name, s in self.servers.items()}}
        if self.watcher is not None:
            info["watcher"] = self.watcher.health()
        return info

    def idle(self) -> bool:
        return self.broker is not None and self.broker.idle()

    def stop(self) -> None:
        """Stop the watcher, the broker and every child process (SIGTERM to each server's process group, SIGKILL
        after ``stop_grace_s``), remove the metrics folders and the state file, release the home's lock."""
        stopping = getattr(self, "_stopping", None)
        if stopping is not None:
            stopping.set()
            self._supervisor.join(timeout=5)
        if self.pinger:
            self.pinger.stop()
        if self.watcher:
            self.watcher.stop()
        if self.broker:
            self.broker.stop()
        for server in self.servers.values():
            server.state = "stopped"
        if self.procs:
            self._say(f"stopping {len(self.procs)} function server(s)")
        killed = stop_groups([p.pid for p in self.procs], self.stop_grace_s)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # cannot happen after SIGKILL, unless the kernel is stuck
                pass
        if killed:
            self._say(f"{len(killed)} process(es) ignored SIGTERM for {self.stop_grace_s:.0f} s: killed")
        self.procs.clear()
        home = Path(self.settings.home)
        for folder in getattr(self, "_metrics_dirs", []):
            shutil.rmtree(folder, ignore_errors=True)
        lock = getattr(self, "_lock", None)
        if lock is not None:
            (home / "runtime.json").unlink(missing_ok=True)
            (home / CHILDREN).unlink(missing_ok=True)
            lock.release()
            self._lock = None

    def __enter__(self) -> "Runtime":
        return self.start()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()


CHILDREN = "runtime.children"


def spec_line(spec: FunctionSpec) -> str:
    return f"{spec.service} ({spec.workers} worker{'s' if spec.workers > 1 else ''})"


def _end_leftovers(home: Path) -> None:
    """Run with the home's lock held: SIGKILL what a crashed runtime left behind (the processes of the process groups
    it recorded that still carry its metrics folder in their environment), and remove its metrics folders."""
    path = home / CHILDREN
    try:
        groups = json.loads(path.read_text()).get("groups", [])
    except (FileNotFoundError, ValueError):
        groups = []
    mine = f"PROMETHEUS_MULTIPROC_DIR={home}{os.sep}metrics-".encode()  # set for every process of our servers
    for pgid in groups:
        for pid in group_members(int(pgid)):
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:  # another process's variables, not ours
                    their_vars = fh.read().split(b"\0")
            except OSError:
                continue
            if any(var.startswith(mine) for var in their_vars):  # still one of ours, not a reused PID
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    path.unlink(missing_ok=True)
    for folder in home.glob("metrics-*"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of ``proc``'s process group (its own session: only this server's processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


class Pinger:
    """The PingSource of the embedded runtime: sends the PingSource's event (same type, source and data as
    ``knative/35-pingsource.yaml``) to the broker every ``every`` seconds, the first one ``every`` after start."""

    def __init__(self, sink: str, every: float) -> None:
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


    (source,) = [d for p in sorted(knative_dir().glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
                 if d and d.get("kind") == "PingSource"]
    meta = source["metadata"]
    event = events.make_event(events.PING, f"/apis/v1/namespaces/{meta['namespace']}/pingsources/{meta['name']}",
                              json.loads(source["spec"]["data"]))
    transport.post(sink, event)
    return event


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the runtime's process dies, so no function server is orphaned."""
    try:
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
    """The runtime another process (``ateda up``) runs on this ATEDA_HOME, if it answers: its state file
    (``broker``, ``functions``, ``pid``, ``token``)."""
    path = Path(settings.home) / "runtime.json"
    try:
        info = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        requests.get(info["broker"], headers={"authorization": f"Bearer {info.get('token') or ''}"}, timeout=1)
    except requests.RequestException:
        return None
    return info


def runtime_health(info: dict, timeout: float = 5.0) -> dict:
    """What a running runtime's broker says of itself: backlog, function servers, watcher."""
    token = info.get("token") or ""
    resp = requests.get(info["broker"], headers={"authorization": f"Bearer {token}"}, timeout=timeout)
    resp.raise_for_status()
    return resp.json()
