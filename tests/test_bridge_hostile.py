"""The S3-notification bridge under hostile requests (review 3.2, 3.13, 3.14): the real function server
(functions-framework + gunicorn, as ``ateda up`` and the image start it) on loopback, real HTTP, the Sink server as
K_SINK. Notifications as Ceph RGW sends them (captured), as AWS documents them and as MinIO sends them.

Traversal keys and bucket names, malformed bodies, oversize bodies, missing or bad tokens: each gets its 4xx with a
reason, is counted (ateda_rejected_total{function="minio-bridge"}), forwards nothing and never fails a neighbour.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from ateda.config import Settings
from ateda.events import catalogue as events
from ateda.lake.storage import bucket_store, lake_store
from ateda.local.runtime import free_port
from ateda.serving.metrics import instruments
from ateda.steps import maintenance as mt
from ateda.steps import reconcile
from conftest import ALERTS, REPO, Sink

TOKEN = "bridge-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 << 10


def notification(key: str = "night%2F2026+11+20%2Fztf%2B1.avro", bucket: object = "alerts") -> dict:
    """One MinIO notification as MinIO sends it (key query-escaped)."""
    return {
        "EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2026-11-20T08:15:02.123Z",
            "eventName": "s3:ObjectCreated:Put", "userIdentity": {"principalId": "minioadmin"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                   "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, "size": 18863, "eTag": "78f33c859e650ca4464f6690c047f5c4",
                              "sequencer": "17F6B3C2A1E3D1C0"}},
        }],
    }


# Captured from Debian's Ceph RGW 16.2.15 (tests/ceph.py) with a topic whose push-endpoint is an HTTP server: a
# single put of the key 'dir/a b+c%.avro' and a two-part multipart upload. Ceph sends the key as it is (not
# query-escaped), names events without the 's3:' prefix, no Authorization header and no HEAD probe.
CEPH_PUT = json.loads(
    '{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","awsRegion":"","eventTime":"2026-12-04T18:'
    '15:37.617007Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"ateda"},"requestParame'
    'ters":{"sourceIPAddress":""},"responseElements":{"x-amz-request-id":"e8f7f4a9-d05d-47c0-988f-9e24c82'
    '33244.4110.7960931871954780713","x-amz-id-2":"100e-default-default"},"s3":{"s3SchemaVersion":"1.0","'
    'configurationId":"n1","bucket":{"name":"alerts","ownerIdentity":{"principalId":"ateda"},"arn":"arn:a'
    'ws:s3:::alerts","id":"e8f7f4a9-d05d-47c0-988f-9e24c8233244.4112.1"},"object":{"key":"dir/a b+c%.avro'
    '","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592","versionId":"","sequencer":"4903136B3790ED24","'
    'metadata":[{"key":"x-amz-content-sha256","val":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e7304'
    '3362938b9824"},{"key":"x-amz-date","val":"20261204T181535Z"}],"tags":[]}},"eventId":"1796408137.6195'
    '48.5d41402abc4b2a76b9719d911017c592","opaqueData":""}]}')
CEPH_MULTIPART = json.loads(
    '{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","awsRegion":"","eventTime":"2026-12-04T18:'
    '15:40.057277Z","eventName":"ObjectCreated:CompleteMultipartUpload","userIdentity":{"principalId":"at'
    'eda"},"requestParameters":{"sourceIPAddress":""},"responseElements":{"x-amz-request-id":"e8f7f4a9-d0'
    '5d-47c0-988f-9e24c8233244.4110.15260002482891583340","x-amz-id-2":"100e-default-default"},"s3":{"s3S'
    'chemaVersion":"1.0","configurationId":"n1","bucket":{"name":"alerts","ownerIdentity":{"principalId":'
    '"ateda"},"arn":"arn:aws:s3:::alerts","id":"e8f7f4a9-d05d-47c0-988f-9e24c8233244.4112.1"},"object":{"'
    'key":"big.avro","size":5242890,"eTag":"298c9a5c8205ea8eeef29652993678aa-2","versionId":"","sequencer'
    '":"4C03136BFD156A03","metadata":[{"key":"x-amz-content-sha256","val":"70532ec75b13b547b7d94b6dc8d794'
    '68f175eedc3e17ff90d3f5559386d7cb47"},{"key":"x-amz-date","val":"20261204T181540Z"}],"tags":[]}},"eve'
    'ntId":"1796408140.057284.298c9a5c8205ea8eeef29652993678aa-2","opaqueData":""}]}')


def aws_records(*keys: str, event: str = "ObjectCreated:Put") -> dict:
    """The standard S3 event (AWS's documented format): several records per request, keys query-escaped."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-20T08:15:02.123Z",
        "eventName": event, "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "ateda",
               "bucket": {"name": "alerts", "ownerIdentity": {"principalId": "A3EXAMPLE"},
                          "arn": "arn:aws:s3:::alerts"},
               "object": {"key": key, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": "0055AED6DCD90281E5"}}}
        for key in keys]}


