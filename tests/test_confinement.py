"""Confinement and secrets (review 3.1, 3.2, 3.9 quarantine copies, 3.14): names from input never become paths
outside a store, quarantine records keep names as data, quarantine copies are capped, secrets never reach logs.

Each test walks the filesystem around a temporary ATEDA_HOME before and after: nothing may appear outside it.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
from pathlib import Path

import pytest

from ateda.config import Settings
from ateda.errors import BadInput, TransientError
from ateda.keys import UnsafeName
from ateda.lake.quarantine import list_reasons, quarantine
from ateda.lake.storage import LocalStore, S3Store, bucket_store, lake_store
from ateda.ztf.alerts import Source

ESCAPES = ["../../../../elsewhere/y.avro", "../y.avro", "a/../../y.avro", "/tmp/y.avro", "./y.avro", "a//y.avro",
           "a/\n/y.avro", "", "a/..", ".."]
INTERNAL = ["staging/raw/0123456789abcdef0123/part-000001.tar", "staging/c0ffee/0/alert-2026-11-20.parquet",
            "quarantine/not_avro/alerts-0123456789ab/x.avro_e-0123456789ab/object.reason.json",
            "manifests/alerts/0123456789abcdef0123.json", "dead-letter/ateda-split/20261204T000000-1234-abcd.json",
            "dead-letter/dbt-refresh/20261204T000000-1234.json", "refresh/requests/00000001733270400000-ab12.json",
            "catalogs/gaia/3/cell=12.parquet", "night/2026 11 20/ztf+1 – M31.avro", "ztf_20261120_programid1.tar.gz"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks as their target text) with its content."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
    return out


def outside(tmp_path: Path, home: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(tmp_path).items() if not (tmp_path / k).is_relative_to(home)}


@pytest.fixture
def home(tmp_path):  # noqa: ANN201
    """tmp/home/{lake,bucket/alerts}, with tmp/elsewhere and tmp/secret.txt beside it (the targets of escapes)."""
    h = tmp_path / "deep" / "er" / "home"
    (h / "lake").mkdir(parents=True)
    (h / "bucket" / "alerts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "secret.txt").write_bytes(b"TOP-SECRET-BYTES")
    return h


def test_local_store_refuses_every_escaping_key_and_writes_nothing(tmp_path, home):
    before = outside(tmp_path, home)
    store = LocalStore(home / "lake")
    calls = {
        "put_bytes": lambda k: store.put_bytes(k, b"payload"),
        "put_file": lambda k: store.put_file(k, tmp_path / "secret.txt"),
        "open": store.open, "get_bytes": store.get_bytes, "head": store.head, "stat": store.stat,
        "delete": store.delete, "uri": store.uri, "list": lambda k: list(store.list(k)),
    }
    for key in ESCAPES:
        for name, call in calls.items():
            if name == "list" and key == "":
                continue  # the empty prefix lists the whole store: legitimate
            with pytest.raises(UnsafeName) as exc:
                call(key)
            assert exc.value.reason == "unsafe_key" and isinstance(exc.value, BadInput), (name, key)
    with pytest.raises(UnsafeName):
        list(store.list("../"))
    assert outside(tmp_path, home) == before
    assert (tmp_path / "secret.txt").read_bytes() == b"TOP-SECRET-BYTES"
    assert not any((tmp_path / "elsewhere").iterdir())
    assert tree(home / "lake") == {}


def test_local_store_refuses_symlinks_that_lead_out(tmp_path, home):
    lake = home / "lake"
    (lake / "quarantine").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (lake / "leak.avro").symlink_to(tmp_path / "secret.txt")
    (lake / "inside").mkdir()
    (lake / "inside" / "ok.json").write_bytes(b"{}")
    (lake / "alias.json").symlink_to(lake / "inside" / "ok.json")  # a link that stays inside is fine
    before = outside(tmp_path, home)
    store = LocalStore(lake)
    with pytest.raises(UnsafeName, match="outside"):
        store.put_bytes("quarantine/not_avro/x.reason.json", b"{}")
    with pytest.raises(UnsafeName, match="outside"):
        store.get_bytes("leak.avro")
    with pytest.raises(UnsafeName):
        store.head("leak.avro")
    with pytest.raises(UnsafeName):
        list(store.list("quarantine/"))
    with pytest.raises(UnsafeName):
        store.delete("leak.avro")
    assert store.get_bytes("alias.json") == b"{}"
    assert outside(tmp_path, home) == before and not any((tmp_path / "elsewhere").iterdir())
    assert (tmp_path / "secret.txt").read_bytes() == b"TOP-SECRET-BYTES"


def test_internal_and_ordinary_keys_still_work(home):
    store = LocalStore(home / "lake")
    for key in INTERNAL:
        etag = store.put_bytes(key, key.encode())
        assert store.get_bytes(key) == key.encode() and store.head(key).etag == etag
        assert store.uri(key) == str(home / "lake" / key)
    assert sorted(i.key for i in store.list()) == sorted(INTERNAL)
    assert sorted(i.key for i in store.list("dead-letter/")) == sorted(k for k in INTERNAL if k.startswith("dead-"))
    assert [i.key for i in store.list("staging/raw/0123")] == [INTERNAL[0]]
    assert list(store.list("no-such-folder/")) == []
    for key in INTERNAL:
        store.delete(key)
    assert list(store.list()) == []


def test_bucket_store_takes_bucket_names_not_paths(tmp_path, home):
    s = Settings(home=home).resolved()
    before = outside(tmp_path, home)
    for name in ["../../outside", "..", "a/b", "/etc", "Alerts", "al", "x" * 64, "a..b", "al\nerts"]:
        with pytest.raises(UnsafeName):
            bucket_store(s, name)
    assert bucket_store(s, "alerts").root == home / "bucket" / "alerts"
    assert bucket_store(s).root == home / "bucket" / "alerts"
    assert outside(tmp_path, home) == before


def test_bucket_name_with_a_trailing_newline_is_refused(home):
    with pytest.raises(UnsafeName):
        bucket_store(Settings(home=home).resolved(), "alerts\n")


def test_s3_store_checks_keys_before_calling_the_endpoint():
    class Endpoint:  # records calls: none may happen for a refused key
        calls: list = []

        def __getattr__(self, name: str):  # noqa: ANN204
            return lambda **kw: self.calls.append((name, kw))

    store = S3Store(Endpoint(), "alerts", "prefix")
    for key in ESCAPES:
        for call in (lambda k: store.put_bytes(k, b"x"), store.open, store.head, store.delete, store.uri):
            with pytest.raises(UnsafeName):
                call(key)
    with pytest.raises(UnsafeName):
        list(store.list("../"))
    assert Endpoint.calls == []


SRC = Source("alerts", "ztf_20261120.tar.gz", "9f86d081884c7d659a2feaa0c55ad015-3")


def test_quarantine_keeps_hostile_member_names_as_data(tmp_path, home):
    """Review 3.1: a tar member named ../../../../elsewhere/y.avro was written at that path, outside ATEDA_HOME;
    shallow ../ members overwrote other records."""
    before = outside(tmp_path, home)
    lake = LocalStore(home / "lake")
    members = ["../../../../elsewhere/y.avro", "../../../../../secret.txt", "/etc/passwd", "../x.avro", "x.avro",
               "..", ".", "", "a/../x.avro", "données_αβγ\n.avro", "../object", "object"]
    records = []
    for i, member in enumerate(members):
        err = BadInput("not_avro", f"member {i}")
        records.append(quarantine(lake, SRC, err, member or None, f"bytes {i}".encode()))
    # a hostile source key and bucket name too (as they came in an event): still data
    odd = Source("../../outside", "../../../outside/secret.txt", "../etag")
    records.append(quarantine(lake, odd, BadInput("unsafe_key", "came from a hostile event"), None, b"odd"))
    records.append(quarantine(lake, SRC, BadInput("../../../escape", "a reason is a path segment too"), "m", b"r"))

    assert outside(tmp_path, home) == before, "nothing written outside ATEDA_HOME"
    assert (tmp_path / "secret.txt").read_bytes() == b"TOP-SECRET-BYTES"
    uris = [r["quarantine_uri"] for r in records]
    assert len(set(uris)) == len(uris), "no record overwrote another"
    for r in uris:
        assert Path(r).resolve().is_relative_to((home / "lake" / "quarantine").resolve())
    stored = {(r["source"]["key"], r["member"], r["detail"]) for r in list_reasons(lake)}
    assert len(stored) == len(records)
    assert ("ztf_20261120.tar.gz", "../../../../elsewhere/y.avro", "member 0") in stored  # the name, as data
    assert ("../../../outside/secret.txt", None, "came from a hostile event") in stored
    for r in records:
        assert Path(r["quarantine_uri"]).read_bytes().startswith((b"bytes", b"odd", b"r"))


def test_quarantine_of_an_object_and_of_its_members_coexist(home):
    lake = LocalStore(home / "lake")
    a = quarantine(lake, SRC, BadInput("too_large", "member"), "big.avro", b"m")
    b = quarantine(lake, SRC, BadInput("too_large", "whole object"), None, b"o")  # same reason: a summary record
    assert a["quarantine_uri"] != b["quarantine_uri"]
    assert sorted(r["detail"] for r in list_reasons(lake)) == ["member", "whole object"]


def test_quarantine_copy_is_capped(home):
    """Review 3.9: a 0.5 MB upload wrote a 512 MiB quarantine copy. The copy keeps the first copy_limit bytes."""
    lake = LocalStore(home / "lake")
    limit = 1 << 20
    raw = os.urandom(3 * limit)

    r = quarantine(lake, SRC, BadInput("too_large", "bytes"), "a.avro", raw, copy_limit=limit)
    assert Path(r["quarantine_uri"]).read_bytes() == raw[:limit]

    # a gzip bomb, as split streams it: 256 MiB of zeros from 256 KB; only limit + 1 bytes are decompressed
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb") as gz:
        for _ in range(256):
            gz.write(bytes(1 << 20))
    stream = gzip.GzipFile(fileobj=io.BytesIO(bomb.getvalue()))
    r2 = quarantine(lake, SRC, BadInput("too_large", "bomb"), "bomb.avro", stream, copy_limit=limit)
    assert stream.tell() <= limit + 1
    assert Path(r2["quarantine_uri"]).stat().st_size == limit

    # a tar member read in stream mode (how split reads tarballs): not seekable, size unknown
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("member.avro")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    tar_bytes.seek(0)
    with tarfile.open(fileobj=tar_bytes, mode="r|") as tar:
        member = next(iter(tar))
        r3 = quarantine(lake, SRC, BadInput("too_large", "member"), member.name, tar.extractfile(member),
                        copy_limit=limit)
    assert Path(r3["quarantine_uri"]).read_bytes() == raw[:limit]

    small = quarantine(lake, SRC, BadInput("not_avro", "small"), "s.avro", io.BytesIO(b"tiny"), copy_limit=limit)
    uncapped = quarantine(lake, SRC, BadInput("not_avro", "all"), "u.avro", raw)  # no limit: kept whole
    assert Path(uncapped["quarantine_uri"]).read_bytes() == raw
    assert "copy_truncated" not in r  # the event's data: the input.rejected schema's fields only

    lake_records = {x["detail"]: x for x in list_reasons(lake)}
    assert {k: lake_records["bytes"][k] for k in ("original_size", "copy_bytes", "copy_truncated")} == \
        {"original_size": 3 * limit, "copy_bytes": limit, "copy_truncated": True}
    assert lake_records["bomb"]["copy_truncated"] is True and lake_records["bomb"]["original_size"] is None
    assert lake_records["member"]["copy_truncated"] is True and lake_records["member"]["copy_bytes"] == limit
    assert {k: lake_records["small"][k] for k in ("original_size", "copy_bytes", "copy_truncated")} == \
        {"original_size": 4, "copy_bytes": 4, "copy_truncated": False}
    assert lake_records["all"]["copy_truncated"] is False
    assert small["quarantine_uri"] and Path(small["quarantine_uri"]).read_bytes() == b"tiny"


def test_split_never_reads_outside_the_bucket(env_settings, sink, tmp_path):
    """Review 3.2: an event naming key ../../../outside/secret.txt or an absolute key made split read that file."""
    from conftest import alert_files
    from conftest import app, post

    from ateda.events import catalogue as events

    s = env_settings
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(b"TOP-SECRET-BYTES " * 10)
    alert = secret.parent / "alert.avro"  # a real alert outside the bucket: read, it would be staged and committed
    alert.write_bytes(alert_files()[0].read_bytes())
    bucket_store(s).put_bytes("fine-but-empty.avro", b"")  # the bucket exists
    before = outside(tmp_path, s.home)
    hostile = [os.path.relpath(secret, s.bucket_root / s.bucket), str(secret), "a/../../../outside/secret.txt",
               os.path.relpath(alert, s.bucket_root / s.bucket), str(alert)]
    split = app("split")
    # whether split answers 200 (quarantined as unsafe_key) or fails the event is split's to decide; what matters
    # here is that the store refused the name before anything was read
    for key in hostile:
        post(split, events.OBJECT_CREATED, {"bucket": s.bucket, "objects": [{"key": key, "etag": "e"}]})
    post(split, events.OBJECT_CREATED, {"bucket": "../../outside", "objects": [{"key": "secret.txt", "etag": "e"}]})
    assert outside(tmp_path, s.home) == before
    assert not any(b"TOP-SECRET" in v for v in tree(s.home).values()), "the secret's bytes were read into the home"
    assert not any(b"TOP-SECRET" in repr(e).encode() for e in sink.events)
    assert not sink.of(events.ALERTS_STAGED)
    assert all(e["data"]["reason"] == "unsafe_key" for e in sink.of(events.INPUT_REJECTED))


def test_catalog_errors_and_their_log_lines_carry_no_password(env_settings, monkeypatch, caplog):
    """Review 3.14: catalog errors carried the catalog URI with its password into logs (4 times in one log)."""
    from ateda.lake.iceberg import load_catalog
    from ateda.config import settings
    from ateda.serving.logs import install_secret_masking
    from ateda.local.runtime import free_port

    password = "Sup3r-s3cret-pw"
    monkeypatch.setenv("ATEDA_CATALOG_URI", f"postgresql+psycopg2://ateda:{password}@127.0.0.1:{free_port()}/cat")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-value")
    settings.cache_clear()
    install_secret_masking()
    log = logging.getLogger("ateda.bronze")
    with caplog.at_level(logging.INFO):
        with pytest.raises(TransientError) as exc:
            load_catalog(settings())  # a real pyiceberg SQL catalog on a port nobody listens on
        assert "***" in str(exc.value) and password not in str(exc.value)
        try:
            raise exc.value
        except TransientError:
            log.exception("bronze commit failed")
        log.warning("retrying with %s and key %s", settings().catalog_uri, "aws-secret-key-value")
        log.error("psycopg2 said: password=%s", password)
    text = caplog.text
    assert "bronze commit failed" in text and "Traceback" in text and "catalog unavailable at" in text
    assert password not in text and "aws-secret-key-value" not in text
    assert "postgresql+psycopg2://ateda:***@127.0.0.1" in text


def test_dead_letter_function_keeps_hostile_type_and_id_inside_the_lake(env_settings, tmp_path):
    """The dead-letter function names its file after the event's type and id: data from the sender, never a path."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent
    from functions_framework import create_app

    from conftest import REPO

    before = outside(tmp_path, env_settings.home)
    client = create_app("handle", str(REPO / "functions" / "dead_letter" / "main.py"), "cloudevent").test_client()
    for type_, id_ in (("../../../../escaped", "../../../../x"), ("dev.ateda.alerts.staged", "/etc/evil"),
                       ("dev.ateda.alerts.staged", "plain-id-1")):
        ce = CloudEvent({"type": type_, "source": "/test", "id": id_}, {"k": 1})
        headers, body = to_binary(ce)
        assert client.post("/", headers=headers, data=body).status_code < 300
    keys = sorted(i.key for i in lake_store(env_settings).list("dead-letter/"))
    assert len(keys) == 3, keys
    # no knativeerrordest names a Trigger: the letters go to dead-letter/unknown/, each under a safe name
    assert all(k.startswith("dead-letter/unknown/") and k.count("/") == 2 for k in keys), keys
    assert any(k.endswith("-plain-id-1.json") for k in keys), keys
    assert outside(tmp_path, env_settings.home) == before


