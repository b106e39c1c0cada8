"""Both modes route identically: the local broker (ateda.events.routing + ateda.local.broker) and Knative read the same Trigger
YAML, and for a table of events they pick the same subscribers.

(a) is an independent evaluation of the Trigger ``filters`` as the Knative docs describe them (eventing "Triggers":
filters is a list that must all pass, each one of exact / prefix / suffix with one attribute, all / any over a list,
not over one filter; an absent attribute never matches exact/prefix/suffix; an empty ``filters`` matches everything;
the legacy ``filter.attributes`` is only used when ``filters`` is empty, and a "" value there means any value), written
here without ateda.events.routing. (b) is the real Broker over HTTP, delivering to recording subscriber servers.
"""

from __future__ import annotations

import ast
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ateda.config import Settings
from ateda.events import transport
from ateda.events.routing import load_triggers
from ateda.lake.storage import lake_store
from ateda.local.broker import Broker
from conftest import REPO, Sink

KNATIVE = REPO / "knative"
CATALOG = yaml.safe_load((REPO / "events" / "catalog.yaml").read_text())["events"]
CATALOG_TYPES = [e["type"] for e in CATALOG]


# ---------------------------------------------------------------------------------------------------------------
# (a) Knative's semantics, straight from the docs


def knative_match(flt: dict, event: dict) -> bool:
    assert len(flt) == 1, f"one dialect per filter expression: {flt}"
    [(dialect, arg)] = flt.items()
    if dialect in ("exact", "prefix", "suffix"):
        assert isinstance(arg, dict) and len(arg) == 1, f"{dialect} takes exactly one attribute: {arg}"
        [(attr, want)] = arg.items()
        if attr not in event:
            return False
        have = str(event[attr])
        return {"exact": have == want, "prefix": have.startswith(want), "suffix": have.endswith(want)}[dialect]
    if dialect == "all":
        return all(knative_match(f, event) for f in arg)
    if dialect == "any":
        return any(knative_match(f, event) for f in arg)
    if dialect == "not":
        return not knative_match(arg, event)
    raise AssertionError(f"not a Knative filter dialect: {dialect}")


def knative_subscribers(docs: list[dict], event: dict) -> set[str]:
    out = set()
    for doc in docs:
        spec = doc["spec"]
        filters = spec.get("filters") or []
        if filters:
            ok = all(knative_match(f, event) for f in filters)
        else:  # legacy filter: every attribute must equal, "" accepts any value; no filter at all passes everything
            attrs = (spec.get("filter") or {}).get("attributes") or {}
            ok = all(k in event and (v == "" or str(event[k]) == v) for k, v in attrs.items())
        if ok:
            out.add(spec["subscriber"]["ref"]["name"])
    return out


def trigger_docs(folder: Path) -> list[dict]:
    return [d for p in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d and d.get("kind") == "Trigger"]


def test_the_reference_evaluator_follows_the_docs():
    ev = {"type": "dev.ateda.object.created", "source": "/ateda/watcher", "night": "20240101"}
    assert knative_match({"exact": {"type": "dev.ateda.object.created"}}, ev)
    assert not knative_match({"exact": {"type": "dev.ateda.object"}}, ev)
    assert knative_match({"prefix": {"type": "dev.ateda."}}, ev) and not knative_match({"prefix": {"type": "DEV."}}, ev)
    assert knative_match({"suffix": {"night": "0101"}}, ev) and not knative_match({"suffix": {"missing": ""}}, ev)
    assert knative_match({"not": {"exact": {"missing": "x"}}}, ev)
    assert knative_match({"any": [{"exact": {"type": "x"}}, {"prefix": {"source": "/ateda"}}]}, ev)
    assert not knative_match({"all": [{"exact": {"type": "x"}}, {"prefix": {"source": "/ateda"}}]}, ev)
    with pytest.raises(AssertionError):
        knative_match({"exact": {"type": "a", "source": "b"}}, ev)


# ---------------------------------------------------------------------------------------------------------------
# The event table


