"""Shared fixtures and the one module of shared test helpers (tests import helpers from here, never from each
other). Real data only: the ZTF alerts are read from ../shared/data/ztf at test time."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fastavro
import psycopg2
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from ateda.config import Settings, settings
from ateda.dev.bench import free_serve_port
from ateda.events import catalogue as events, transport
from ateda.lake.iceberg import ensure_tables, load_catalog

REPO = Path(__file__).resolve().parents[1]
ZTF = REPO.parent / "shared" / "data" / "ztf"
ALERTS = ZTF / "alerts"
# The two Fink re-serialisations: prv_candidates is a record of strings, so bronze keeps their candidate and cutouts
# and split quarantines the unreadable history (`unreadable_history`).
HALF_BROKEN = {"astrolabsoftware_fink-client_fink-broker-sample-alert-2.avro",
               "astrolabsoftware_fink-client_fink-broker-sample-alert-4.avro"}
DAMAGED_TAIL = "AmpelAstro_Ampel-ZTF-archive_schema_4.02.avro"
REAL_402 = "alercebroker_pipeline_3044341005815015012.avro"  # null codec, one 4.02 alert


def alert_files() -> list[Path]:
    files = sorted(ALERTS.glob("*.avro"))
    assert len(files) == 475, f"expected the 475 real alerts in {ALERTS}"
    return files


def expected_alerts(files: list[Path]) -> dict[str, list[int]]:
    """Independent count: file name -> candids of its ZTF alerts, straight from fastavro (good records only)."""
    out = {}
    for f in files:
        candids = []
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    candids.append(rec["candidate"]["candid"])
            except EOFError:
                assert f.name == DAMAGED_TAIL
        out[f.name] = candids
    return out


class Sink:
    """A real HTTP server standing in for K_SINK or a subscriber: records the CloudEvents posted to it (with the
    time of each call) and answers with scripted status codes (then 202)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.events: list[dict] = []
        self.calls: list[float] = []
        self.codes = list(codes or [])
        sink = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.calls.append(time.monotonic())
                sink.events.append(transport.from_http(dict(self.headers), body))
                self.send_response(sink.codes.pop(0) if sink.codes else 202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/ateda/ateda"

    def of(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.server.shutdown()


@pytest.fixture
def env_settings(tmp_path, monkeypatch, sink):
    """Settings for in-process handler tests: ATEDA_HOME in tmp, K_SINK = the capture server."""
    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("K_SINK", sink.url)
    monkeypatch.setenv("ATEDA_METRICS_PORT", "0")
    monkeypatch.setenv("ATEDA_COMMIT_WINDOW_MS", "50")
    settings.cache_clear()
    yield settings()
    settings.cache_clear()


def validate_all(evts: list[dict]) -> None:
    assert evts, "no events to validate"
    for e in evts:
        events.validate(e)


def put_alerts(s: Settings, files: list[Path]) -> list[dict]:
    from ateda.lake.storage import bucket_store

    store = bucket_store(s)
    return [{"key": f.name, "etag": store.put_bytes(f.name, f.read_bytes())} for f in files]


def dump(obj) -> str:  # noqa: ANN001
    return json.dumps(obj, indent=1, default=str)


PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")  # this machine's server, trust auth


@contextmanager
def pg_database(prefix: str = "ateda_test", password: str = ""):  # noqa: ANN201
    """A fresh database on the local PostgreSQL server, dropped afterwards; yields its SQLAlchemy URI. The server
    trusts loopback, so a ``password`` is carried in the URI (as a real one would be) but not checked."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(**PG)
    conn.autocommit = True
    conn.cursor().execute(f"create database {name}")
    try:
        yield f"postgresql+psycopg2://postgres{':' + password if password else ''}@127.0.0.1:5432/{name}"
    finally:
        conn.cursor().execute(f"drop database {name} with (force)")
        conn.close()


@pytest.fixture
def pg_uri():  # noqa: ANN201
    """A fresh PostgreSQL catalog database for one test."""
    with pg_database() as uri:
        yield uri


# ---- the functions through functions-framework's test client -----------------------------------------------


def app(name: str, signature: str = "cloudevent"):  # noqa: ANN201
    return create_app("handle", str(REPO / "functions" / name / "main.py"), signature).test_client()


def post(client, type_: str, data: dict, structured: bool = False,  # noqa: ANN001, ANN201
         extensions: dict | None = None):
    """``extensions``: CloudEvent extension attributes (e.g. ``{"survey": "lsst"}``), None values left out."""
    attrs = {k: v for k, v in (extensions or {}).items() if v is not None}
    ce = CloudEvent({"type": type_, "source": "/test", **attrs}, data)
    headers, body = (to_structured if structured else to_binary)(ce)
    return client.post("/", headers=headers, data=body)


# ---- bronze, as the end-to-end tests check it -----------------------------------------------------------------


def bronze(s: Settings):  # noqa: ANN201
    return ensure_tables(load_catalog(s), s)


def check_bronze(s: Settings, expected: dict[str, list[int]], tar_name: str | None, tar_files: list[Path]) -> None:
    tables = bronze(s)
    alerts = tables["alert"].scan(selected_fields=("source_key", "source_member", "candid", "schemavsn")).to_arrow()
    got = sorted(zip(alerts["source_key"].to_pylist(), alerts["candid"].to_pylist()))
    want = [(k, c) for k, cs in expected.items() for c in cs]
    if tar_name:
        want += [(tar_name, c) for f in tar_files for c in expected[f.name]]
    assert got == sorted(want), "bronze must hold exactly one row per (source object, candid)"


def check_cutouts(s: Settings, files: list[Path]) -> None:
    """Every stamp of every alert in ``files`` comes back byte-identical."""
    rows = bronze(s)["cutout"].scan(selected_fields=("source_key", "candid", "kind", "stamp_data")).to_arrow()
    cols = ("source_key", "candid", "kind", "stamp_data")
    stored = {(k, c, kind): d for k, c, kind, d in zip(*(rows[n].to_pylist() for n in cols))}
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    for field, kind in (("cutoutScience", "science"), ("cutoutTemplate", "template"),
                                        ("cutoutDifference", "difference")):
                        if rec.get(field):
                            assert stored[(f.name, rec["candidate"]["candid"], kind)] == rec[field]["stampData"]
                            n += 1
            except EOFError:
                pass
    assert n > 1000


# ---- real alerts, altered at test time ------------------------------------------------------------------------


def with_candidate_field(avro_type: object, value: object, name: str = REAL_402, values: tuple = ()) -> bytes:
    """A valid Avro file (written by fastavro) of the real alert ``name`` whose candidate has one more field,
    ``extra``, of ``avro_type``; one record per entry of ``values`` (distinct candids), else one with ``value``."""
    with io.BytesIO((ALERTS / name).read_bytes()) as fh:
        reader = fastavro.reader(fh)
        schema, rec = reader.writer_schema, next(reader)
    cand = next(f for f in schema["fields"] if f["name"] == "candidate")
    cand_record = cand["type"] if isinstance(cand["type"], dict) else next(x for x in cand["type"] if x != "null")
    cand_record["fields"].append({"name": "extra", "type": avro_type})
    recs = []
    for i, v in enumerate(values or (value,)):
        recs.append(dict(rec, candidate=dict(rec["candidate"], candid=rec["candidate"]["candid"] + i, extra=v)))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # fastavro's own writer recurses through the schema
    try:
        out = io.BytesIO()
        fastavro.writer(out, fastavro.parse_schema(schema), recs)
    finally:
        sys.setrecursionlimit(limit)
    return out.getvalue()


# The slow tier: modules whose tests start a full runtime, run dbt or race several processes. `pytest -m "not slow"`
# is the fast tier for the edit loop; the README's test command (and CI) runs both.
SLOW_MODULES = {"test_hostile_e2e", "test_bronze_safety", "test_maintenance", "test_e2e", "test_e2e_s3_postgres",
                "test_dbt", "test_refresh_memory", "test_refresh_crossmatch", "test_prometheus_scrape", "test_demo",
                "test_runtime_safety", "test_freshness", "test_copy_conflicts", "test_one_shot", "test_runtime_lock",
                "test_ceph_e2e", "test_rest_catalog", "test_newcomer", "test_rubin_bronze", "test_rubin_warehouse",
                "test_explorer_api", "test_explorer_schemathesis", "test_explorer_browser", "test_tom",
                "test_explorer_starrocks"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# ---- the explorer: a warehouse of real ZTF alerts and a generated Rubin night, served by real uvicorn -----------

EXPLORER_PORTS = range(18100, 18200)  # the ports this machine lets the explorer tests use
STAR_ALERT = "918339430315010127"  # ZTF18aauqcsv's alert: an object with stamps, limits and forced photometry


def free_port(ports: range = EXPLORER_PORTS) -> int:
    return free_serve_port(ports)


@contextmanager
def explorer_server(s: Settings, ports: range = EXPLORER_PORTS):  # noqa: ANN201
    """The explorer app over ``s`` on real uvicorn in a thread, on a free port of ``ports``; yields (app, base URL)."""
    import uvicorn

    from ateda.explorer.app import create_app

    app_ = create_app(s)
    port = free_port(ports)
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn says when it listens
        assert thread.is_alive() and time.monotonic() < deadline, "the explorer did not start"
        time.sleep(0.02)
    try:
        yield app_, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="session")
def explorer_home(tmp_path_factory):  # noqa: ANN201
    """A published warehouse of 80 real ZTF alerts (ZTF18aauqcsv's among them) and 30 generated Rubin alerts, built
    once per session (bronze, then one dbt run)."""
    from ateda.dev import synth_lsst
    from ateda.ingest import run_ingest
    from ateda.warehouse import build

    root = tmp_path_factory.mktemp("explorer")
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    chosen = files[:80] + [f for f in files if STAR_ALERT in f.name and f not in files[:80]]
    synth_lsst.write_containers(root / "rubin", 30, seed=7, per_file=30)
    s = Settings.from_env({"ATEDA_HOME": str(root / "home")})
    run_ingest(s, [*chosen, root / "rubin"], quiet=True, bronze_only=True)
    build.refresh_models(s)
    return s
