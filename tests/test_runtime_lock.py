"""One runtime per home, shared safely (issue 12, design 3; review 1.4, 1.9, 1.14, 1.26, 1.27).

Real runtimes (function servers, broker, watcher), real `ateda` processes and the real alerts. The one injected
fault is a function whose server starts a child that ignores SIGTERM (no real component does that on demand)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ateda.config import Settings
from ateda.lake.storage import bucket_store
from ateda.local.home import Lease, RuntimeBusy, group_members, lock_holder
from ateda.local.runtime import FunctionSpec, Runtime, ingestion_functions

from conftest import ALERTS, REPO, alert_files, expected_alerts

ATEDA = str(Path(sys.executable).with_name("ateda"))

STUBBORN = '''
import subprocess, sys
from pathlib import Path
import functions_framework

_child = subprocess.Popen([sys.executable, "-c",
                           "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open(Path(__file__).with_name("pids"), "a") as fh:
    fh.write(f"{_child.pid}\\n")


@functions_framework.cloud_event
def handle(event):
    return None
'''


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATEDA_")}
    return {**env, "ATEDA_HOME": str(home), "ATEDA_COMMIT_WINDOW_MS": "200", **extra}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _descendants(root: int) -> set[int]:
    """Every live process whose chain of parents reaches ``root`` (read from /proc)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout:.0f} s"
        time.sleep(0.2)


def _stubborn(tmp_path: Path) -> FunctionSpec:
    folder = tmp_path / "stubborn"
    folder.mkdir()
    (folder / "main.py").write_text(STUBBORN)
    return FunctionSpec("ateda-stubborn", str(folder))


