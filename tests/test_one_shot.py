"""One-shot equals running (issue 12, design 1 and 6; review 1.3, 1.5, 1.25, 1.27).

`ateda ingest` followed directly by `ateda query` on gold gives the rows `ateda up` gives for the same files; bucket
keys keep the path; a key holding other bytes is refused up front; empty and all-rejected ingests exit non-zero.
Real alerts, real runtimes, real `ateda` processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ateda.config import Settings
from ateda.ingest import pending_refreshes, run_ingest
from ateda.lake.iceberg import ensure_tables, load_catalog
from ateda.lake.storage import bucket_store
from ateda.local.runtime import running_runtime, runtime_health

from conftest import alert_files, expected_alerts

ATEDA = str(Path(sys.executable).with_name("ateda"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATEDA_")}
    return {**env, "ATEDA_HOME": str(home), "ATEDA_COMMIT_WINDOW_MS": "200"}


def _ateda(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([ATEDA, *args], env=_env(home), capture_output=True, text=True, timeout=timeout)


def _bronze_keys(s: Settings) -> dict[str, int]:
    alerts = ensure_tables(load_catalog(s), s)["alert"].scan(selected_fields=("source_key",)).to_arrow()
    out: dict[str, int] = {}
    for key in alerts["source_key"].to_pylist():
        out[key] = out.get(key, 0) + 1
    return out


def test_keys_keep_the_path_equal_names_never_overwrite_and_identical_bytes_are_a_no_op(tmp_path):
    a, b, c = [f for f in alert_files() if f.name not in {"astrolabsoftware_fink-client_fink-broker-sample-alert-2.avro",
                                                           "astrolabsoftware_fink-client_fink-broker-sample-alert-4.avro",
                                                           "AmpelAstro_Ampel-ZTF-archive_schema_4.02.avro"}][:3]
    for folder, src in (("n1", a), ("n2", b)):
        (tmp_path / folder).mkdir()
        shutil.copy(src, tmp_path / folder / "alert.avro")
    (tmp_path / "n1" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # never announced by the watcher: skipped
    s = Settings(home=tmp_path / "home", commit_window_ms=200).resolved()
    summary = run_ingest(s, [tmp_path / "n1", tmp_path / "n2", c], quiet=True, bronze_only=True, timeout=300)
    want = {"n1/alert.avro": len(expected_alerts([a])[a.name]), "n2/alert.avro": len(expected_alerts([b])[b.name]),
            c.name: len(expected_alerts([c])[c.name])}
    assert _bronze_keys(s) == want  # both alert.avro files are in bronze, under their folders' names
    assert summary.alerts == summary.new_alerts == sum(want.values())
    assert bucket_store(s).get_bytes("n1/alert.avro") == a.read_bytes()
    assert bucket_store(s).get_bytes("n2/alert.avro") == b.read_bytes()
    assert bucket_store(s).head("n1/.DS_Store") is None
    again = run_ingest(s, [tmp_path / "n1", tmp_path / "n2", c], quiet=True, bronze_only=True, timeout=300)
    assert (again.alerts, again.new_alerts, again.commits) == (sum(want.values()), 0, 0)
    assert _bronze_keys(s) == want


def test_a_key_holding_other_bytes_is_refused_up_front_naming_both_files(tmp_path):
    a, b = alert_files()[10:12]
    home = tmp_path / "home"
    s = Settings(home=home).resolved()
    bucket_store(s).put_file("night/alert.avro", a)  # what an earlier ingest of another folder "night" left
    (tmp_path / "night").mkdir()
    shutil.copy(b, tmp_path / "night" / "alert.avro")
    res = _ateda(home, "ingest", str(tmp_path / "night"))
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert "night/alert.avro" in res.stderr and str(tmp_path / "night" / "alert.avro") in res.stderr
    assert bucket_store(s).get_bytes("night/alert.avro") == a.read_bytes()  # nothing uploaded
    assert not (home / "runtime.lock").exists() and not (home / "split.log").exists()  # no runtime started
    # two inputs that would share a key with different bytes: refused too, naming both
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    shutil.copy(a, tmp_path / "x" / "same.avro")
    shutil.copy(b, tmp_path / "y" / "same.avro")
    res = _ateda(home, "ingest", str(tmp_path / "x" / "same.avro"), str(tmp_path / "y" / "same.avro"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res
    assert str(tmp_path / "x" / "same.avro") in res.stderr and str(tmp_path / "y" / "same.avro") in res.stderr
    assert bucket_store(s).head("same.avro") is None
    # a file argument the watcher would never announce (it used to wait for its timeout)
    shutil.copy(a, tmp_path / "x" / "alert.avro.part")
    res = _ateda(home, "ingest", str(tmp_path / "x" / "alert.avro.part"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "alert.avro.part" in res.stderr, res


def test_an_empty_folder_exits_2_with_a_warning(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    res = _ateda(tmp_path / "home", "ingest", str(tmp_path / "empty"))
    assert res.returncode == 2, res
    assert res.stderr.startswith("ateda ingest: warning: no file in") and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "home" / "runtime.lock").exists()


def test_an_all_rejected_ingest_exits_1_with_a_warning(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    real = alert_files()[20].read_bytes()
    (bad / "cut.avro").write_bytes(real[:200])  # a real alert cut short inside its header
    (bad / "empty.avro").write_bytes(b"")
    res = _ateda(tmp_path / "home", "ingest", str(bad), "--bronze-only", timeout=300)
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    assert "warning: not one alert of the 2 file(s) reached bronze" in res.stderr, res.stderr
    assert "0 alerts of 0 objects" in res.stdout and "2 rejected" in res.stdout, res.stdout


def _gold(home: Path) -> dict[str, list[dict]]:
    out = {}
    for table in ("object", "lightcurve"):
        res = _ateda(home, "query", f"select * from gold.{table} order by all", "--format", "json")
        assert res.returncode == 0, res.stderr
        out[table] = json.loads(res.stdout)
    return out


def _same(x, y) -> bool:  # noqa: ANN001
    """Equal values; floats to 1e-12 relative (an aggregate summed in another order may differ in the last bit)."""
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
    return x == y


def _wait_pipeline(s: Settings, alerts: int, timeout: float = 600) -> None:
    """Until bronze holds ``alerts`` alerts, and no delivery and no refresh request is pending on two polls."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 2:
        assert time.monotonic() < deadline, "ateda up did not finish the files"
        info = running_runtime(s)
        assert info is not None, "ateda up stopped"
        busy = sum(runtime_health(info)["backlog"].values()) or pending_refreshes(s)
        done = sum(_bronze_keys(s).values()) == alerts if (Path(s.home) / "catalog.db").exists() else False
        calm = calm + 1 if done and not busy else 0
        time.sleep(1.0)


