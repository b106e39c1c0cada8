"""The embedded runtime under hostile names, half-written files, unauthenticated posts and killed servers
(review 3.2 broker part, 3.5, 3.10, 3.12, 3.14 status part; issue 10 principles 1, 4, 7, 8, 9).

Real components throughout: the real broker, real function servers under a real Runtime, real ZTF alerts. The only
stand-in is a sink that refuses one object's events (a broker outage limited to one batch cannot be produced
otherwise)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from pyiceberg.expressions import EqualTo

from ateda.cli import lake as cli

from ateda.config import Settings
from ateda.events import catalogue as events, transport
from ateda.events.routing import Delivery, Trigger
from ateda.lake.quarantine import list_reasons
from ateda.lake.storage import LocalStore, lake_store
from ateda.local.broker import Broker
from ateda.local.runtime import Runtime, ingestion_functions
from ateda.local.watcher import GIVE_UP_AFTER, BucketWatcher
from ateda.serving.metrics import instruments
from ateda.status import status
from conftest import Sink, alert_files, expected_alerts, pg_database
from conftest import bronze

HOSTILE = {  # file name -> what the watcher must do with it
    "M31 – Andromeda.avro": "announce",  # en dash: not Latin-1, broke the ce-subject header
    " leading space.avro": "announce",
    "odd%2Fname.avro": "announce",
    "données_αβγ.avro": "announce",
    "new\nline.avro": "quarantine",  # a control character: not a safe key
}


def _wait(cond, seconds: float = 30.0, every: float = 0.1):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"condition not met in {seconds:.0f} s")


def _announced_keys(sink: Sink) -> list[str]:
    return [o["key"] for e in sink.of(events.OBJECT_CREATED) for o in e["data"]["objects"]]


# ---------------------------------------------------------------------------------------------------------------
# headers are not data


@pytest.mark.parametrize("name", [*HOSTILE, "x" * 1000 + "é" * 10])
def test_every_attribute_is_percent_encoded_and_round_trips(name):
    event = events.make_event(events.OBJECT_CREATED, f"/src/{name}", {"bucket": "alerts", "objects": []}, name)
    headers, body = transport.to_binary(event)
    assert all(v.isascii() and v.isprintable() and v == v.strip() for v in headers.values())
    assert transport.from_http(headers, body) == event


def test_hostile_subjects_pass_through_the_broker_exactly(tmp_path):
    sub = Sink()
    trig = Trigger("all", "ateda", "svc", ({"prefix": {"type": "dev.ateda."}},), Delivery())
    broker = Broker([trig], {"svc": sub.base}, tmp_path / "spool", LocalStore(tmp_path / "lake")).start()
    try:
        sent = [events.make_event(events.INPUT_REJECTED, "/ateda/split", {"member": n}, f"t.tar#{n}") for n in HOSTILE]
        for e in sent:
            transport.post(f"{broker.url}/ateda/ateda", e)  # raised on the en dash and the newline before
        _wait(lambda: len(sub.events) == len(sent))
        assert sorted(e["subject"] for e in sub.events) == sorted(e["subject"] for e in sent)
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------------------------------
# the bucket watcher: hostile names, failing batches, half-written files, temporary names


def _watcher_settings(tmp_path: Path, **kw) -> Settings:
    return Settings(home=tmp_path / "home", watch_grace_s=kw.pop("grace", 0.3), **kw).resolved()


def _drop(s: Settings, name: str, data: bytes) -> Path:
    path = s.bucket_root / s.bucket / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_watcher_announces_odd_names_and_quarantines_unsafe_ones(tmp_path, sink):
    s = _watcher_settings(tmp_path)
    real = alert_files()[:3]
    for f in real:
        _drop(s, f.name, f.read_bytes())
    for name in HOSTILE:
        _drop(s, name, real[0].read_bytes())
    w = BucketWatcher(s, sink.url, interval=0.05).start()
    try:
        want = {f.name for f in real} | {n for n, what in HOSTILE.items() if what == "announce"}
        _wait(lambda: set(_announced_keys(sink)) == want and w.quarantined_count == 1)
        health = w.health()
    finally:
        w.stop()
    assert sorted(_announced_keys(sink)) == sorted(want)  # each once, keys exact
    (record,) = list_reasons(lake_store(s))
    assert record["reason"] == "unsafe_key" and record["source"]["key"] == "new\nline.avro"
    assert health["state"] == "ok" and health["failing"] == 0 and health["quarantined"] == 1
    assert health["last_scan_age_s"] is not None and health["last_scan_age_s"] < 5


class _Refusing:
    """A broker stand-in that answers 503 to every event naming ``poison`` (an outage limited to one batch)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                event = transport.from_http(dict(self.headers), self.rfile.read(int(self.headers["content-length"])))
                keys = [o["key"] for o in event["data"]["objects"]]
                outer.calls.append((time.monotonic(), keys))
                self.send_response(503 if any("poison" in k for k in keys) else 202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ateda/ateda"

    def accepted(self) -> set[str]:
        return {k for _, keys in self.calls for k in keys if "poison" not in k}


def test_a_failing_batch_backs_off_gives_up_visibly_and_never_blocks_the_next(tmp_path, caplog, sink):
    s = _watcher_settings(tmp_path, grace=0.1)
    broker = _Refusing()
    _drop(s, "poison.avro", b"x")
    failures0 = instruments().watcher_failures._value.get()
    w = BucketWatcher(s, broker.url, interval=0.02, backoff=0.05)
    caplog.set_level(logging.WARNING, logger="ateda.local.watcher")
    w.start()
    try:
        for i in range(5):  # files that arrive while the poison batch keeps failing (some in a batch with it)
            _drop(s, f"later-{i}.avro", b"y")
            time.sleep(0.15)
        _wait(lambda: broker.accepted() == {f"later-{i}.avro" for i in range(5)})
        _wait(lambda: w.health()["given_up"] == 1, 10)
        time.sleep(0.5)  # given up: not retried every scan any more
        health = w.health()
    finally:
        w.stop()
    poison_calls = [t for t, keys in broker.calls if keys == ["poison.avro"]]
    assert len(poison_calls) == GIVE_UP_AFTER  # backoff, then retried only every RETRY_FAILED_S (not 0.02 s)
    gaps = [b - a for a, b in zip(poison_calls, poison_calls[1:])]
    assert all(g >= 0.8 * 0.05 * 2 ** i for i, g in enumerate(gaps)), gaps
    assert health["state"] == "failing" and health["failing"] == 1 and health["announced"] == 5
    (row,) = health["failing_objects"]
    assert row["key"] == "poison.avro" and row["given_up"] and "503" in row["error"]
    assert instruments().watcher_failures._value.get() - failures0 >= GIVE_UP_AFTER
    assert instruments().watcher_failing._value.get() == 1
    assert instruments().watcher_last_scan._value.get() > time.time() - 5
    said = [r for r in caplog.records if "could not announce" in r.getMessage()]
    assert len(said) == 1  # the repeated error is rate-limited: the log does not grow with every retry
    # recorded as failed on disk (the next `ateda up` shows it too), and a broker that takes it clears it
    w2 = BucketWatcher(s, sink.url, interval=0.02)
    assert [r["key"] for r in w2.health()["failing_objects"]] == ["poison.avro"]
    _wait(lambda: (w2.scan(), w2.health()["failing"] == 0)[1], 5, 0.05)
    assert _announced_keys(sink) == ["poison.avro"]


def test_a_watcher_that_cannot_scan_says_stalled_and_logs_once(tmp_path, sink, caplog):
    s = _watcher_settings(tmp_path)
    (s.bucket_root).mkdir(parents=True)
    (s.bucket_root / s.bucket).write_bytes(b"a file where the bucket folder should be")  # every listing fails
    caplog.set_level(logging.WARNING, logger="ateda.local.watcher")
    w = BucketWatcher(s, sink.url, interval=0.02, stall_after=0.5).start()
    try:
        assert w.health()["state"] == "ok"
        _wait(lambda: w.health()["state"] == "stalled", 5)
        health = w.health()
    finally:
        w.stop()
    assert health["last_scan"] is None and health["announced"] == 0
    assert len([r for r in caplog.records if "bucket scan failed" in r.getMessage()]) == 1  # not one per 0.02 s


def test_a_file_written_in_two_halves_is_announced_once_whole(tmp_path, sink):
    s = _watcher_settings(tmp_path, grace=1.0)
    data = alert_files()[0].read_bytes()
    path = s.bucket_root / s.bucket / "slow.avro"
    path.parent.mkdir(parents=True)
    w = BucketWatcher(s, sink.url, interval=0.05).start()
    try:
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.6)  # longer than the old 0.2 s check, shorter than the grace
            fh.write(data[len(data) // 2:])
        _wait(lambda: sink.of(events.OBJECT_CREATED), 10)
        time.sleep(0.5)
    finally:
        w.stop()
    (event,) = sink.of(events.OBJECT_CREATED)
    (obj,) = event["data"]["objects"]
    assert obj["size"] == len(data) and obj["etag"] == LocalStore(s.bucket_root / s.bucket).head("slow.avro").etag


def test_temporary_names_are_never_announced_until_renamed(tmp_path, sink):
    s = _watcher_settings(tmp_path, grace=0.1)
    data = alert_files()[0].read_bytes()
    part = _drop(s, "night/a.avro.part", data)
    _drop(s, "night/b.avro.tmp", data)
    _drop(s, "night/.c.avro", data)
    w = BucketWatcher(s, sink.url, interval=0.02)
    for _ in range(20):
        w.scan()
        time.sleep(0.02)
    assert sink.of(events.OBJECT_CREATED) == []
    part.rename(part.with_name("a.avro"))
    _wait(lambda: (w.scan(), _announced_keys(sink))[1], 5)
    assert _announced_keys(sink) == ["night/a.avro"]


def test_a_file_the_store_put_is_announced_without_the_grace(tmp_path, sink):
    s = _watcher_settings(tmp_path, grace=30.0)  # a user's copy would wait 30 s
    LocalStore(s.bucket_root / s.bucket).put_bytes("ingested.avro", alert_files()[0].read_bytes())
    _drop(s, "copied.avro", alert_files()[1].read_bytes())
    w = BucketWatcher(s, sink.url)
    w.scan()
    w.scan()
    assert _announced_keys(sink) == ["ingested.avro"]


# ---------------------------------------------------------------------------------------------------------------
# the broker's ingress: loopback, token, names


def _post(url: str, event: dict, token: str | None) -> requests.Response:
    headers, body = transport.to_binary(event)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_broker_ingress_takes_a_token_and_refuses_unsafe_names(tmp_path):
    sub = Sink()
    trig = Trigger("to-split", "ateda", "svc", ({"exact": {"type": events.OBJECT_CREATED}},), Delivery())
    with pytest.raises(ValueError):
        Broker([trig], {"svc": sub.base}, tmp_path / "spool0", LocalStore(tmp_path / "lake"), host="0.0.0.0")
    broker = Broker([trig], {"svc": sub.base}, tmp_path / "spool", LocalStore(tmp_path / "lake"),
                    token="t0ken-for-test").start()
    url = f"{broker.url}/ateda/ateda"
    rejected = instruments().broker_rejected

    def created(bucket: str = "alerts", key: str = "a.avro", **obj) -> dict:  # noqa: ANN003
        return events.make_event(events.OBJECT_CREATED, "/x", {"bucket": bucket, "objects": [{"key": key, **obj}]})

    try:
        before = rejected.labels("unsafe_key")._value.get()
        unauthorized = rejected.labels("unauthorized")._value.get()
        assert _post(url, created(), None).status_code == 401
        assert _post(url, created(), "wrong").status_code == 401
        assert requests.get(broker.url, timeout=5).status_code == 401
        with socket.create_connection(broker.server.server_address[:2], timeout=10) as raw:  # a 17 MB claim
            raw.sendall(b"POST /ateda/ateda HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t0ken-for-test\r\n"
                        b"ce-type: t\r\ncontent-length: %d\r\n\r\n" % (17 << 20))
            status_line = raw.recv(200).split(b"\r\n")[0]
        assert status_line.split()[1:2] == [b"413"], status_line
        hostile = [created(key="../../../outside/secret.txt"), created(key="/etc/passwd"),
                   created(bucket="../../outside"), created(key="a\nb"),
                   created(key="ok.tar", part_of={"bucket": "alerts", "key": "../x", "etag": "", "part": 0}),
                   events.make_event(events.ALERTS_STAGED, "/x",
                                     {"sources": [{"bucket": "alerts", "key": "a/../../b"}]})]
        for e in hostile:
            resp = _post(url, e, "t0ken-for-test")
            assert resp.status_code == 400 and resp.text.startswith("unsafe_key"), resp.text
        assert rejected.labels("unsafe_key")._value.get() - before == len(hostile)
        assert rejected.labels("unauthorized")._value.get() - unauthorized == 3
        assert _post(url, created(key="night 1/M31 – Andromeda.avro"), "t0ken-for-test").status_code == 202
        _wait(lambda: broker.idle() and sub.events)
        assert [o["key"] for e in sub.events for o in e["data"]["objects"]] == ["night 1/M31 – Andromeda.avro"]
        assert list((tmp_path / "spool" / "to-split").iterdir()) == []  # nothing refused was spooled
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------------------------------
# one real Runtime for the rest of the module


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    home = tmp_path_factory.mktemp("rt") / "home"
    s = Settings(home=home, commit_window_ms=200, watch_grace_s=0.3).resolved()
    with Runtime(s, functions=ingestion_functions(split_workers=2)) as rt:
        yield rt


def _landed(rt: Runtime, key: str) -> list[int]:
    table = bronze(rt.settings)["alert"]
    return sorted(table.scan(row_filter=EqualTo("source_key", key), selected_fields=("candid",))
                  .to_arrow()["candid"].to_pylist())


def test_runtime_state_file_token_and_children(runtime):
    state = Path(runtime.settings.home) / "runtime.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    token = json.loads(state.read_text())["token"]
    assert token and token == runtime.settings.broker_token and len(token) >= 32
    split = runtime.servers["ateda-split"].proc
    env = dict(x.split("=", 1) for x in Path(f"/proc/{split.pid}/environ").read_text().split("\0") if "=" in x)
    assert env["ATEDA_BROKER_TOKEN"] == token
    probe = events.make_event(events.PING, events.PING_SOURCE, {"tasks": []})
    assert _post(runtime.sink, probe, None).status_code == 401
    assert runtime.broker.server.server_address[0] == "127.0.0.1"


def test_hostile_names_land_beside_good_files_and_status_shows_no_stall(runtime):
    s = runtime.settings
    files = alert_files()[10:15]  # one per hostile name
    expected = expected_alerts(files)
    names = dict(zip(HOSTILE, files))  # hostile name -> a real alert file's bytes
    for f in files:
        _drop(s, f"good/{f.name}", f.read_bytes())
    for name, f in names.items():
        _drop(s, f"odd/{name}", f.read_bytes())
    for f in files:
        _wait(lambda f=f: _landed(runtime, f"good/{f.name}") == sorted(expected.get(f.name, [])) or
              not expected.get(f.name), 90, 0.5)
    for name, f in names.items():
        if HOSTILE[name] == "announce" and expected.get(f.name):
            _wait(lambda: _landed(runtime, f"odd/{name}") == sorted(expected[f.name]), 60, 0.5)
    quarantined = [r for r in list_reasons(lake_store(s)) if r["reason"] == "unsafe_key"]
    assert [r["source"]["key"] for r in quarantined] == ["odd/new\nline.avro"]
    info = status(s)
    watcher = info["runtime"]["watcher"]
    assert watcher["state"] == "ok" and watcher["failing"] == 0 and watcher["last_scan_age_s"] < 5


def test_a_killed_function_server_is_restarted_and_ingestion_goes_on(runtime):
    s = runtime.settings
    server = runtime.servers["ateda-split"]
    old_pid, restarts = server.proc.pid, server.restarts
    os.kill(old_pid, signal.SIGKILL)
    _wait(lambda: server.restarts == restarts + 1 and server.state == "up", 60, 0.2)
    health = status(s)["runtime"]["functions"]["ateda-split"]
    assert health["state"] == "up" and health["restarts"] == restarts + 1 and health["pid"] not in (None, old_pid)
    f = alert_files()[20]
    want = expected_alerts([f])[f.name]
    _drop(s, f"after-kill/{f.name}", f.read_bytes())
    _wait(lambda: _landed(runtime, f"after-kill/{f.name}") == sorted(want), 90, 0.5)
    assert not list(lake_store(s).list("dead-letter/"))


def test_status_shows_functions_and_watcher_and_no_secret(runtime, capsys):
    s = runtime.settings
    assert cli.cmd_status(argparse.Namespace(json=False), s) == 0
    text = capsys.readouterr().out
    assert "ateda-split" in text and "watcher: ok" in text and "last successful scan" in text
    assert cli.cmd_status(argparse.Namespace(json=True), s) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert set(info["runtime"]["functions"]) == {"ateda-split", "ateda-bronze"}
    assert all(f["state"] == "up" and f["pid"] for f in info["runtime"]["functions"].values())
    assert runtime.settings.broker_token not in text + out


@pytest.fixture
def pg_uri_with_password():
    with pg_database("ateda_status", password="Hunter2-s3cret") as uri:
        yield uri


def test_status_masks_the_catalog_password(tmp_path, pg_uri_with_password, capsys):
    s = Settings(home=tmp_path / "home", catalog_uri=pg_uri_with_password, s3_access_key="AKIAEXAMPLEKEY",
                 s3_secret_key="wJalrXUtnFEMIsecretKEY").resolved()
    s.home.mkdir(parents=True)  # a home that exists (a missing one is a user mistake, exit 2, before any catalog)
    for as_json in (False, True):
        assert cli.cmd_status(argparse.Namespace(json=as_json), s) == 0
        out = capsys.readouterr()
        assert "Hunter2-s3cret" not in out.out + out.err and "wJalrXUtnFEMI" not in out.out + out.err
        assert "postgres:***@127.0.0.1" in out.out