class Bridge:
    """``python -m functions_framework`` on functions/minio_bridge, as Runtime._spawn starts a function."""

    def __init__(self, tmp: Path, sink: Sink, host: str = "127.0.0.1", **env: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = tmp / f"bridge-{self.port}.log"
        self.env = {**os.environ, "ATEDA_HOME": str(tmp / "home"), "K_SINK": sink.url,
                    "ATEDA_BATCH_WINDOW_MS": "200", "ATEDA_BRIDGE_MAX_BODY": str(MAX_BODY),
                    "ATEDA_METRICS_PORT": str(self.metrics_port), "ATEDA_METRICS_ADDR": "127.0.0.1",
                    "WORKERS": "1", "THREADS": "16", **env}
        for name in ("ATEDA_BRIDGE_TOKEN", "ATEDA_BRIDGE_INSECURE_OPEN", "PROMETHEUS_MULTIPROC_DIR"):
            if name not in env:
                self.env.pop(name, None)
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "functions_framework", "--target", "handle",
                 "--source", str(REPO / "functions" / "minio_bridge" / "main.py"), "--signature-type", "http",
                 "--host", host, "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> "Bridge":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if requests.head(self.url, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError(self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, body: object = None, raw: bytes | None = None, headers: dict | None = None) -> requests.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(self.url, data=data, headers={"content-type": "application/json", **(headers or {})},
                             timeout=30)

    def rejected(self) -> dict[str, float]:
        """ateda_rejected_total{function="minio-bridge"} by reason, scraped from the bridge's /metrics."""
        try:
            text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except requests.ConnectionError:  # the endpoint starts with the first request: nothing counted yet
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("ateda_rejected_total{") and 'function="minio-bridge"' in line:
                reason = line.split('reason="')[1].split('"')[0]
                out[reason] = float(line.rsplit(" ", 1)[1])
        return out

    def rss_kib(self) -> int:
        """Resident memory of the server and its gunicorn workers (KiB)."""
        pids = [self.proc.pid] + [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                                  .read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def sink():  # noqa: ANN201 (one sink for the module's bridge; tests look at the events they caused)
    s = Sink()
    yield s
    s.server.shutdown()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, sink):  # noqa: ANN201
    b = Bridge(tmp_path_factory.mktemp("bridge"), sink, ATEDA_BRIDGE_TOKEN=TOKEN).wait_ready()
    yield b
    b.stop()


@pytest.fixture
def fresh(sink):  # noqa: ANN201
    """The sink's events from this test only."""
    sink.events.clear()
    return sink


def test_a_good_notification_still_goes_through(bridge, fresh):
    resp = bridge.post(notification(), headers=AUTH)
    assert resp.status_code == 200, resp.text
    (event,) = fresh.of(events.OBJECT_CREATED)
    events.validate(event)
    assert event["data"]["bucket"] == "alerts"
    assert event["data"]["objects"][0]["key"] == "night/2026 11 20/ztf+1.avro"


def test_missing_or_bad_tokens_are_refused(bridge, fresh):
    before = bridge.rejected().get("unauthorized", 0)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer é"}):
        assert bridge.post(notification(), headers=headers).status_code == 401, headers
    assert fresh.events == []
    assert bridge.rejected()["unauthorized"] - before == 6


