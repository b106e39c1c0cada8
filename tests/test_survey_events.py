"""The `survey` extension attribute: split stages one survey per chunk and says which on its alerts.staged event, so a
Trigger filtering on it routes one survey's chunks only (the local broker's filter code, as the Knative Broker's)."""

from __future__ import annotations

import io

import fastavro

from ateda.events import catalogue as events
from ateda.events.routing import Delivery, Trigger
from ateda.lake.storage import bucket_store, lake_store
from ateda.lsst import schemas
from ateda.steps.split import Splitter
from conftest import ALERTS, REAL_402


def _frame(record: dict, diasource_id: int) -> bytes:
    record = {**record, "diaSourceId": diasource_id, "diaSource": {**record["diaSource"], "diaSourceId": diasource_id}}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.schema(1101).parsed, record)
    return b"\0" + (1101).to_bytes(4, "big") + buf.getvalue()


def test_each_chunk_holds_one_survey_and_its_event_says_which(env_settings):
    s = env_settings
    with open(schemas.sample_files()["11.1"][0], "rb") as fh:
        sample = next(iter(fastavro.reader(fh)))
    store = bucket_store(s)
    names = {"a-ztf.avro": (ALERTS / REAL_402).read_bytes(), "b-rubin.bin": _frame(sample, 7),
             "c-rubin.bin": _frame(sample, 8), "d-ztf.avro": (ALERTS / REAL_402).read_bytes()}
    objects = [{"key": k, "etag": store.put_bytes(k, v)} for k, v in names.items()]  # surveys interleaved
    emitted: list[tuple[str, dict, str | None]] = []
    Splitter(s, store, lake_store(s), lambda t, d, subj, survey=None: emitted.append((t, d, survey))).run(
        s.bucket, objects)

    staged = [(d, survey) for t, d, survey in emitted if t == "dev.ateda.alerts.staged"]
    by_survey = {survey: sorted(src["key"] for d, sv in staged if sv == survey for src in d["sources"])
                 for _, survey in staged}
    assert by_survey == {"ztf": ["a-ztf.avro", "d-ztf.avro"], "lsst": ["b-rubin.bin", "c-rubin.bin"]}
    for data, survey in staged:  # the attribute agrees with the files: a chunk stages one survey's tables
        assert bool(data["files"].get("lsst_alert")) == (survey == "lsst")
        assert bool(data["files"]["alert"]) == (survey == "ztf")

    rubin_only = Trigger("t", "ateda", "ateda-x", ({"exact": {"type": "dev.ateda.alerts.staged", "survey": "lsst"}},),
                         Delivery())
    made = [events.make_event("dev.ateda.alerts.staged", "/ateda/split", d, d["chunk"], {events.SURVEY: sv})
            for d, sv in staged]
    assert [e["survey"] for e in made if rubin_only.matches(e)] == ["lsst"] * by_survey_count(staged, "lsst")
    untagged = events.make_event("dev.ateda.alerts.staged", "/ateda/split", staged[0][0], "x")
    assert "survey" not in untagged and not rubin_only.matches(untagged)


def by_survey_count(staged: list[tuple[dict, str]], survey: str) -> int:
    return sum(1 for _, sv in staged if sv == survey)


def test_extension_attribute_names_are_checked():
    for bad in ("Survey", "sur-vey", "type"):
        try:
            events.make_event("dev.ateda.alerts.staged", "/x", {}, None, {bad: "ztf"})
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted as an extension attribute name")
