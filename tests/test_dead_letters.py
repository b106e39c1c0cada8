"""Dead letters: one format and one folder scheme for every producer (local broker, the cluster's dead-letter
function, the dbt refresh worker); `ateda status`, `ateda ingest` and `ateda replay` read the old formats too;
`--trigger` names a Trigger of knative/ in both modes; bronze's letters carry the real cause (review 1.6, 2.1)."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from functions_framework import create_app
from werkzeug.serving import make_server

from ateda.lake import deadletters

from ateda.config import settings
from ateda.events import catalogue as events, transport
from ateda.events.routing import knative_dir, load_triggers
from ateda.ingest import IngestFailed, _DeadLetters
from ateda.lake.storage import lake_store
from ateda.local.broker import Broker
from ateda.local.runtime import free_port
from ateda.status import status
from ateda.steps import dbt_refresh as rf
from conftest import REPO, Sink, alert_files, put_alerts

TRIGGERS = load_triggers(knative_dir())
B64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731


def _event(type_: str, data: dict | None = None, id_: str | None = None) -> dict:
    event = events.make_event(type_, "/test", data or {"n": 1})
    if id_:
        event["id"] = id_
    return event


def _put(lake, key: str, event: dict, dest: str, code: str, data: str) -> str:  # noqa: ANN001
    lake.put_bytes(key, json.dumps(dict(event, knativeerrordest=dest, knativeerrorcode=code,
                                        knativeerrordata=data), indent=1).encode())
    return key


def old_broker_letter(lake, event: dict, trigger: str = "bronze-on-alerts-staged", error: str = "catalog down"):  # noqa: ANN001, ANN201
    """As the local broker wrote them before: folder per Trigger, local time, base64 error text."""
    return _put(lake, f"dead-letter/{trigger}/20260101T000000-{event['id']}.json", event,
                "http://127.0.0.1:5555", "500", B64(f"TransientError: {error}"))


def old_function_letter(lake, event: dict, dest: str = "http://ateda-split.ateda.svc.cluster.local"):  # noqa: ANN001, ANN201
    """As the dead-letter function wrote them before: folder per event type, Knative's extensions as received."""
    return _put(lake, f"dead-letter/{event['type']}/20260101T000001-{event['id']}.json", event, dest, "503",
                B64("upstream connect error"))


def old_refresh_letter(lake, event: dict):  # noqa: ANN001, ANN201
    """As the refresh worker wrote them before: knativeerrordata as plain text (what crashed `ateda ingest`)."""
    return _put(lake, f"dead-letter/dbt-refresh/20260101T000002-{event['id']}.json", event, "dbt-refresh", "500",
                "RuntimeError: dbt exploded")


@pytest.fixture
def lake(tmp_path):  # noqa: ANN201
    from ateda.lake.storage import LocalStore

    return LocalStore(tmp_path / "lake")


# ---------------------------------------------------------------- ingest (review 1.6)


def test_ingest_reads_a_refresh_workers_old_letter_instead_of_crashing(lake):
    """Before: `ateda ingest` died with binascii.Error on the refresh worker's plain-text letter. Now it reads it,
    and does not stop for it either: a dbt refresh letter does not keep any alert out of bronze."""
    waiting = _DeadLetters(lake)
    old_refresh_letter(lake, _event(events.BRONZE_COMMITTED))
    deadletters.write(lake, rf.SUBSCRIBER, _event(events.CROSSMATCH_COMMITTED), rf.FUNCTION, 500, "dbt failed")
    waiting.check()  # no binascii.Error, no IngestFailed
    assert len(waiting.seen) == 2


@pytest.mark.parametrize("write", [old_broker_letter, old_function_letter,
                                   lambda lk, e: deadletters.write(lk, "bronze-on-alerts-staged", e,
                                                                   "http://127.0.0.1:1", 500, "TransientError: x")])
def test_ingest_stops_on_a_letter_of_its_own_events_in_any_format_with_the_cause(lake, write):
    waiting = _DeadLetters(lake)
    staged = _event(events.ALERTS_STAGED if write is not old_function_letter else events.OBJECT_CREATED)
    write(lake, staged)
    with pytest.raises(IngestFailed) as failed:
        waiting.check()
    text = str(failed.value)
    assert "1 event(s) dead-lettered" in text and "ateda replay" in text
    assert any(cause in text for cause in ("catalog down", "upstream connect error", "TransientError: x")), text


def test_ingest_ignores_letters_that_were_there_before_it_started(lake):
    old_broker_letter(lake, _event(events.ALERTS_STAGED))
    waiting = _DeadLetters(lake)
    waiting.check()