def test_one_shot_ingest_gives_the_gold_rows_of_ateda_up(tmp_path):
    files = alert_files()[::8]  # 60 real alerts across the corpus
    src = tmp_path / "subset"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    alerts = sum(len(v) for v in expected_alerts(files).values())

    one_shot = tmp_path / "one-shot"
    res = _ateda(one_shot, "ingest", str(src), "--json", timeout=900)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["alerts"] == summary["new_alerts"] == alerts
    assert summary["refresh"]["ran"] and summary["refresh"]["failed"] is None
    assert summary["crossmatch"] == {"matches": 0}  # no catalog registered
    gold_one_shot = _gold(one_shot)
    assert summary["refresh"]["gold_rows"] == {t: len(rows) for t, rows in gold_one_shot.items()}
    assert len(gold_one_shot["object"]) > 40 and len(gold_one_shot["lightcurve"]) > len(gold_one_shot["object"])

    running = tmp_path / "running"
    s = Settings(home=running).resolved()
    up = subprocess.Popen([ATEDA, "up"], env=_env(running), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while running_runtime(s) is None:
            assert time.monotonic() < deadline and up.poll() is None, "ateda up did not start"
            time.sleep(0.2)
        drop = s.bucket_root / s.bucket / ".subset.part"  # dropped as a folder of the same name, renamed into place
        shutil.copytree(src, drop)
        drop.rename(drop.with_name("subset"))
        _wait_pipeline(s, alerts)
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=120)
    gold_running = _gold(running)
    for table in ("object", "lightcurve"):
        one, run = gold_one_shot[table], gold_running[table]
        assert len(one) == len(run), table
        for r1, r2 in zip(one, run):
            assert r1.keys() == r2.keys()
            assert all(_same(r1[k], r2[k]) for k in r1), (table, r1, r2)
