"""Nothing stays stale, and queries never fail because a refresh runs (issue 12, design 4 and 5; review 1.10, 1.11).

Real alerts go through the real split and bronze handlers into a temporary lake; dbt runs for real on DuckDB. Each
test says which behaviour of the code before this change it fails on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from prometheus_client import REGISTRY

from ateda.cli import main
from ateda.config import settings
from ateda.events import catalogue as events
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.status import status
from ateda.steps import dbt_refresh as rf
from ateda.warehouse import build
from ateda.warehouse import location
from conftest import alert_files, app, post, put_alerts, validate_all


def _to_bronze(s, sink, files) -> list[dict]:  # noqa: ANN001
    """The files through the split and bronze handlers; returns the bronze.committed events they emitted."""
    before = len(sink.of(events.BRONZE_COMMITTED))
    staged_before = len(sink.of(events.ALERTS_STAGED))
    objects = put_alerts(s, files)
    assert post(app("split"), events.OBJECT_CREATED, {"bucket": s.bucket, "objects": objects}).status_code == 200
    bronze = app("bronze")
    for e in sink.of(events.ALERTS_STAGED)[staged_before:]:
        assert post(bronze, events.ALERTS_STAGED, e["data"]).status_code == 200
    committed = sink.of(events.BRONZE_COMMITTED)[before:]
    validate_all(committed)
    return committed


def _gold(capsys) -> tuple[int, int]:  # noqa: ANN001
    """(objects, detections) in gold through `ateda query`, which must succeed."""
    rc = main(["query", "select count(*) as n, coalesce(sum(ndet), 0) as d from gold.object", "--format", "json"])
    out = capsys.readouterr()
    assert rc == 0, f"ateda query failed: {out.err}"
    (row,) = json.loads(out.out)
    return row["n"], row["d"]


def _wait(cond, timeout: float) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_queries_never_fail_while_a_refresh_runs_in_another_process(env_settings, sink, capsys):
    """`ateda query` in a loop while `ateda refresh` runs in another process: every query succeeds and sees the old
    or the new gold, never an error (before: "Could not set lock on file" / "No catalog + schema named gold")."""
    s = env_settings
    files = alert_files()
    _to_bronze(s, sink, files[:20])
    build.refresh_models(s)
    old = _gold(capsys)
    _to_bronze(s, sink, files[20:140])
    child = subprocess.Popen([sys.executable, "-m", "ateda.cli", "refresh"], env={**os.environ},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, during_build = [], 0
    try:
        while child.poll() is None:
            building = location.building_path(s).exists()
            seen.append(_gold(capsys))
            during_build += building and location.building_path(s).exists()  # the whole query ran during the build
    finally:
        out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    new = _gold(capsys)
    assert new != old and new[0] > old[0]
    assert set(seen) <= {old, new}, f"a query saw neither state: {set(seen) - {old, new}}"
    assert during_build >= 3, f"only {during_build} queries ran while the next warehouse was being built"
    assert not location.building_path(s).exists(), "the build's file is published (renamed), none is left"
    assert sorted(p.name for p in location.duckdb_path(s).parent.glob("*.duckdb*")) == ["ateda.duckdb"]


def test_a_failed_refresh_publishes_nothing_and_is_recorded(env_settings, sink, capsys, tmp_path):
    """dbt fails on a broken model (a real dbt error, in a copy of the project): the published warehouse is
    untouched, the build is discarded, and the run is recorded as failed (before: the failed run wrote into the
    warehouse readers use, and nothing but dbt's log recorded it)."""
    s = env_settings
    _to_bronze(s, sink, alert_files()[:20])
    build.refresh_models(s)
    before = _gold(capsys)
    ok = build.read_refresh_state(s)
    assert ok["last_run"]["ok"] and ok["last_success"]["bronze"]["alert"]["rows"] == 20
    _to_bronze(s, sink, alert_files()[20:140])
    broken = tmp_path / "dbt"
    shutil.copytree(location.dbt_dir(s), broken, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (broken / "models" / "gold" / "object.sql").write_text("select {{ no_such_macro() }}\n")
    child = subprocess.run([sys.executable, "-m", "ateda.cli", "refresh"], env={**os.environ,
                           "ATEDA_DBT_DIR": str(broken)}, capture_output=True, text=True, timeout=600)
    assert child.returncode == 1 and "no_such_macro" in child.stderr, child.stderr
    assert _gold(capsys) == before, "readers still see the last published warehouse"
    assert not location.building_path(s).exists()
    state = build.read_refresh_state(s)
    assert state["last_run"]["ok"] is False and "no_such_macro" in state["last_run"]["error"]
    assert state["last_success"] == ok["last_success"], "what gold reflects is still the last successful run"
    f = build.freshness(s)
    assert f["behind"] and "alert" in f["tables_behind"]
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "BEHIND bronze" in text and "FAILED" in text and "(20 rows)" in text


def test_requests_left_pending_are_served_when_the_server_starts(env_settings, sink, monkeypatch, capsys):
    """A process recorded refresh requests and stopped during its debounce (Ctrl-C on `ateda up`): the next
    function server serves them on its first request of any kind, here the runtime's readiness GET, with no new
    bronze.committed (before: they waited for a new request, and GET / was a 405)."""
    s = env_settings
    committed = _to_bronze(s, sink, alert_files()[:12])
    first = rf.RefreshWorker(s, lambda *a: None, rf.RefreshConfig(debounce_s=3600.0))
    for e in committed:
        first.request({**{k: v for k, v in e.items() if k != "data"}, "data": e["data"]})
    first.stop()  # interrupted before its debounce ended: the markers stay
    assert build.pending_requests(s) == len(committed)
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert f"refresh requests pending: {len(committed)}" in text and "never refreshed" in text

    monkeypatch.setenv("ATEDA_REFRESH_DEBOUNCE_MS", "100")
    settings.cache_clear()
    client = app("dbt_refresh")  # a new server process's app: a fresh worker
    assert client.get("/").status_code == 200
    _wait(lambda: sink.of(events.SILVER_REFRESHED), timeout=180)
    (evt,) = sink.of(events.SILVER_REFRESHED)
    validate_all([evt])
    assert evt["data"]["requests"] == len(committed)
    _wait(lambda: build.pending_requests(s) == 0, timeout=30)  # markers go once the event was accepted: after it
    f = status(s)["freshness"]
    assert not f["behind"] and f["pending"] == 0 and f["last_run"]["ok"]
    assert f["reflects"]["alert"] == f["bronze"]["alert"]
    # the gauge of copy conflicts follows the refresh when the data-quality model exists
    rows = evt["data"]["rows"]
    gauge = REGISTRY.get_sample_value("ateda_copy_conflicts")
    if rf.COPY_CONFLICTS in rows:
        assert gauge == rows[rf.COPY_CONFLICTS] == f["copy_conflicts"]


def test_the_copy_conflict_gauge_is_set_only_when_the_model_exists():
    before = REGISTRY.get_sample_value("ateda_copy_conflicts")
    result = build.RefreshResult(target="local", success=True, seconds=0.1, rows={"gold.object": 3})
    assert rf.set_copy_conflicts(result) is None
    assert REGISTRY.get_sample_value("ateda_copy_conflicts") == before
    result.rows[rf.COPY_CONFLICTS] = 7
    assert rf.set_copy_conflicts(result) == 7
    assert REGISTRY.get_sample_value("ateda_copy_conflicts") == 7


def test_an_unknown_object_says_whether_a_refresh_would_help(env_settings, sink, capsys):
    """An id bronze has but gold does not (gold behind): the message says to refresh; an id nobody has: no refresh
    suggested (before: always "run `ateda refresh`")."""
    s = env_settings
    files = alert_files()
    _to_bronze(s, sink, files[:10])
    build.refresh_models(s)
    assert main(["query", "select objectId from gold.object", "--format", "json"]) == 0
    known = {r["objectId"] for r in json.loads(capsys.readouterr().out)}
    _to_bronze(s, sink, files[10:40])
    ids = set(ensure_tables(load_catalog(s), s)["alert"].scan(selected_fields=("objectId",)).to_arrow()
              ["objectId"].to_pylist())
    new = sorted(i for i in ids - known if i)[0]
    assert main(["object", new.upper()]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (earlier lines: logging's complaints about capsys)
    assert "ateda refresh" in err and f"no object {new} in gold yet: bronze has" in err
    assert main(["object", "ZTF99zzzzzzz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "refresh" not in err and "neither gold nor bronze" in err