# ---------------------------------------------------------------- reading: one format, the old ones tolerated


def test_every_format_reads_to_the_event_as_delivered_its_cause_and_its_trigger(lake):
    staged, created, committed = (_event(events.ALERTS_STAGED), _event(events.OBJECT_CREATED),
                                  _event(events.BRONZE_COMMITTED))
    keys = {
        "old broker": old_broker_letter(lake, staged),
        "old function": old_function_letter(lake, created),
        "old refresh": old_refresh_letter(lake, committed),
        "new refresh": deadletters.write(lake, rf.SUBSCRIBER, committed, rf.FUNCTION, 500, "RuntimeError: boom"),
        "new broker": deadletters.write(lake, "bronze-on-alerts-staged", staged, "http://127.0.0.1:9", 500, "é"),
        "cluster (MT broker)": deadletters.write(
            lake, deadletters.folder_for(dest := "http://broker-filter.knative-eventing.svc.cluster.local/triggers/"
                                               "ateda/split-on-object-created/0b1c-uid"),
            created, dest, 500, "no"),
    }
    got = {name: deadletters.read(lake, key) for name, key in keys.items()}
    assert {n: (x.code, x.error) for n, x in got.items()} == {
        "old broker": ("500", "TransientError: catalog down"), "old function": ("503", "upstream connect error"),
        "old refresh": ("500", "RuntimeError: dbt exploded"), "new refresh": ("500", "RuntimeError: boom"),
        "new broker": ("500", "é"), "cluster (MT broker)": ("500", "no")}
    assert {n: sorted(x.triggers(TRIGGERS)) for n, x in got.items()} == {
        "old broker": ["bronze-on-alerts-staged"], "old function": ["split-on-object-created"],
        # the old refresh letter names no Trigger or Service: every Trigger its event matches (a replay through
        # the broker reaches both anyway)
        "old refresh": ["crossmatch-on-bronze-committed", "refresh-on-bronze-committed"],
        "new refresh": ["refresh-on-bronze-committed"], "new broker": ["bronze-on-alerts-staged"],
        "cluster (MT broker)": ["split-on-object-created"]}
    for x in got.values():  # the CloudEvent as delivered, nothing added, nothing lost
        assert x.event in (staged, created, committed)
    # what is stored is Knative's own encoding: base64 of the body
    stored = json.loads(lake.get_bytes(keys["new refresh"]))
    assert base64.b64decode(stored["knativeerrordata"]) == b"RuntimeError: boom"
    assert keys["new refresh"].startswith(rf.DEAD_LETTERS) and keys["cluster (MT broker)"].startswith(
        "dead-letter/split-on-object-created/")


def test_folder_for_a_knative_destination():
    assert deadletters.folder_for("http://broker-filter.knative-eventing.svc.cluster.local/triggers/ateda/"
                                  "bronze-on-alerts-staged/uid") == "bronze-on-alerts-staged"
    assert deadletters.folder_for("http://ateda-bronze.ateda.svc.cluster.local") == "ateda-bronze"
    assert deadletters.folder_for("http://127.0.0.1:8080/") == "unknown"
    assert deadletters.folder_for("") == "unknown"


def test_an_unreadable_letter_is_skipped_and_kept(lake):
    lake.put_bytes("dead-letter/x/20260101T000000-1.json", b"{not json")
    good = deadletters.write(lake, "x", _event(events.ALERTS_STAGED), "d", 500, "e")
    assert [x.key for x in deadletters.letters(lake)] == [good]
    assert deadletters.count(lake) == 2