TRAVERSALS = {
    "key ../": notification("..%2F..%2F..%2Foutside%2Fsecret.txt"),
    "key ../ plain": notification("../../../outside/secret.txt"),
    "absolute key": notification("%2Fetc%2Fpasswd"),
    "key a/../..": notification("a%2F..%2F..%2Fsecret.txt"),
    "key with NUL": notification("x%00.avro"),
    "key with newline": notification("x%0A.avro"),
    "key not UTF-8": notification("x%FF.avro"),
    "empty key": notification(""),
    "bucket ../../outside": notification("secret.txt", "../../outside"),
    "bucket /": notification("etc/passwd", "/"),
    "bucket uppercase path": notification("x.avro", "Alerts/../x"),
}


@pytest.mark.parametrize("case", TRAVERSALS)
def test_traversal_keys_and_buckets_get_400_and_nothing_is_forwarded(bridge, fresh, case):
    before = bridge.rejected().get("unsafe_key", 0)
    resp = bridge.post(TRAVERSALS[case], headers=AUTH)
    assert resp.status_code == 400, (case, resp.status_code, resp.text)
    assert "unsafe_key" in resp.text
    assert fresh.events == [], "an unsafe name reached the broker (split would have read it)"
    assert bridge.rejected()["unsafe_key"] - before == 1


def _with(path: list, value: object) -> dict:
    body = notification()
    node = body
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return body


