"""Bronze under concurrency and bad input: exactly once with several committers on one catalog (SQLite and a real
PostgreSQL), a replay long after the crash it repairs, poison chunks isolated, creation races, ingest's ledger poll
through a catalog outage. Review 3.4, 3.6, 3.7, 3.8."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from ateda.config import Settings
from ateda.errors import TransientError
from ateda.ingest import _LedgerFollower
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.storage import bucket_store, lake_store
from ateda.steps import bronze as bz
from ateda.steps.bronze import Chunk, GroupCommitter
from ateda.steps.split import Splitter
from conftest import HALF_BROKEN, alert_files, expected_alerts

SPAWN = mp.get_context("spawn")



def make_settings(tmp_path: Path, catalog_uri: str = "", **kw) -> Settings:
    extra = {"catalog_uri": catalog_uri} if catalog_uri else {}
    return Settings(home=tmp_path / "home", **{"commit_window_ms": 100, **extra, **kw}).resolved()


def stage(s: Settings, files: list[Path], group: int, offset: int = 0) -> list[dict]:
    """Put ``files`` in the bucket (idempotent: same key, same ETag) and split them with the real Splitter, ``group``
    objects per request starting at ``offset``: other groupings give other chunks over the same parts."""
    store = bucket_store(s)
    objects = [{"key": f.name, "etag": store.put_bytes(f.name, f.read_bytes())} for f in files]
    objects = objects[offset:] + objects[:offset]
    staged: list[dict] = []
    emit = (lambda t, d, subject, survey=None: staged.append(d) if t.endswith("alerts.staged") else None)
    for i in range(0, len(objects), group):
        Splitter(s, store, lake_store(s), emit).run(s.bucket, objects[i:i + group])
    return staged


def tables(s: Settings) -> dict:
    return ensure_tables(load_catalog(s), s)


def check_exact(s: Settings, files: list[Path], chunks: list[dict]) -> None:
    """Every (key, candid) once in bronze.alert, every stamp once in bronze.cutout, one ledger row per part."""
    t = tables(s)
    expected = expected_alerts(files)
    alerts = t["alert"].scan(selected_fields=("source_key", "candid")).to_arrow()
    got = Counter(zip(alerts["source_key"].to_pylist(), alerts["candid"].to_pylist()))
    want = Counter((k, c) for k, cs in expected.items() for c in cs)
    assert got == want, f"duplicates: {sum(n - 1 for n in got.values() if n > 1)}, missing: {len(want - got)}"
    cut = t["cutout"].scan(selected_fields=("source_key", "candid", "kind")).to_arrow()
    per_stamp = Counter(zip(*(cut[c].to_pylist() for c in ("source_key", "candid", "kind"))))
    assert per_stamp and max(per_stamp.values()) == 1
    assert set(per_stamp) == expected_stamps(files)
    ledger = t["ingest_ledger"].scan().to_arrow()
    parts = list(zip(*(ledger[c].to_pylist() for c in ("source_bucket", "source_key", "source_etag", "part"))))
    assert len(parts) == len(set(parts))
    assert set(parts) == {(x["bucket"], x["key"], x["etag"], x["part"]) for c in chunks for x in c["sources"]}


def expected_stamps(files: list[Path]) -> set[tuple[str, int, str]]:
    """Independent count of the cutouts: (file, candid, kind) of every stamp present, straight from fastavro."""
    import fastavro

    out = set()
    for f in files:
        with open(f, "rb") as fh:
            try:
                for rec in fastavro.reader(fh):
                    for field, kind in (("cutoutScience", "science"), ("cutoutTemplate", "template"),
                                        ("cutoutDifference", "difference")):
                        if rec.get(field):
                            out.add((f.name, rec["candidate"]["candid"], kind))
            except EOFError:
                pass
    return out


def _committer(s: Settings, chunks: list[dict], start_at: float, out) -> None:  # noqa: ANN001
    """One bronze process: its own GroupCommitter, its chunks submitted from 4 threads (they share batches)."""
    committer = GroupCommitter(s)
    errors: list[str] = []

    def run(mine: list[dict]) -> None:
        for data in mine:
            for _ in range(20):  # as the broker retries a 500
                try:
                    committer.submit(Chunk.from_event(data))
                    break
                except TransientError as exc:
                    errors.append(str(exc)[:200])
                    time.sleep(0.2)
            else:
                raise RuntimeError("chunk never committed")

    time.sleep(max(0.0, start_at - time.time()))
    threads = [threading.Thread(target=run, args=(chunks[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(errors)


def run_committers(s: Settings, per_process: list[list[dict]]) -> list[list[str]]:
    out = SPAWN.Queue()
    start_at = time.time() + 4.0  # every process has imported and is waiting: they really race
    procs = [SPAWN.Process(target=_committer, args=(s, chunks, start_at, out)) for chunks in per_process]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


@pytest.mark.slow
@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
@pytest.mark.parametrize("n", [2, 3])
def test_concurrent_committers_commit_every_part_exactly_once(tmp_path, request, catalog, n):
    uri = request.getfixturevalue("pg_uri") if catalog == "postgresql" else ""
    s = make_settings(tmp_path, uri)
    files = [f for f in alert_files() if f.name not in HALF_BROKEN][:90]
    # each process sees the same objects split differently (like two `ateda ingest` of overlapping inputs)
    per_process = [stage(s, files, group=5 + 2 * i, offset=7 * i) for i in range(n)]
    assert len({c["chunk"] for c in per_process[0]} & {c["chunk"] for c in per_process[1]}) < len(per_process[0])
    run_committers(s, per_process)
    check_exact(s, files, [c for chunks in per_process for c in chunks])


@pytest.mark.slow
def test_replay_after_100_commits_repairs_a_crash_between_data_and_ledger(tmp_path, monkeypatch):
    s = make_settings(tmp_path)
    files = [f for f in alert_files() if f.name not in HALF_BROKEN]
    victim = stage(s, files[:8], group=8)
    others = stage(s, files[8:108], group=1)  # one chunk per file: 100 separate batches
    assert len(victim) == 1 and len(others) == 100

    real = GroupCommitter._commit_ledger

    def crash(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        raise TransientError("killed between the data commits and the ledger commit")

    monkeypatch.setattr(GroupCommitter, "_commit_ledger", crash)
    with pytest.raises(TransientError):
        GroupCommitter(s).submit(Chunk.from_event(victim[0]))
    monkeypatch.setattr(GroupCommitter, "_commit_ledger", real)
    assert tables(s)["alert"].scan().to_arrow().num_rows > 0  # the data landed, the ledger did not

    committer = GroupCommitter(s)
    for data in others:
        committer.submit(Chunk.from_event(data))
    assert len(tables(s)["alert"].metadata.snapshots) >= 101
    # the replay, by a fresh process's committer: nothing duplicated, the ledger completed
    result = GroupCommitter(s).submit(Chunk.from_event(victim[0]))
    assert not result.duplicate and result.rows["alert"] == 0 and result.rows["ingest_ledger"] == 8
    assert GroupCommitter(s).submit(Chunk.from_event(victim[0])).duplicate
    check_exact(s, files[:108], victim + others)


def test_data_left_by_a_committer_that_never_came_back_enters_the_ledger(tmp_path, monkeypatch):
    s = make_settings(tmp_path)
    files = [f for f in alert_files() if f.name not in HALF_BROKEN][:12]
    first, second = stage(s, files[:6], group=6), stage(s, files[6:], group=6)
    monkeypatch.setattr(GroupCommitter, "_commit_ledger", lambda *a, **kw: (_ for _ in ()).throw(OSError("kill")))
    with pytest.raises(TransientError):
        GroupCommitter(s).submit(Chunk.from_event(first[0]))
    monkeypatch.undo()
    monkeypatch.setattr(bz, "RECOVER_AFTER_S", 0.0)  # the first committer's data is now "old"
    GroupCommitter(s).submit(Chunk.from_event(second[0]))
    check_exact(s, files, first + second)  # its parts were recorded by the next committer
    led = tables(s)["ingest_ledger"]
    assert {k.split(".")[-1] for k in led.metadata.properties if k.startswith("ateda.covered.")} == {"alert", "cutout"}
    assert GroupCommitter(s).submit(Chunk.from_event(first[0])).duplicate


# -- poison chunks


def _poison(s: Settings, data: dict, name: str, transform) -> dict:  # noqa: ANN001
    """A copy of a staged chunk whose alert Parquet is replaced by ``transform(table)``: same parts, new chunk."""
    lake = lake_store(s)
    chunk = uuid.uuid4().hex[:20]
    out = json.loads(json.dumps(data))
    out["chunk"] = chunk
    out["files"] = {"alert": [], "cutout": []}
    for uri in data["files"]["alert"]:
        sink = io.BytesIO()
        pq.write_table(transform(pq.read_table(uri)), sink)
        key = f"staging/{chunk}/{name}/{Path(uri).name}"
        lake.put_bytes(key, sink.getvalue())
        out["files"]["alert"].append(lake.uri(key))
    out["files"]["cutout"] = list(data["files"]["cutout"])
    return out


def candidate_as_long(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("candidate")
    return table.set_column(i, "candidate", pa.array(range(table.num_rows), pa.int64()))


def deep_column(table: pa.Table) -> pa.Table:
    typ: pa.DataType = pa.int64()
    for _ in range(300):
        typ = pa.struct([("x", typ)])
    return table.append_column("deep", pa.array([None] * table.num_rows, typ))


def _submit_together(committer: GroupCommitter, chunks: list[dict]) -> list:
    results: list = [None] * len(chunks)

    def run(i: int) -> None:
        try:
            results[i] = committer.submit(Chunk.from_event(chunks[i]))
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def rejected_count() -> float:
    return REGISTRY.get_sample_value("ateda_rejected_total", {"function": "bronze", "reason": "schema_conflict"}) or 0


def test_poison_chunks_are_quarantined_and_their_batch_commits(tmp_path):
    s = make_settings(tmp_path, commit_window_ms=1000)
    files = [f for f in alert_files() if f.name not in HALF_BROKEN][:40]
    GroupCommitter(s).submit(Chunk.from_event(stage(s, files[:4], group=4)[0]))  # the table has its schema
    good = stage(s, files[4:28], group=4)
    bad_src = stage(s, files[28:], group=6)
    poison = [_poison(s, bad_src[0], "long", candidate_as_long), _poison(s, bad_src[1], "deep", deep_column)]
    before = rejected_count()
    committer = GroupCommitter(s)
    results = _submit_together(committer, good + poison)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert [r.rejected is None for r in results] == [True] * len(good) + [False, False]
    assert {len(r.chunks) for r in results[:len(good)]} != {1}  # the goods did share batches with the poison
    assert rejected_count() - before == 2
    check_exact(s, files[:28], good + stage(s, files[:4], group=4))
    lake = lake_store(s)
    for data, r in zip(poison, results[len(good):]):
        rec = json.loads(lake.get_bytes(f"quarantine/schema_conflict/bronze/{bz.segment(data['chunk'])}.reason.json"))
        assert rec == r.rejected and rec["reason"] == "schema_conflict" and rec["chunk"] == data["chunk"]
        assert rec["staged_files"] == data["files"] and rec["quarantine_uri"]
        assert {x["key"] for x in rec["sources"]} == {x["key"] for x in data["sources"]}
    assert "deeply nested" in results[-1].rejected["detail"]
    # `ateda ingest` waiting on those objects is not left hanging: their parts count as rejected
    from ateda.ingest import Uploaded, wait_committed

    refused = {(x["key"], x["etag"]) for d in poison for x in d["sources"]}
    got = wait_committed(s, [Uploaded(k, e, 0) for k, e in sorted(refused)], timeout=30)
    assert all(any(r["reason"] == "schema_conflict" for r in v["rejected"]) for v in got.values())
    # a replay (dead letter re-sent) is success at once, and the poison never reaches the tables
    replayed = _submit_together(GroupCommitter(s), poison + stage(s, files[4:8], group=4))
    assert all(r.rejected is not None and r.duplicate for r in replayed[:2]) and replayed[2].duplicate
    assert rejected_count() - before == 2
    check_exact(s, files[:28], good + stage(s, files[:4], group=4))


def test_catalog_down_is_transient_not_poison(tmp_path):
    from ateda.local.runtime import free_port

    s = make_settings(tmp_path, f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing")
    data = stage(s, [f for f in alert_files() if f.name not in HALF_BROKEN][:3], group=3)[0]
    with pytest.raises(TransientError):
        GroupCommitter(s).submit(Chunk.from_event(data))
    assert not list(lake_store(s).list(bz.QUARANTINE_PREFIX))


def test_a_staged_file_outside_the_lake_is_refused(tmp_path):
    s = make_settings(tmp_path)
    data = stage(s, [f for f in alert_files() if f.name not in HALF_BROKEN][:3], group=3)[0]
    data["files"]["alert"] = [str(tmp_path / "elsewhere.parquet")]
    result = GroupCommitter(s).submit(Chunk.from_event(data))
    assert result.rejected["reason"] == "unsafe_key"
    assert tables(s)["alert"].scan().to_arrow().num_rows == 0


# -- creation races, ingest through an outage


def _create(s: Settings, start_at: float, out) -> None:  # noqa: ANN001
    time.sleep(max(0.0, start_at - time.time()))
    try:
        t = ensure_tables(load_catalog(s), s)
        out.put(sorted((n, len(tb.spec().fields)) for n, tb in t.items()))
    except Exception as exc:  # noqa: BLE001
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_concurrent_table_creation_on_a_fresh_catalog_is_harmless(tmp_path, request, catalog):
    uri = request.getfixturevalue("pg_uri") if catalog == "postgresql" else ""
    s = make_settings(tmp_path, uri)
    s.home.mkdir(parents=True)  # as `ateda ingest` / `ateda up` leave it; the catalog database is not there yet
    out = SPAWN.Queue()
    start_at = time.time() + 3.0
    procs = [SPAWN.Process(target=_create, args=(s, start_at, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert results == [[("alert", 1), ("cutout", 1), ("ingest_ledger", 0)]] * 4, results


def test_ingest_ledger_poll_survives_a_catalog_outage(tmp_path):
    s = make_settings(tmp_path)
    data = stage(s, [f for f in alert_files() if f.name not in HALF_BROKEN][:3], group=3)[0]
    GroupCommitter(s).submit(Chunk.from_event(data))
    follower = _LedgerFollower(s)
    known = follower.parts_or_last()
    assert len(known) == 3
    db = Path(s.catalog_uri.removeprefix("sqlite:///"))
    saved = db.read_bytes()
    db.write_bytes(b"this is not a database" * 100)  # the catalog is unreadable (the same file, open connections)
    try:
        with pytest.raises(TransientError):
            _LedgerFollower(s).parts()
        assert follower.parts_or_last() == known and follower.outages == 1 and follower.poll_s > 0.5
        follower.parts_or_last()
        assert follower.outages == 2
    finally:
        db.write_bytes(saved)
    assert follower.parts_or_last() == known and follower.outages == 0 and follower.poll_s == 0.5