def test_second_up_refuses_with_the_first_ones_pid_and_stop_leaves_no_child(tmp_path):
    home = tmp_path / "home"
    up = subprocess.Popen([ATEDA, "up"], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(home / "runtime.json")
        assert lock_holder(home) == up.pid
        children = _descendants(up.pid)
        assert len(children) >= 5, children  # five function servers and their workers
        second = subprocess.run([ATEDA, "up"], env=_env(home), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second
        assert second.stderr.count("\n") == 1 and str(up.pid) in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        # the bucket folder it announces exists; one metrics folder per function server
        assert (home / "bucket" / "alerts").is_dir()
        assert len(list(home.glob("metrics-*"))) == 5
    finally:
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    lines = out.splitlines()
    assert any("ateda-bronze" in line and " up at http://127.0.0.1:" in line for line in lines), out
    assert any("broker at http://127.0.0.1:" in line for line in lines), out
    assert any("watching bucket" in line for line in lines), out
    assert lines[-1] == "ateda up: stopped", out
    assert not [p for p in children if _alive(p)]
    assert lock_holder(home) is None
    assert not list(home.glob("metrics-*")) and not (home / "runtime.json").exists()


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    s = Settings(home=tmp_path / "home").resolved()
    spec = _stubborn(tmp_path)
    rt = Runtime(s, functions=[*ingestion_functions(split_workers=1), spec], watch=False, stop_grace_s=1.0)
    before = _descendants(os.getpid())  # servers other tests of the session started (Prometheus, Ceph) stay up
    with rt:
        _wait_for(tmp_path / "stubborn" / "pids")
        children = _descendants(os.getpid()) - before
        stubborn = [int(x) for x in (tmp_path / "stubborn" / "pids").read_text().split()]
        assert stubborn and all(p in children for p in stubborn)
        with pytest.raises(RuntimeBusy) as busy:  # one runtime per home, also in one process
            Runtime(s, functions=ingestion_functions(split_workers=1), watch=False).start()
        assert str(os.getpid()) in str(busy.value)
        started = time.monotonic()
    assert time.monotonic() - started < 15
    assert not [p for p in children if _alive(p)], [p for p in children if _alive(p)]
    assert lock_holder(s.home) is None


def test_a_runtime_started_after_a_crash_ends_the_crashed_ones_leftovers(tmp_path):
    home = tmp_path / "home"
    spec = _stubborn(tmp_path)
    script = (f"import time\nfrom pathlib import Path\nfrom ateda.config import Settings\n"
              f"from ateda.local.runtime import FunctionSpec, Runtime\n"
              f"Runtime(Settings(home=Path({str(home)!r})).resolved(), functions=[FunctionSpec('ateda-stubborn', "
              f"{spec.folder!r})], watch=False).start()\nprint('ready', flush=True)\ntime.sleep(600)\n")
    crashed = subprocess.Popen([sys.executable, "-c", script], env=_env(home), stdout=subprocess.PIPE, text=True)
    assert crashed.stdout.readline().strip() == "ready"
    _wait_for(tmp_path / "stubborn" / "pids")
    stubborn = [int(x) for x in (tmp_path / "stubborn" / "pids").read_text().split()]
    crashed.kill()  # SIGKILL: no stop() runs
    crashed.wait(timeout=10)
    time.sleep(1.0)  # the server got SIGTERM (parent death) and exited; its child ignores SIGTERM
    assert all(_alive(p) for p in stubborn), "the injected child should have outlived the crash"
    assert lock_holder(home) is None  # a crashed runtime's lock is free
    with Runtime(Settings(home=home).resolved(), functions=ingestion_functions(split_workers=1), watch=False):
        assert not [p for p in stubborn if _alive(p)]
        assert len(list(home.glob("metrics-*"))) == 2  # the crashed one's folder is gone, ours are there


def _ingest(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([ATEDA, "ingest", *args, "--json", "--timeout", "400"], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_ingests_share_one_temporary_runtime(tmp_path):
    """The first ingest (bronze only) is done before the second (bronze, crossmatch, refresh): the temporary runtime
    it started must live on until the second is done (it used to be torn down, and the second waited for its
    timeout). A handshake, not timing: the test holds a lease of its own (as a third ingest would) from before the
    first starts until the second holds its lease, so the first cannot stop its runtime before the second attached."""
    files = alert_files()
    first_files, second_files = files[:60], files[300:340]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for folder, chosen in ((first_dir, first_files), (second_dir, second_files)):
        folder.mkdir()
        for f in chosen:
            shutil.copy(f, folder / f.name)
    home = tmp_path / "home"
    held = Lease(home)
    try:
        first = _ingest(home, str(first_dir), "--bronze-only")
        _wait_for(home / "runtime.json")  # the first one's temporary runtime answers: the second attaches to it
        owner = json.loads((home / "runtime.json").read_text())["pid"]
        assert owner == first.pid
        second = _ingest(home, str(second_dir))
        deadline = time.monotonic() + 120
        while not list((home / "leases").glob(f"{second.pid}-*.lease")):  # the second holds its lease
            assert time.monotonic() < deadline and second.poll() is None, "the second ingest took no lease"
            time.sleep(0.05)
    finally:
        held.release()
    out1, err1 = first.communicate(timeout=450)
    out2, err2 = second.communicate(timeout=450)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "Traceback" not in err1 + err2
    want1 = sum(len(v) for v in expected_alerts(first_files).values())
    want2 = sum(len(v) for v in expected_alerts(second_files).values())
    one, two = json.loads(out1), json.loads(out2)
    assert (one["alerts"], one["new_alerts"]) == (want1, want1)  # each reports its own commits
    assert (two["alerts"], two["new_alerts"]) == (want2, want2)
    assert two["refresh"]["ran"] and two["refresh"]["gold_rows"]["object"] > 0
    assert one["runtime"] == {"pid": first.pid, "started": True}
    assert two["runtime"] == {"pid": first.pid, "started": False}  # attached to the first one's runtime
    assert lock_holder(home) is None and not list((home / "leases").glob("*.lease"))
    assert not list(home.glob("metrics-*"))


def test_ctrl_c_during_an_ingest_stops_every_child_and_a_rerun_resumes(tmp_path):
    files = alert_files()[200:260]
    src = tmp_path / "night"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    home = tmp_path / "home"
    ingest = subprocess.Popen([ATEDA, "ingest", str(src), "--bronze-only"], env=_env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(home / "runtime.json")
    children = _descendants(ingest.pid)
    assert children
    ingest.send_signal(signal.SIGINT)
    out, err = ingest.communicate(timeout=120)
    assert ingest.returncode == 130, err
    assert "interrupted; run again to resume" in err and "Traceback" not in err, err
    assert not [p for p in children if _alive(p)]
    assert lock_holder(home) is None
    again = subprocess.run([ATEDA, "ingest", str(src), "--bronze-only", "--json"], env=_env(home),
                           capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["alerts"] == sum(len(v) for v in expected_alerts(files).values())


def test_an_ingest_whose_runtime_stops_starts_one_and_finishes(tmp_path):
    files = alert_files()[::6][:70]
    src = tmp_path / "batch"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    home = tmp_path / "home"
    up = subprocess.Popen([ATEDA, "up"], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(home / "runtime.json")
        ingest = _ingest(home, str(src), "--bronze-only")
        deadline = time.monotonic() + 120
        while not list((home / "leases").glob("*.lease")):  # the ingest attached to `ateda up`
            assert time.monotonic() < deadline and ingest.poll() is None, ingest.stderr.read() if ingest.poll() else ""
            time.sleep(0.1)
    finally:
        up.send_signal(signal.SIGTERM)  # `ateda up` stops while the ingest waits on it
        up.communicate(timeout=120)
    out, err = ingest.communicate(timeout=450)
    assert ingest.returncode == 0, err
    summary = json.loads(out)
    assert summary["runtime"] == {"pid": ingest.pid, "started": True}  # it took over with its own runtime
    assert summary["alerts"] == sum(len(v) for v in expected_alerts(files).values())
    assert lock_holder(home) is None
