"""End to end through real HTTP servers (functions-framework/gunicorn), the local broker and the bucket watcher."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import fastavro
import pytest

from ateda.config import RefreshSettings, Settings
from ateda.ingest import IngestFailed, run_ingest
from ateda.lake.storage import lake_store
from ateda.local.runtime import Runtime
from conftest import DAMAGED_TAIL, HALF_BROKEN, alert_files, bronze, check_bronze, check_cutouts, expected_alerts

OTHER_SCHEMA = {"type": "record", "name": "Weather", "fields": [{"name": "city", "type": "string"},
                                                                 {"name": "celsius", "type": "double"}]}


def bad_inputs(folder: Path) -> dict[str, str]:
    """Writes one file per bad-input case; returns expected reason by file name (tar members: 'tar#member')."""
    folder.mkdir(parents=True, exist_ok=True)
    real = alert_files()[-1].read_bytes()
    (folder / "empty.avro").write_bytes(b"")
    (folder / "notes.avro").write_bytes(b"observing log, not an alert\n" * 10)
    (folder / "truncated.avro").write_bytes(real[: len(real) // 2])
    buf = io.BytesIO()
    fastavro.writer(buf, OTHER_SCHEMA, [{"city": "Palomar", "celsius": 11.5}])
    (folder / "weather.avro").write_bytes(buf.getvalue())
    corrupt = bytearray(real)
    for i in range(len(corrupt) // 3, len(corrupt) // 3 + 64):
        corrupt[i] ^= 0xFF
    (folder / "corrupt.avro").write_bytes(bytes(corrupt))
    return {"empty.avro": "empty_file", "notes.avro": "not_avro", "truncated.avro": "truncated_avro",
            "weather.avro": "not_ztf_alert", "corrupt.avro": "*"}


def nightly_tarball(path: Path, files: list[Path]) -> dict[str, str]:
    """A ztf_public-style .tar.gz of real alerts plus junk members; returns expected reasons by member."""
    with tarfile.open(path, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f"ztf_public/{f.name}")
        for name, data in (("ztf_public/README.txt", b"not an alert"), ("ztf_public/cut.avro", files[0].read_bytes()[:900])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"ztf_public/README.txt": "not_avro", "ztf_public/cut.avro": "truncated_avro"}


def wait_idle(rt: Runtime, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if rt.idle() else 0
        if quiet >= 10:  # the watcher scans every 0.2 s: 2 s of an idle broker means nothing is in flight
            return
        time.sleep(0.2)
    raise TimeoutError("pipeline did not go idle")


def check_cli(s: Settings, files: list[Path], tmp_path: Path) -> None:
    """`ateda cutout` writes FITS byte-identical to the decompressed stamps; `ateda status --json` is true."""
    env = {**os.environ, "ATEDA_HOME": str(s.home)}
    alert = next(fastavro.reader(open(files[-1], "rb")))
    candid = alert["candidate"]["candid"]
    run = subprocess.run([sys.executable, "-m", "ateda.cli", "cutout", str(candid), "-o", str(tmp_path / "fits")],
                         env=env, capture_output=True, text=True, check=True)
    assert len(run.stdout.split()) == 3
    for field, kind in (("cutoutScience", "science"), ("cutoutDifference", "difference")):
        fits = (tmp_path / "fits" / f"{candid}_{kind}.fits").read_bytes()
        assert fits == gzip.decompress(alert[field]["stampData"])
    status = json.loads(subprocess.run([sys.executable, "-m", "ateda.cli", "status", "--json"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert status["tables"]["bronze.alert"]["rows"] == bronze(s)["alert"].scan().count()
    assert status["backlog"] is not None and status["quarantined"] >= 8


@pytest.fixture
def local_settings(tmp_path) -> Settings:
    # small chunks: the test tarball (42 members) fans out into parts, single files make many chunks
    return Settings(home=tmp_path / "home", commit_window_ms=300, chunk_alerts=16).resolved()


def test_local_end_to_end_every_real_alert_bad_input_and_duplicates(local_settings, tmp_path):
    s = local_settings
    files = alert_files()
    tar_files = [f for f in files if f.name not in HALF_BROKEN and f.name != DAMAGED_TAIL][:40]
    tar = tmp_path / "in" / "ztf_public_20181120.tar.gz"
    tar.parent.mkdir()
    tar_reasons = nightly_tarball(tar, tar_files)
    bad = bad_inputs(tmp_path / "bad")
    expected = expected_alerts(files)
    # every event is delivered twice, and every event any function emits is validated against events/
    with Runtime(s, duplicate_deliveries=True, validate_events=True) as rt:
        summary = run_ingest(s, [*files, tar, tmp_path / "bad"], quiet=True, timeout=300, bronze_only=True)
        check_bronze(s, expected, tar.name, tar_files)
        assert len(list(lake_store(s).list("staging/raw/"))) == 3, "the 42-member tarball fans out in 3 parts"
        assert summary.alerts == sum(len(c) for c in expected.values()) + sum(len(expected[f.name]) for f in tar_files)
        reasons = {(r["key"] + ("#" + r["member"] if r["member"] else "")): r["reason"] for r in summary.rejected}
        for name, reason in bad.items():
            key = f"bad/{name}"  # a folder argument's files are keyed by the folder's name and their path in it
            assert reasons.pop(key) in ({"truncated_avro", "corrupt_avro"} if reason == "*" else {reason}), key
        for member, reason in tar_reasons.items():
            assert reasons.pop(f"{tar.name}#{member}") == reason
        # the damaged tail: its sync marker is broken; the Fink samples: their history is unreadable (candidate kept)
        assert reasons == {DAMAGED_TAIL: "corrupt_avro", **{k: "unreadable_history" for k in HALF_BROKEN}}
        versions = set(bronze(s)["alert"].scan(selected_fields=("schemavsn",)).to_arrow()["schemavsn"].to_pylist())
        assert {None, "2.0", "3.0", "3.1", "3.2", "3.3", "3.5", "4.01", "4.02"} <= versions
        check_cutouts(s, files)
        check_cli(s, files, tmp_path)
        counts = {n: t.scan().count() for n, t in bronze(s).items()}

        # everything ingested again: identical files re-uploaded under the same keys
        again = run_ingest(s, [*files, tar], quiet=True, timeout=300, bronze_only=True)
        assert again.alerts == summary.alerts - 0  # the summary counts what bronze holds for these objects
        announced = rt.watcher.announced_count
        for f in files[:50]:  # and touched files are announced again by the watcher
            os.utime(s.bucket_root / s.bucket / f.name)
        deadline = time.monotonic() + 30
        while rt.watcher.announced_count < announced + 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rt.watcher.announced_count >= announced + 50
        wait_idle(rt)
        assert {n: t.scan().count() for n, t in bronze(s).items()} == counts


def test_transient_failure_retries_dead_letters_and_replays(tmp_path):
    from ateda.local.broker import replay

    good = Settings(home=tmp_path / "home", commit_window_ms=100).resolved()
    down = Settings(home=good.home, lake=good.lake, warehouse=good.warehouse,
                    catalog_uri="postgresql+psycopg2://nobody@127.0.0.1:1/none").resolved()
    files = alert_files()[:5]
    lake = lake_store(down)
    with Runtime(down, backoff_scale=0.01) as rt:
        with pytest.raises(IngestFailed, match="dead-lettered"):  # ingest stops waiting and says why
            run_ingest(down, files, quiet=True, timeout=120, bronze_only=True)
        wait_idle(rt)
    letters = [i.key for i in lake.list("dead-letter/")]
    assert letters and all(k.startswith("dead-letter/bronze-on-alerts-staged/") for k in letters)
    with Runtime(good, watch=False) as rt:
        assert replay(lake, rt.sink) == len(letters)
        wait_idle(rt)
    assert not list(lake.list("dead-letter/"))
    expected = expected_alerts(files)
    assert bronze(good)["alert"].scan().count() == sum(len(c) for c in expected.values())


def _positions(files: list[Path]) -> dict[int, tuple[float, float]]:
    """candid -> (ra, dec) of every ZTF alert in ``files``, straight from fastavro (independent of the pipeline)."""
    out = {}
    for f in files:
        with f.open("rb") as fh:
            for rec in fastavro.reader(fh):
                c = rec.get("candidate") or {}
                if rec.get("objectId") and c.get("candid") is not None:
                    out[c["candid"]] = (c["ra"], c["dec"])
    return out


def _haversine_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    import math

    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(h))) * 3600


def test_catalog_matches_reach_silver_through_events_alone(tmp_path, monkeypatch):
    """The whole local runtime (every function, real HTTP, the Triggers in knative/): files in the bucket ->
    bronze -> crossmatch -> dev.ateda.crossmatch.committed -> dbt refresh -> silver.crossmatch_catalog and
    gold.object_catalog_match, with no command run in between. The expected matches are computed here from the
    Avro files (haversine, brute force: independent of the pipeline's Vincenty)."""
    from prometheus_client import REGISTRY

    from ateda.steps import crossmatch as xm
    from ateda.warehouse import build as warehouse

    s = Settings(home=tmp_path / "home", commit_window_ms=200, refresh=RefreshSettings(debounce_s=0.3)).resolved()
    files = [f for f in alert_files() if f.name not in HALF_BROKEN and f.name != DAMAGED_TAIL][100:130]
    pos = _positions(files)
    assert len(pos) >= 20  # the same alert comes from several sources
    # a watchlist: a source 1.2" north of every third alert, plus far-away noise
    arc = 1 / 3600
    sources = [(f"w{c}", ra, dec + 1.2 * arc) for i, (c, (ra, dec)) in enumerate(sorted(pos.items())) if i % 3 == 0]
    sources += [(f"x{i}", (i * 37.1) % 360, -25.0 + i % 50) for i in range(200)]
    csv = tmp_path / "watch.csv"
    csv.write_text("id,ra,dec\n" + "".join(f"{i},{r!r},{d!r}\n" for i, r, d in sources))
    xm.add_reference_catalog(s, "watch", csv, radius_arcsec=2.0)
    want = {(c, sid): _haversine_arcsec(ra, dec, sra, sdec)
            for c, (ra, dec) in pos.items() for sid, sra, sdec in sources
            if _haversine_arcsec(ra, dec, sra, sdec) <= 2.0}
    assert len(want) >= len(pos) // 3

    def delivered() -> float:
        return REGISTRY.get_sample_value("ateda_broker_deliveries_total",
                                         {"trigger": "refresh-on-crossmatch-committed", "outcome": "ok"}) or 0.0

    before = delivered()
    with Runtime(s, validate_events=True):
        # the one-shot ingest waits for the whole pipeline (bronze, crossmatch, the refresh it triggers) and fails
        # with the cause if anything is dead-lettered on the way: no polling of the warehouse here
        summary = run_ingest(s, files, quiet=True, timeout=300)
    assert summary.refresh and summary.refresh["ran"] and not summary.refresh["failed"], summary.refresh
    with warehouse.connect(s) as con:
        rows = con.execute("select candid, match_id, dist_arcsec from silver.crossmatch_catalog "
                           "where is_latest_version").fetchall()
    got = {(c, m): d for c, m, d in rows}
    assert set(got) == set(want)
    assert all(abs(got[k] - want[k]) < 1e-3 for k in want)
    with warehouse.connect(s) as con:  # and gold has the object-level answer for every matched object
        matched = con.execute("select distinct objectId from silver.crossmatch_catalog where objectId is not null"
                              ).fetchall()
        per_object = con.execute("select objectId, catalog from gold.object_catalog_match").fetchall()
    assert matched and sorted(per_object) == sorted((o, "watch") for (o,) in matched)
    assert delivered() - before >= 1, "dbt refresh was told about the matches by dev.ateda.crossmatch.committed"
