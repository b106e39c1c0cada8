"""The event catalogue is the one source of truth, and the local broker routes exactly as the Triggers say."""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml

from ateda.events import catalogue as events

from ateda.events import transport
from ateda.events.routing import Delivery, Trigger, iso_seconds, knative_dir, load_triggers
from ateda.lake.storage import LocalStore
from ateda.local.broker import Broker
from conftest import REPO, Sink


def test_catalogue_schemas_and_examples_agree():
    catalog = yaml.safe_load((REPO / "events" / "catalog.yaml").read_text())
    types = [e["type"] for e in catalog["events"]]
    assert sorted(types) == sorted(events.TYPES)
    for t in types:
        example = json.loads((REPO / "events" / "examples" / f"{t}.json").read_text())
        assert example["type"] == t
        events.validate(example)


def test_validation_rejects_bad_data():
    example = json.loads((REPO / "events" / "examples" / f"{events.ALERTS_STAGED}.json").read_text())
    del example["data"]["sources"]
    with pytest.raises(Exception):
        events.validate(example)
    with pytest.raises(ValueError):
        events.validate({**example, "type": "dev.ateda.unknown"})


def test_triggers_from_the_knative_manifests():
    triggers = {t.name: t for t in load_triggers(knative_dir())}
    assert triggers["split-on-object-created"].subscriber == "ateda-split"
    assert triggers["bronze-on-alerts-staged"].subscriber == "ateda-bronze"
    for t in triggers.values():
        assert t.delivery.retry > 0 and t.delivery.dead_letter_sink == "ateda-dead-letter"
    staged = {"type": events.ALERTS_STAGED, "source": "/ateda/split"}
    assert [n for n, t in triggers.items() if t.matches(staged)] == ["bronze-on-alerts-staged"]
    assert not any(t.matches({"type": events.INPUT_REJECTED}) for t in triggers.values())
    # the crossmatch and the refresh take every survey's bronze commits (the crossmatch reads the attribute)
    for survey in ("ztf", "lsst", None):
        committed = events.make_event(events.BRONZE_COMMITTED, "/ateda/bronze", {}, extensions={events.SURVEY: survey})
        assert sorted(n for n, t in triggers.items() if t.matches(committed)) == [
            "crossmatch-on-bronze-committed", "refresh-on-bronze-committed"], survey


@pytest.mark.parametrize("filters, event, expected", [
    ([{"exact": {"type": "a.b"}}], {"type": "a.b"}, True),
    ([{"exact": {"type": "a.b"}}], {"type": "a.bc"}, False),
    ([{"prefix": {"type": "dev.ateda."}}], {"type": "dev.ateda.x"}, True),
    ([{"suffix": {"subject": ".tar.gz"}}], {"type": "t", "subject": "n.tar.gz"}, True),
    ([{"suffix": {"subject": ".tar.gz"}}], {"type": "t"}, False),
    ([{"all": [{"exact": {"type": "t"}}, {"prefix": {"source": "/ateda"}}]}], {"type": "t", "source": "/x"}, False),
    ([{"any": [{"exact": {"type": "t"}}, {"exact": {"type": "u"}}]}], {"type": "u"}, True),
    ([{"not": {"exact": {"type": "t"}}}], {"type": "u"}, True),
])
def test_filter_dialects(filters, event, expected):
    assert Trigger("t", "b", "svc", tuple(filters), Delivery()).matches(event) is expected


def test_delivery_backoff_as_knative_computes_it():
    assert iso_seconds("PT0.5S") == 0.5 and iso_seconds("PT1M") == 60
    d = Delivery(retry=3, backoff_policy="exponential", backoff_delay=0.5)
    assert [d.delay(i) for i in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert Delivery(backoff_policy="linear", backoff_delay=0.5).delay(3) == 1.5
    waits = [d.jittered(2) for _ in range(200)]  # retries of events that failed together spread out
    assert all(1.0 <= w < 3.0 for w in waits) and max(waits) - min(waits) > 1.0


def _broker(tmp_path, codes, retry=2):  # noqa: ANN001, ANN202
    sub = Sink(codes)
    trig = Trigger("to-sub", "ateda", "svc", ({"exact": {"type": "t.x"}},),
                   Delivery(retry=retry, backoff_delay=0.05, dead_letter_sink="dl"))
    lake = LocalStore(tmp_path / "lake")
    return Broker([trig], {"svc": sub.base}, tmp_path / "spool", lake).start(), sub, lake


def _send(broker: Broker, type_: str = "t.x") -> None:
    headers, body = transport.to_binary(events.make_event(type_, "/test", {"n": 1}))
    headers["authorization"] = f"Bearer {broker.token}"
    assert requests.post(f"{broker.url}/ateda/ateda", data=body, headers=headers).status_code == 202


def _wait(broker: Broker) -> None:
    deadline = time.monotonic() + 10
    while not broker.idle() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_broker_retries_5xx_with_backoff_then_delivers(tmp_path):
    broker, sub, lake = _broker(tmp_path, [503, 500, 200])
    _send(broker)
    _send(broker, "other.type")  # matches no Trigger: dropped
    _wait(broker)
    assert len(sub.calls) == 3
    gaps = [b - a for a, b in zip(sub.calls, sub.calls[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # 0.05 * 2^1, 0.05 * 2^2, each times a jitter in [0.5, 1.5)
    assert not list(lake.list("dead-letter/"))
    broker.stop()


def test_broker_dead_letters_after_retries_and_at_once_on_400(tmp_path):
    broker, sub, lake = _broker(tmp_path, [500, 500, 500, 400])
    _send(broker)
    _wait(broker)
    _send(broker)
    _wait(broker)
    assert len(sub.calls) == 4  # 1 + 2 retries, then a 400 is not retried
    letters = [json.loads(lake.get_bytes(i.key)) for i in lake.list("dead-letter/to-sub/")]
    assert sorted(x["knativeerrorcode"] for x in letters) == ["400", "500"]
    broker.stop()


def test_broker_spool_survives_a_restart(tmp_path):
    sub = Sink()
    trig = Trigger("to-sub", "ateda", "svc", ({"exact": {"type": "t.x"}},), Delivery())
    lake = LocalStore(tmp_path / "lake")
    first = Broker([trig], {"svc": "http://127.0.0.1:9"}, tmp_path / "spool", lake)  # never started delivering
    first.accept(events.make_event("t.x", "/test", {"n": 1}))
    first.server.server_close()
    second = Broker([trig], {"svc": sub.base}, tmp_path / "spool", lake).start()
    _wait(second)
    assert len(sub.calls) == 1
    second.stop()


def test_validating_broker_refuses_events_outside_the_catalogue(tmp_path):
    trig = Trigger("to-sub", "ateda", "svc", ({"exact": {"type": events.ALERTS_STAGED}},), Delivery())
    broker = Broker([trig], {"svc": "http://127.0.0.1:9"}, tmp_path / "spool", LocalStore(tmp_path / "lake"),
                    validate=True).start()
    headers, body = transport.to_binary(events.make_event(events.ALERTS_STAGED, "/test", {"chunk": "nope"}))
    headers["authorization"] = f"Bearer {broker.token}"
    resp = requests.post(f"{broker.url}/ateda/ateda", data=body, headers=headers)
    assert resp.status_code == 400 and "required" in resp.text
    assert broker.backlog() == {"to-sub": 0}
    broker.stop()
