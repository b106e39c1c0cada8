"""The local broker: a CloudEvents HTTP ingress that routes by the Trigger manifests, with Knative's delivery rules.

* Ingress ``POST /<namespace>/<broker>`` (binary or structured mode) -> 202 once the event is spooled to disk for
  every matching Trigger (so an accepted event survives a restart: at-least-once, like a persistent broker).
  The ingress listens on loopback only and takes ``Authorization: Bearer <token>`` (401 without it): other local
  users' processes cannot inject events. An event whose data names a bucket or key that could escape a store
  (``keys.check_bucket`` / ``keys.check_key``) is refused with 400 and its reason, counted, never routed.
* Delivery: per Trigger, worker threads POST the event (binary mode) to the subscriber; 2xx acks; network errors,
  5xx, 404, 408, 409, 429 are retried with the Trigger's backoff; other codes fail at once. Failed events are
  kept as dead letters of their Trigger (:mod:`ateda.lake.deadletters`: ``<lake>/dead-letter/<trigger>/``, with Knative's
  error extensions).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import requests

from ateda.lake import deadletters

from ateda.errors import BadInput
from ateda.events import catalogue as events, transport
from ateda.events.routing import Trigger
from ateda.keys import check_bucket, check_key
from ateda.lake.storage import ObjectStore
from ateda.serving.metrics import instruments

log = logging.getLogger(__name__)
RETRYABLE = {404, 408, 409, 429}
MAX_EVENT_BYTES = 16 << 20  # an object.created of 256 objects is ~60 KB; the ingress takes no more than this


class Broker:
    def __init__(self, triggers: list[Trigger], subscribers: dict[str, str], spool: Path, lake: ObjectStore,
                 parallelism: dict[str, int] | None = None, host: str = "127.0.0.1", port: int = 0,
                 backoff_scale: float = 1.0, duplicate: bool = False, validate: bool = False,
                 token: str | None = None, status: "Callable[[], dict] | None" = None) -> None:
        """``backoff_scale`` shrinks the Triggers' backoff (tests); ``duplicate`` delivers every event twice, as an
        at-least-once transport may (a chaos switch that proves the functions idempotent); ``validate`` refuses
        (400) any event that does not match the catalogue in ``events/``. ``token``: what the ingress requires
        (a random one when not given; events this process posts carry it, see ``transport.register_token``).
        ``status``: more to report on ``GET`` beside the backlog (the runtime's watcher and function health)."""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the local broker listens on loopback only, not {host!r}")
        self.token = token or secrets.token_urlsafe(32)
        self.status = status
        self.triggers = triggers
        self.subscribers = subscribers
        self.spool = Path(spool)
        self.lake = lake
        self.parallelism = parallelism or {}
        self.backoff_scale = backoff_scale
        self.duplicate = duplicate
        self.validate = validate
        self._queues: dict[str, queue.Queue] = {t.name: queue.Queue() for t in triggers}
        self._pending: dict[str, int] = {t.name: 0 for t in triggers}  # accepted, not yet acked or dead-lettered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for t in triggers:
            (self.spool / t.name).mkdir(parents=True, exist_ok=True)
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle

    def start(self) -> "Broker":
        for t in self.triggers:
            for path in sorted((self.spool / t.name).glob("*.json")):  # accepted before a restart
                self._enqueue(t.name, path)
            for i in range(self.parallelism.get(t.subscriber, 4)):
                th = threading.Thread(target=self._deliver_loop, args=(t,), name=f"deliver-{t.name}-{i}", daemon=True)
                th.start()
                self._threads.append(th)
        th = threading.Thread(target=self.server.serve_forever, name="broker-ingress", daemon=True)
        th.start()
        self._threads.append(th)
        transport.register_token(self.url, self.token)
        return self

    def stop(self) -> None:
        self._stop.set()
        transport.register_token(self.url, None)
        self.server.shutdown()
        self.server.server_close()

    def backlog(self) -> dict[str, int]:
        """Events accepted but not yet acknowledged or dead-lettered, per Trigger."""
        with self._lock:
            return dict(self._pending)

    def idle(self) -> bool:
        return not any(self.backlog().values())

    # -- ingress

    def accept(self, event: dict) -> int:
        """Spool ``event`` for every matching Trigger; returns how many matched."""
        matched = [t for t in self.triggers if t.matches(event)]
        blob = json.dumps(event).encode()
        for t in matched:
            path = self.spool / t.name / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(path)
            self._enqueue(t.name, path)
        return len(matched)

    def authorized(self, header: str | None) -> bool:
        """``Authorization`` header value carries this broker's token (compared in constant time)."""
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _enqueue(self, trigger: str, path: Path) -> None:
        with self._lock:
            self._pending[trigger] += 1
        self._queues[trigger].put(path)

    # -- delivery

    def _deliver_loop(self, trigger: Trigger) -> None:
        session = requests.Session()
        q = self._queues[trigger.name]
        while not self._stop.is_set():
            try:
                path = q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._deliver(trigger, session, path)
            except Exception:  # never lose the worker
                log.exception("delivery loop error on %s", path)
            finally:
                with self._lock:
                    self._pending[trigger.name] -= 1

    def _deliver(self, trigger: Trigger, session: requests.Session, path: Path) -> None:
        event = json.loads(path.read_bytes())
        headers, body = transport.to_binary(event)
        url = self.subscribers.get(trigger.subscriber)
        if url is None:  # a Trigger whose subscriber is not running here: dead-letter, never lose the event
            self._dead_letter(trigger, event, trigger.subscriber, 0, "no such subscriber in this runtime")
            path.unlink(missing_ok=True)
            return
        code, error = 0, ""
        for attempt in range(trigger.delivery.retry + 1):
            if attempt:
                time.sleep(trigger.delivery.jittered(attempt) * self.backoff_scale)
                url = self.subscribers.get(trigger.subscriber, url)  # a restarted function server may have moved
            try:
                resp = session.post(url, data=body, headers=headers, timeout=300)
                code, error = resp.status_code, resp.text[:1000]
            except requests.RequestException as exc:
                code, error = 0, f"{type(exc).__name__}: {exc}"
            if 200 <= code < 300:
                instruments().deliveries.labels(trigger.name, "ok").inc()
                if self.duplicate:
                    session.post(url, data=body, headers=headers, timeout=300)
                path.unlink(missing_ok=True)
                return
            instruments().deliveries.labels(trigger.name, "retry" if _retryable(code) else "failed").inc()
            if not _retryable(code):
                break
        self._dead_letter(trigger, event, url, code, error)
        path.unlink(missing_ok=True)

    def _dead_letter(self, trigger: Trigger, event: dict, url: str, code: int, error: str) -> None:
        deadletters.write(self.lake, trigger.name, event, url, code, error)
        log.warning("dead-lettered %r on %s after HTTP %s: %s", event.get("id"), trigger.name, code, error[:200])


def _retryable(code: int) -> bool:
    return code == 0 or code >= 500 or code in RETRYABLE


def check_names(event: dict) -> None:
    """Raise :class:`~ateda.keys.UnsafeName` (reason ``unsafe_key``) if ``event``'s data names a bucket or key that
    could escape a store: ``data.bucket``, ``data.objects[].key`` and ``data.objects[].part_of`` (an
    ``object.created``), the ``bucket``/``key`` of ``data.source`` / ``data.sources[]`` (a staged chunk, a rejection).
    Only names are checked here; the shape of the data is the catalogue's (``validate``)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return
    if "bucket" in data:
        check_bucket(data["bucket"])
    named = []
    for obj in data.get("objects") if isinstance(data.get("objects"), list) else []:
        if isinstance(obj, dict):
            if "key" in obj:
                check_key(obj["key"])
            named.append(obj.get("part_of"))
    named.append(data.get("source"))
    named.extend(data.get("sources") if isinstance(data.get("sources"), list) else [])
    for src in named:
        if isinstance(src, dict):
            if "bucket" in src:
                check_bucket(src["bucket"])
            if "key" in src:
                check_key(src["key"])


def _handler(broker: Broker):  # noqa: ANN202
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            if not broker.authorized(self.headers.get("authorization")):  # before reading a stranger's body
                self.close_connection = True
                self._refuse(401, "unauthorized", "missing or wrong broker token (Authorization: Bearer ...)")
                return
            try:
                length = int(self.headers.get("content-length", 0))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_EVENT_BYTES:
                self.close_connection = True
                self._refuse(413 if length > 0 else 400, "bad_request",
                             f"content-length must be 0..{MAX_EVENT_BYTES}, got {self.headers.get('content-length')!r}")
                return
            body = self.rfile.read(length)
            try:
                event = transport.from_http(dict(self.headers), body)
                if broker.validate:
                    events.validate(event)
            except Exception as exc:  # not a CloudEvent, or not one of ours: refused, as Knative's ingress does
                self._refuse(400, "bad_event", str(exc)[:2000])
                return
            try:
                check_names(event)
            except BadInput as exc:  # a traversal or absolute key, a bad bucket name: never routed
                self._refuse(400, exc.reason, exc.detail[:2000])
                return
            broker.accept(event)
            self._reply(202, b"")

        def do_GET(self) -> None:  # noqa: N802
            if not broker.authorized(self.headers.get("authorization")):
                self._refuse(401, "unauthorized", "missing or wrong broker token (Authorization: Bearer ...)")
                return
            info = {"backlog": broker.backlog()}
            if broker.status is not None:
                info.update(broker.status())
            self._reply(200, json.dumps(info, default=str).encode(), "application/json")

        def _refuse(self, code: int, reason: str, detail: str) -> None:
            instruments().broker_rejected.labels(reason).inc()
            log.warning("broker refused a request: HTTP %s %s: %r", code, reason, detail[:200])
            self._reply(code, f"{reason}: {detail}".encode())

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            if self.close_connection:
                self.send_header("connection", "close")
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    return Handler


def replay(lake: ObjectStore, broker_url: str, trigger: str | None = None, token: str | None = None) -> int:
    """Re-send dead-lettered events to the broker: :func:`ateda.lake.deadletters.replay` (``trigger``: a Trigger's name
    in ``knative/``)."""
    return deadletters.replay(lake, broker_url, trigger, token=token)