MALFORMED = {
    "[]": [], "null": None, '"hello"': "hello", "1": 1, '{"Records":[1]}': {"Records": [1]},
    "Records not a list": {"Records": {"a": 1}}, "no Records": {"EventName": "s3:ObjectCreated:Put"},
    "s3 is a string": {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": "x"}]},
    "bucket is a list": _with(["Records", 0, "s3", "bucket", "name"], ["alerts"]),
    "bucket is null": _with(["Records", 0, "s3", "bucket", "name"], None),
    "bucket is a string": _with(["Records", 0, "s3", "bucket"], "alerts"),
    "key is a number": _with(["Records", 0, "s3", "object", "key"], 123),
    "key is a dict": _with(["Records", 0, "s3", "object", "key"], {"a": "b"}),
    "object missing": _with(["Records", 0, "s3", "object"], None),
    "eventName is a list": _with(["Records", 0, "eventName"], ["s3:ObjectCreated:Put"]),
    "eTag is a list": _with(["Records", 0, "s3", "object", "eTag"], ["x"]),
    "eTag has a slash": _with(["Records", 0, "s3", "object", "eTag"], "../x"),
    "size is a string": _with(["Records", 0, "s3", "object", "size"], "12"),
    "size is negative": _with(["Records", 0, "s3", "object", "size"], -1),
    "eventTime is a number": _with(["Records", 0, "eventTime"], 12),
}
NOT_JSON = {"not json": b"not json", "truncated": b'{"Records": [', "not UTF-8": b'{"Records": "\xff"}',
            "empty": b"", "nested 30000 deep": b"[" * 30_000 + b"]" * 30_000}


@pytest.mark.parametrize("case", [*MALFORMED, *NOT_JSON])
def test_malformed_bodies_get_400_never_500(bridge, fresh, case):
    resp = bridge.post(MALFORMED[case], headers=AUTH) if case in MALFORMED else \
        bridge.post(raw=NOT_JSON[case], headers=AUTH)
    assert resp.status_code == 400, (case, resp.status_code, resp.text)
    assert resp.text.startswith("not an S3 notification")
    assert fresh.events == []


def test_a_bad_record_does_not_fail_its_batch(bridge, fresh):
    """Review 3.13: a list-valued bucket name failed every webhook of its 200 ms batch."""
    good = [notification(f"night%2Fgood-{i}.avro") for i in range(6)]
    bad = [_with(["Records", 0, "s3", "bucket", "name"], ["alerts"]), notification("..%2Fx.avro"),
           notification("x.avro", "../../outside")]
    bodies = good[:3] + bad + good[3:]
    codes: dict[int, int] = {}
    barrier = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        barrier.wait()
        codes[i] = bridge.post(bodies[i], headers=AUTH).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [codes[i] for i in range(len(bodies))] == [200] * 3 + [400] * 3 + [200] * 3
    keys = sorted(o["key"] for e in fresh.of(events.OBJECT_CREATED) for o in e["data"]["objects"])
    assert keys == sorted(f"night/good-{i}.avro" for i in range(6))
    assert len(fresh.events) < 6, "the good ones were coalesced (same 200 ms window)"


def test_a_key_that_is_no_header_still_makes_an_event(bridge, fresh):
    """The first key becomes the CloudEvent subject (an HTTP header): encoded, it cannot break the post."""
    key = "M31 – Andromeda/données αβγ.avro"
    from urllib.parse import quote_plus

    assert bridge.post(notification(quote_plus(key)), headers=AUTH).status_code == 200
    (event,) = fresh.of(events.OBJECT_CREATED)
    assert event["data"]["objects"][0]["key"] == key


def test_oversize_bodies_get_413_without_being_read(bridge, fresh):
    """Review 3.13: no body limit (eight 50 MB bodies took the bridge from 87 to 891 MiB)."""
    before = bridge.rejected().get("too_large", 0)
    # a declared 1 GB body: refused on the Content-Length alone, before the client sent more than a few bytes
    conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Authorization", AUTH["Authorization"])
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()
    conn.send(b'{"Records": [')
    start = time.monotonic()
    resp = conn.getresponse()
    assert resp.status == 413 and time.monotonic() - start < 5
    conn.close()

    # chunked bodies (no Content-Length): read up to the limit, then refused; memory stays flat
    rss_before = bridge.rss_kib()

    def chunks(total: int):  # noqa: ANN202
        block = b" " * (1 << 20)
        for _ in range(total // len(block)):
            yield block

    for _ in range(4):
        try:
            r = requests.post(bridge.url, data=chunks(32 << 20), headers=AUTH, timeout=60)
            assert r.status_code == 413
        except requests.ConnectionError:  # the server may close while the rest is still being sent
            pass
    just_over = bridge.post(raw=b" " * (MAX_BODY + 1), headers=AUTH)
    at_limit = bridge.post(raw=json.dumps(notification()).encode().ljust(MAX_BODY), headers=AUTH)
    assert just_over.status_code == 413 and at_limit.status_code == 200
    grew = bridge.rss_kib() - rss_before
    print(f"bridge RSS after 4 x 32 MiB chunked bodies: {grew / 1024:+.1f} MiB")
    assert grew < 32 << 10, f"RSS grew {grew} KiB"
    assert bridge.rejected()["too_large"] - before >= 2
    assert len(fresh.of(events.OBJECT_CREATED)) == 1  # the one at the limit


def test_without_a_token_the_bridge_refuses_to_start(tmp_path, sink):
    b = Bridge(tmp_path, sink)
    try:
        rc = b.proc.wait(timeout=60)
    finally:
        b.stop()
    out = b.log()
    assert rc != 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines == [line for line in lines if "refuses to start" in line] and len(lines) == 1, out
    assert "ATEDA_BRIDGE_TOKEN is not set" in lines[0] and "ATEDA_BRIDGE_INSECURE_OPEN" in lines[0]
    with pytest.raises(requests.ConnectionError):
        requests.head(b.url, timeout=2)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_open_mode_serves_loopback_only_and_says_so(tmp_path, sink):
    sink.events.clear()
    b = Bridge(tmp_path, sink, host="0.0.0.0", ATEDA_BRIDGE_INSECURE_OPEN="true").wait_ready()
    try:
        assert "running OPEN" in b.log() and "loopback" in b.log()
        assert b.post(notification()).status_code == 200  # from 127.0.0.1, no token needed
        assert b.post(notification(), headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert b.post(notification(), headers={"Forwarded": 'for="203.0.113.9";proto=http'}).status_code == 403
        addr = _non_loopback_address()
        if addr:  # the same server reached over a real interface: the caller is not loopback
            resp = requests.post(f"http://{addr}:{b.port}", json=notification(), timeout=10)
            assert resp.status_code == 403
        assert len(sink.of(events.OBJECT_CREATED)) == 1
        assert b.rejected()["not_loopback"] >= 2
    finally:
        b.stop()


def test_secrets_are_masked_in_the_bridge_log(bridge):
    """Review 3.14: a refusal is logged with what was refused; a configured secret inside it is masked."""
    assert bridge.post(notification(f"..%2F{TOKEN}.avro"), headers=AUTH).status_code == 400
    uri_key = "..%2Fpostgresql%3A%2F%2Fateda%3Ahunter2pw%40db%2Fcat"
    assert bridge.post(notification(uri_key), headers=AUTH).status_code == 400
    log = bridge.log()
    assert "refused a webhook (unsafe_key" in log and "../***.avro" in log and "ateda:***@db" in log
    assert TOKEN not in log and "hunter2pw" not in log


def _keys(sink: Sink) -> list[tuple[str, str, str]]:
    return sorted((o["key"], o["etag"], o["event_name"]) for e in sink.of(events.OBJECT_CREATED)
                  for o in e["data"]["objects"])


def test_ceph_notifications_as_captured_go_through_with_the_token_in_the_url(bridge, fresh):
    """Ceph's push endpoint sends no header of its own: the topic's push-endpoint URL carries ?token=."""
    for body in (CEPH_PUT, CEPH_MULTIPART):
        resp = requests.post(f"{bridge.url}/?token={TOKEN}", data=json.dumps(body), timeout=30,
                             headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.text
    for event in fresh.of(events.OBJECT_CREATED):
        events.validate(event)
    assert _keys(fresh) == [
        ("big.avro", "298c9a5c8205ea8eeef29652993678aa-2", "s3:ObjectCreated:CompleteMultipartUpload"),
        ("dir/a b+c%.avro", "5d41402abc4b2a76b9719d911017c592", "s3:ObjectCreated:Put")]


def test_aws_records_several_per_request_keys_unescaped(bridge, fresh):
    body = aws_records("night%2F2026+11+20%2Fztf%2B1.avro", "night%2Fb.avro")
    assert bridge.post(body, headers=AUTH).status_code == 200
    assert [k for k, _, _ in _keys(fresh)] == ["night/2026 11 20/ztf+1.avro", "night/b.avro"]


@pytest.mark.parametrize("name", ["ObjectRemoved:Delete", "s3:ObjectRemoved:Delete", "ObjectRestore:Completed",
                                  "s3:ObjectAccessed:Get", "s3:TestEvent"])
def test_non_create_events_are_acknowledged_and_ignored(bridge, fresh, name):
    body = aws_records("x.avro", event=name)
    ceph = json.loads(json.dumps(CEPH_PUT))
    ceph["Records"][0]["eventName"] = name
    assert bridge.post(body, headers=AUTH).status_code == 200
    assert bridge.post(ceph, headers=AUTH).status_code == 200
    assert fresh.events == []


def test_head_probe_is_answered(bridge):
    assert requests.head(bridge.url, timeout=10).status_code == 200
    assert requests.head(f"{bridge.url}/?token=wrong", timeout=10).status_code == 200  # a probe carries no data


def test_the_token_in_every_form_a_store_sends_it(bridge, fresh):
    basic = base64.b64encode(f"ateda:{TOKEN}".encode()).decode()
    wrong_basic = base64.b64encode(b"ateda:wrong").decode()
    ok = [({"Authorization": f"Bearer {TOKEN}"}, ""), ({"Authorization": f"Basic {basic}"}, ""),
          ({}, f"?token={TOKEN}")]
    bad = [({}, "?token=wrong"), ({}, f"?tok={TOKEN}"), ({"Authorization": "Bearer wrong"}, f"?token={TOKEN}"),
           ({"Authorization": f"Basic {wrong_basic}"}, ""), ({}, "?token="),
           ({"Authorization": "Digest x"}, f"?token={TOKEN}")]
    before = bridge.rejected().get("unauthorized", 0)
    for headers, query in ok:
        resp = requests.post(f"{bridge.url}/{query}", data=json.dumps(CEPH_PUT), timeout=30, headers=headers)
        assert resp.status_code == 200, (headers, query, resp.text)
    n = len(fresh.of(events.OBJECT_CREATED))
    for headers, query in bad:
        resp = requests.post(f"{bridge.url}/{query}", data=json.dumps(CEPH_PUT), timeout=30, headers=headers)
        assert resp.status_code == 401, (headers, query)
    assert len(fresh.of(events.OBJECT_CREATED)) == n > 0
    assert bridge.rejected()["unauthorized"] - before == len(bad)


@pytest.mark.parametrize("field,value", [("versionId", ["x"]), ("versionId", "a b"), ("sequencer", 12),
                                         ("sequencer", "x" * 2000), ("eventSource", 3)])
def test_malformed_standard_fields_get_400(bridge, fresh, field, value):
    body = json.loads(json.dumps(CEPH_PUT))
    target = body["Records"][0] if field == "eventSource" else body["Records"][0]["s3"]["object"]
    target[field] = value
    resp = bridge.post(body, headers=AUTH)
    assert resp.status_code == 400 and "not_minio_event" in resp.text, resp.text
    assert fresh.events == []


def test_raw_ceph_keys_are_checked_too(bridge, fresh):
    for key in ("../outside.avro", "/etc/passwd", "a/./b", "x\x00y"):
        body = json.loads(json.dumps(CEPH_PUT))
        body["Records"][0]["s3"]["object"]["key"] = key
        resp = bridge.post(body, headers=AUTH)
        assert resp.status_code == 400 and "unsafe_key" in resp.text, (key, resp.text)
    assert fresh.events == []


def test_reconciliation_announces_what_the_lake_does_not_know(tmp_path):
    """The reconciliation pass on a local bucket folder (the S3 case runs in test_ceph_e2e): known objects (a split
    manifest names them) are left alone, young ones wait for their notification, the rest is announced once per
    pass in object.created events the catalogue accepts, and counted."""
    s = Settings(home=tmp_path / "home", batch_max_objects=2).resolved()
    store = bucket_store(s)
    files = sorted(ALERTS.glob("*.avro"))[:5]
    etags = {f.name: store.put_bytes(f"night/{f.name}", f.read_bytes()) for f in files}
    known = files[0].name
    lake_store(s).put_bytes(f"manifests/{s.bucket}/m.json", json.dumps({"objects": [
        {"key": f"night/{known}", "etag": etags[known], "parts": 1, "rejected": []}]}).encode())
    sink = Sink()
    try:
        young = reconcile.run(s, sink.url, grace_s=3600)
        assert (young.listed, young.known, young.young, young.repaired) == (5, 1, 4, [])
        assert sink.events == []
        before = instruments().repaired.labels(s.bucket)._value.get()
        report = reconcile.run(s, sink.url, grace_s=0)
        assert (report.listed, report.known, report.young) == (5, 1, 0)
        want = sorted((f"night/{f.name}", etags[f.name]) for f in files[1:])
        assert sorted(report.repaired) == want
        assert instruments().repaired.labels(s.bucket)._value.get() - before == 4
        got = []
        for event in sink.of(events.OBJECT_CREATED):
            events.validate(event)
            assert event["source"] == "/ateda/reconcile" and len(event["data"]["objects"]) <= 2
            got += [(o["key"], o["etag"]) for o in event["data"]["objects"]]
        assert sorted(got) == want
    finally:
        sink.server.shutdown()


def test_reconciliation_runs_as_the_maintenance_task(tmp_path):
    """The hourly ping asks for `reconcile`: the maintenance pass announces lost objects to its K_SINK, and says it
    skipped the task when it has no sink (``ateda maintain`` by hand without a runtime), posting nothing."""
    files = sorted(ALERTS.glob("*.avro"))[:3]
    sink = Sink()
    try:
        s = Settings(home=tmp_path / "home", sink=sink.url, reconcile_grace_s=0).resolved()
        store = bucket_store(s)
        etags = sorted((f"lost/{f.name}", store.put_bytes(f"lost/{f.name}", f.read_bytes())) for f in files)
        alone = mt.run_pass(dataclasses.replace(s, sink=""), ["reconcile"])
        assert alone.reconcile == {"skipped": "no event sink (K_SINK): nowhere to announce lost objects"}
        assert sink.events == [] and alone.tables == {}
        report = mt.run_pass(s, mt.tasks_of({"tasks": ["reconcile"]}))
        assert report.reconcile == {"bucket": s.bucket, "listed": 3, "known": 0, "young": 0, "repaired": 3}
        got = sorted((o["key"], o["etag"]) for e in sink.of(events.OBJECT_CREATED) for o in e["data"]["objects"])
        assert got == etags
    finally:
        sink.server.shutdown()