def test_a_folder_or_a_path_under_a_file_is_no_object(home):
    """Not a transient failure (that would be retried, then dead-lettered): there is no such object."""
    store = LocalStore(home / "bucket" / "alerts")
    store.put_bytes("night/a.avro", b"x")
    for key in ("night", "night/a.avro/b.avro"):
        with pytest.raises(FileNotFoundError):
            store.open(key)


def test_ingest_summary_prints_a_refused_name_on_one_line(capsys):
    """A name with a newline or undecodable bytes is shown escaped, on one line, never as a UnicodeEncodeError."""
    from ateda.cli.ingest import print_summary
    from ateda.ingest import IngestSummary

    bad = "caf\udce9\nnight.avro"
    print_summary(IngestSummary(files=1, rejected=[{"key": bad, "member": None, "reason": "unsafe_key",
                                                     "detail": f"control character in object key {bad!r}"}]), False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("  caf\\xe9\\x0anight.avro: unsafe_key - "), lines
    assert len(lines) == 4, lines


@pytest.mark.parametrize("name", ["ned\n", "../ned", "/ned", "ned/x", ".."])
def test_catalog_names_are_refused_before_any_path_is_built(home, tmp_path, name):
    """A catalog name becomes a lake folder: every name check is a full match (a trailing newline is no name)."""
    from ateda.steps.crossmatch import add_reference_catalog
    from ateda.errors import ConfigError

    before = outside(tmp_path, home)
    with pytest.raises(ConfigError):
        add_reference_catalog(Settings(home=home).resolved(), name, tmp_path / "missing.csv", 1.0)
    assert outside(tmp_path, home) == before


def test_a_users_mistake_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """A missing input path or a malformed setting: one line on stderr naming it, exit 2, no traceback, nothing
    started."""
    from ateda.cli import main
    from ateda.config import settings

    monkeypatch.setenv("ATEDA_HOME", str(tmp_path / "home"))
    settings.cache_clear()
    try:
        _mistakes(tmp_path, monkeypatch, capsys, main)
    finally:
        settings.cache_clear()  # the process-wide settings must not keep this test's home


def _mistakes(tmp_path, monkeypatch, capsys, main) -> None:  # noqa: ANN001
    assert main(["ingest", str(tmp_path / "no-such-night.tar.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ateda ingest: No such file or directory: {tmp_path / 'no-such-night.tar.gz'}"], err
    assert not (tmp_path / "home" / "runtime.json").exists()
    monkeypatch.setenv("ATEDA_CHUNK_ALERTS", "abc")
    assert main(["status"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ateda status: ATEDA_CHUNK_ALERTS must be an integer, got 'abc'"]