def test_hostile_names_stay_one_segment_under_the_folder(tmp_path, lake):
    """An id, a type or a destination is data from the sender: never a path (fixed before: keep it so)."""
    hostile = ["../../../../escaped", "/etc/passwd", "a/b\nc", "..", "", "x" * 500]
    written = set()
    for name in hostile:
        event = _event(events.ALERTS_STAGED, id_=name)
        written.add(deadletters.write(lake, name, event, name, 500, "e"))
        written.add(deadletters.write(lake, deadletters.folder_for(f"http://f/triggers/ns/{name}/u"), event, name,
                                      500, "e"))
    assert written == set(deadletters.keys(lake)) and len(written) >= len(hostile)
    assert all(len(k.split("/")) == 3 and not {".", ".."} & set(k.split("/")) for k in written), written
    assert {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*") if p.is_file()} == {("lake", "dead-letter")}


def test_the_dead_letter_function_keeps_letters_in_the_one_format_with_hostile_names_inside(tmp_path, monkeypatch):
    home = tmp_path / "deep" / "er" / "home"
    monkeypatch.setenv("ATEDA_HOME", str(home))
    monkeypatch.setenv("ATEDA_METRICS_PORT", "0")
    settings.cache_clear()
    client = create_app("handle", str(REPO / "functions" / "dead_letter" / "main.py"), "cloudevent").test_client()
    cases = [("../../../../escaped", "../../../../x", "http://broker-filter.k.svc/triggers/ateda/../../../up/u"),
             (events.ALERTS_STAGED, "/etc/evil", "http://ateda-bronze.ateda.svc.cluster.local"),
             (events.ALERTS_STAGED, "plain-id-1", "http://broker-filter.knative-eventing.svc.cluster.local/triggers/"
                                                  "ateda/bronze-on-alerts-staged/uid")]
    for type_, id_, dest in cases:
        ce = CloudEvent({"type": type_, "source": "/test", "id": id_, "knativeerrordest": dest,
                         "knativeerrorcode": "500", "knativeerrordata": B64("TransientError: commit failed")},
                        {"k": 1})
        headers, body = to_binary(ce)
        assert client.post("/", headers=headers, data=body).status_code < 300
    lake = lake_store(settings())
    keys = deadletters.keys(lake)
    settings.cache_clear()
    assert len(keys) == 3 and all(len(k.split("/")) == 3 for k in keys), keys
    assert any(k.startswith("dead-letter/bronze-on-alerts-staged/") and k.endswith("-plain-id-1.json") for k in keys)
    assert any(k.startswith("dead-letter/ateda-bronze/") for k in keys)
    assert {p.relative_to(home).parts[:2] for p in tmp_path.rglob("*") if p.is_file()} == {("lake", "dead-letter")}
    letter = deadletters.read(lake, next(k for k in keys if k.endswith("-plain-id-1.json")))
    assert letter.error == "TransientError: commit failed" and letter.event["data"] == {"k": 1}
    assert json.loads(lake.get_bytes(letter.key))["knativeerrordata"] == B64("TransientError: commit failed")


# ---------------------------------------------------------------- status and replay


def test_status_counts_every_producers_letters_in_any_format(env_settings):
    lake = lake_store(env_settings)
    old_broker_letter(lake, _event(events.ALERTS_STAGED))
    old_function_letter(lake, _event(events.OBJECT_CREATED))
    old_refresh_letter(lake, _event(events.BRONZE_COMMITTED))
    deadletters.write(lake, rf.SUBSCRIBER, _event(events.BRONZE_COMMITTED), rf.FUNCTION, 500, "x")
    assert status(env_settings)["dead_letters"] == 4


def test_replay_trigger_names_a_knative_trigger_for_every_producers_letters(lake):
    """The same `--trigger` selects the local broker's, the cluster function's and the refresh worker's letters,
    in the new and the old formats; each event reaches the broker as delivered, without the error extensions."""
    sinks = {t.subscriber: Sink() for t in TRIGGERS}
    broker = Broker(TRIGGERS, {svc: s.base for svc, s in sinks.items()}, lake.root.parent / "spool",
                    lake).start()
    try:
        staged, created, committed = (_event(events.ALERTS_STAGED), _event(events.OBJECT_CREATED),
                                      _event(events.BRONZE_COMMITTED))
        old_broker_letter(lake, staged)
        deadletters.write(lake, "bronze-on-alerts-staged", staged, "http://127.0.0.1:9", 500, "x")
        old_function_letter(lake, created)
        deadletters.write(lake, deadletters.folder_for("http://ateda-split.ateda.svc.cluster.local"), created,
                          "http://ateda-split.ateda.svc.cluster.local", 500, "x")
        old_refresh_letter(lake, committed)
        deadletters.write(lake, rf.SUBSCRIBER, committed, rf.FUNCTION, 500, "x")
        replay = lambda trigger: deadletters.replay(lake, f"{broker.url}/ateda/ateda", trigger, triggers=TRIGGERS)  # noqa: E731

        assert replay("bronze-on-alerts-staged") == 2
        assert replay("split-on-object-created") == 2
        assert replay("refresh-on-bronze-committed") == 2
        assert deadletters.count(lake) == 0
        _idle(broker)
        got = {svc: [e["type"] for e in s.events] for svc, s in sinks.items()}
        assert got["ateda-bronze"] == [events.ALERTS_STAGED] * 2
        assert got["ateda-split"] == [events.OBJECT_CREATED] * 2
        assert got["ateda-dbt-refresh"] == [events.BRONZE_COMMITTED] * 2  # (crossmatch too: the broker fans out)
        for s in sinks.values():
            for e in s.events:
                assert not any(k.startswith("knativeerror") for k in e) and e["id"] in (
                    staged["id"], created["id"], committed["id"])
        # a name that is no Trigger selects its folder only (an old per-type folder, as `--trigger` matched before)
        old_function_letter(lake, _event(events.OBJECT_CREATED))
        deadletters.write(lake, "ateda-split", _event(events.OBJECT_CREATED), "d", 500, "x")
        assert replay(events.OBJECT_CREATED) == 1 and deadletters.count(lake) == 1
        assert replay(None) == 1 and deadletters.count(lake) == 0
    finally:
        broker.stop()
        for sub in sinks.values():
            sub.server.shutdown()


def _idle(broker: Broker, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not broker.idle():
        assert time.monotonic() < deadline, f"broker not idle after {timeout} s: {broker.backlog()}"
        time.sleep(0.02)


# ---------------------------------------------------------------- bronze's letter says the real cause


def test_a_bronze_letter_carries_the_real_cause_masked_not_flasks_generic_500(env_settings, sink, monkeypatch,
                                                                                tmp_path):
    password = "Sup3r-s3cret-pw"
    s = env_settings
    objects = put_alerts(s, alert_files()[:2])
    split = create_app("handle", str(REPO / "functions" / "split" / "main.py"), "cloudevent").test_client()
    ce = CloudEvent({"type": events.OBJECT_CREATED, "source": "/test"}, {"bucket": s.bucket, "objects": objects})
    headers, body = to_binary(ce)
    assert split.post("/", headers=headers, data=body).status_code == 200
    (staged,) = sink.of(events.ALERTS_STAGED)[:1]
    monkeypatch.setenv("ATEDA_CATALOG_URI", f"postgresql+psycopg2://ateda:{password}@127.0.0.1:{free_port()}/cat")
    settings.cache_clear()
    bronze = create_app("handle", str(REPO / "functions" / "bronze" / "main.py"), "cloudevent")
    server = make_server("127.0.0.1", 0, bronze, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trigger = next(t for t in TRIGGERS if t.name == "bronze-on-alerts-staged")
    trigger = replace(trigger, delivery=replace(trigger.delivery, retry=1))
    lake = lake_store(s)
    broker = Broker([trigger], {trigger.subscriber: f"http://127.0.0.1:{server.server_port}"}, tmp_path / "spool",
                    lake, backoff_scale=0.001).start()
    try:
        transport.post(f"{broker.url}/ateda/ateda", staged)
        _idle(broker, 60)
    finally:
        broker.stop()
        server.shutdown()
    (letter,) = deadletters.letters(lake)
    assert letter.key.startswith("dead-letter/bronze-on-alerts-staged/") and letter.code == "500"
    assert letter.error.startswith("TransientError: ") and "catalog" in letter.error, letter.error
    assert "Internal Server Error" not in letter.error
    assert password not in letter.error and "***" in letter.error
    assert letter.event["id"] == staged["id"] and letter.event["data"] == staged["data"]


def test_ateda_replay_command_selects_by_trigger_and_says_when_a_name_is_no_trigger(env_settings, capsys):
    import argparse

    from ateda.cli import lake as cli

    lake = lake_store(env_settings)
    old_refresh_letter(lake, _event(events.BRONZE_COMMITTED))
    old_function_letter(lake, _event(events.OBJECT_CREATED))
    sinks = {t.subscriber: Sink() for t in TRIGGERS}
    broker = Broker(TRIGGERS, {svc: s.base for svc, s in sinks.items()}, env_settings.home / "spool", lake).start()
    try:
        url = f"{broker.url}/ateda/ateda"
        assert cli.cmd_replay(argparse.Namespace(trigger="refresh-on-bronze-committed", broker=url), env_settings) == 0
        out = capsys.readouterr()
        assert f"replayed 1 event(s) to {url}" in out.out and not out.err
        assert cli.cmd_replay(argparse.Namespace(trigger=events.OBJECT_CREATED, broker=url), env_settings) == 0
        out = capsys.readouterr()
        assert "replayed 1 event(s)" in out.out and "is no Trigger in knative/" in out.err
        assert deadletters.count(lake) == 0
        _idle(broker)
        assert [e["type"] for e in sinks["ateda-dbt-refresh"].events] == [events.BRONZE_COMMITTED]
    finally:
        broker.stop()
        for sub in sinks.values():
            sub.server.shutdown()