def event(type_: str, **ext: str) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": ext.pop("source", "/ateda/test"),
            "type": type_, "datacontenttype": "application/json", "data": {"probe": True}, **ext}


def event_table() -> list[dict]:
    table = [event(t) for t in CATALOG_TYPES]
    table += [event(t, subject="ztf_20240101_programid1.avro", night="20240101") for t in CATALOG_TYPES]
    table += [event(t, knativeerrordest="http://x", knativeerrorcode="500", source="/ateda/replay")
              for t in CATALOG_TYPES]
    table += [event(t) for t in (
        "dev.ateda.object.created.v2", "dev.ateda.object", "DEV.ATEDA.OBJECT.CREATED", "dev.ateda.unknown",
        "com.example.object.created", "dev.knative.sources.ping", "io.min.s3.ObjectCreated:Put")]
    table += [event("dev.ateda.object.created", source="/ateda/minio-bridge", bucket="alerts"),
              event("dev.ateda.alerts.staged", night="20240102", priority="high"),
              event("dev.ateda.bronze.committed", tablename="alert")]
    return table


# Every dialect, on type, source and extension attributes: proves the local evaluator beyond the plain exact filters
# the repository's own Triggers use.
SYNTHETIC = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-exact, namespace: ateda}
spec:
  broker: ateda
  filters: [{exact: {type: dev.ateda.alerts.staged}}]
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-exact}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-prefix-ext, namespace: ateda}
spec:
  broker: ateda
  filters: [{prefix: {type: dev.ateda.}}, {exact: {night: "20240101"}}]
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-prefix-ext}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-suffix, namespace: ateda}
spec:
  broker: ateda
  filters: [{suffix: {type: .created}}]
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-suffix}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-any-not, namespace: ateda}
spec:
  broker: ateda
  filters:
    - any: [{exact: {type: dev.ateda.input.rejected}}, {prefix: {source: /ateda/replay}}]
    - not: {exact: {knativeerrorcode: "500"}}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-any-not}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-all, namespace: ateda}
spec:
  broker: ateda
  filters:
    - all: [{prefix: {type: dev.ateda.}}, {not: {suffix: {type: .created}}}, {not: {exact: {priority: high}}}]
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-all}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-legacy, namespace: ateda}
spec:
  broker: ateda
  filter: {attributes: {type: dev.ateda.bronze.committed}}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-legacy}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t-everything, namespace: ateda}
spec:
  broker: ateda
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s-everything}}
"""


# ---------------------------------------------------------------------------------------------------------------
# (b) the local broker, over HTTP


def broker_subscribers(folder: Path, table: list[dict], home: Path) -> dict[str, set[str]]:
    """Event id -> Knative Services the real Broker delivered it to."""
    triggers = load_triggers(folder)
    names = {t.subscriber for t in triggers}
    sinks = {n: Sink() for n in names}
    lake = lake_store(Settings(home=home).resolved())
    broker = Broker(triggers, {n: s.base for n, s in sinks.items()}, home / "spool", lake).start()
    try:
        for e in table:
            transport.post(f"{broker.url}/ateda/ateda", e)
        deadline = time.monotonic() + 20
        while not broker.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.idle(), broker.backlog()
        got: dict[str, set[str]] = {e["id"]: set() for e in table}
        for name, s in sinks.items():
            for e in s.events:
                got[e["id"]].add(name)
        for e in (e for s in sinks.values() for e in s.events):  # what arrived is what was sent
            sent = next(x for x in table if x["id"] == e["id"])
            assert {k: v for k, v in e.items() if k in sent} == sent
        return got
    finally:
        broker.stop()
        for s in sinks.values():
            s.server.shutdown()


def assert_parity(folder: Path, tmp_path: Path) -> dict[str, set[str]]:
    table = event_table()
    docs = trigger_docs(folder)
    want = {e["id"]: knative_subscribers(docs, e) for e in table}
    got = broker_subscribers(folder, table, tmp_path)
    diff = [f"{e['type']!r} {sorted(k for k in e if k not in ('id', 'data'))}: knative {sorted(want[e['id']])}, "
            f"local {sorted(got[e['id']])}" for e in table if want[e["id"]] != got[e["id"]]]
    assert not diff, "local routing differs from Knative's:\n" + "\n".join(diff)
    return table, want


def test_local_broker_routes_the_repository_triggers_like_knative(tmp_path):
    table, want = assert_parity(KNATIVE, tmp_path)
    by_type = {}
    for e in table:
        by_type.setdefault(e["type"], set()).update(want[e["id"]])
    assert by_type["dev.ateda.object.created"] == {"ateda-split"}
    assert by_type["dev.ateda.alerts.staged"] == {"ateda-bronze"}
    assert not by_type["com.example.object.created"] and not by_type["dev.ateda.object.created.v2"]


def test_local_broker_routes_every_filter_dialect_like_knative(tmp_path):
    folder = tmp_path / "knative"
    folder.mkdir()
    (folder / "40-triggers.yaml").write_text(SYNTHETIC)
    _, want = assert_parity(folder, tmp_path / "home")
    hit = set().union(*want.values())
    assert hit == {d["spec"]["subscriber"]["ref"]["name"] for d in trigger_docs(folder)}, "a synthetic Trigger never matched"
    assert any(not v - {"s-everything"} for v in want.values()), "some event must match only the catch-all"


# ---------------------------------------------------------------------------------------------------------------
# The Trigger graph


def knative_docs() -> list[dict]:
    return [d for p in sorted(KNATIVE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def test_every_trigger_subscriber_and_dead_letter_sink_is_a_knative_service_defined_here():
    services = {(d["metadata"]["name"], d["metadata"].get("namespace")) for d in knative_docs()
                if d["kind"] == "Service" and d["apiVersion"] == "serving.knative.dev/v1"}
    triggers = [d for d in knative_docs() if d["kind"] == "Trigger"]
    assert triggers
    for t in triggers:
        ns = t["metadata"]["namespace"]
        refs = [t["spec"]["subscriber"]["ref"]]
        dls = ((t["spec"].get("delivery") or {}).get("deadLetterSink") or {}).get("ref")
        refs += [dls] if dls else []
        for ref in refs:
            assert ref["kind"] == "Service" and ref["apiVersion"] == "serving.knative.dev/v1", (t["metadata"]["name"], ref)
            assert (ref["name"], ref.get("namespace", ns)) in services, f"{t['metadata']['name']}: no Service {ref['name']}"


def emitted_types() -> set[str]:
    """Event types the code emits: string constants that are exactly a dev.ateda.* type (docstrings are longer)."""
    out = set()
    for path in [*REPO.glob("functions/*/main.py"), *(REPO / "shared" / "ateda").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.startswith("dev.ateda.") and " " not in node.value and node.value.count(".") >= 3:
                out.add(node.value)
    return out


# Emitted types documented as consumed whose Trigger is knowingly missing (type -> why). Fails once one gets a
# Trigger, so this can only shrink.
PENDING_SUBSCRIBERS: dict[str, str] = {}


def test_every_emitted_type_has_a_subscriber_or_is_documented_terminal():
    emitted = emitted_types()
    assert {"dev.ateda.object.created", "dev.ateda.alerts.staged", "dev.ateda.input.rejected"} <= emitted
    assert emitted <= set(CATALOG_TYPES), f"emitted but not in events/catalog.yaml: {emitted - set(CATALOG_TYPES)}"
    terminal = {e["type"] for e in CATALOG if not e.get("consumed_by")}
    assert "dev.ateda.input.rejected" in terminal
    docs = trigger_docs(KNATIVE)
    orphans = sorted(t for t in emitted - terminal if not knative_subscribers(docs, event(t)))
    unexpected = [t for t in orphans if t not in PENDING_SUBSCRIBERS]
    assert not unexpected, f"emitted, documented as consumed, but no Trigger in knative/ subscribes: {unexpected}"
    done = sorted(set(PENDING_SUBSCRIBERS) - set(orphans))
    assert not done, f"now subscribed: remove from PENDING_SUBSCRIBERS: {done}"
